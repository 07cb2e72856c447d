#!/usr/bin/env bash
# Puts Debian's prometheus in .cache/prometheus, for the test that evaluates the Grafana dashboard's queries with a
# real Prometheus (test/dashboards/prometheus.lab.test.ts). Extracted with `apt-get download` and `dpkg -x`, never
# installed: no service, no user, nothing started. Failing is not fatal here: it writes why to
# .cache/prometheus.missing, and that test fails with the reason.
set -uo pipefail
cd "$(dirname "$0")/.."
target=.cache/prometheus
missing=.cache/prometheus.missing
mkdir -p .cache
if [ -x "$target/usr/bin/prometheus" ]; then
  rm -f "$missing"
  exit 0
fi
give_up() {
  echo "$1" >"$missing"
  echo "setup: $1: the Prometheus test of the dashboard will fail" >&2
  exit 0
}
echo "setup: fetching Debian's prometheus into $target (for the dashboard's Prometheus test)" >&2
debs=.cache/prometheus-deb
rm -rf "$debs" && mkdir -p "$debs"
log=$debs/fetch.log
# The machine's own package lists may be older than its mirror: read them again once if the download fails.
if ! (cd "$debs" && apt-get download prometheus) >"$log" 2>&1; then
  apt-get update -qq >>"$log" 2>&1 || give_up "apt-get update failed: $(grep -m1 -E '^(Err|E):' "$log")"
  (cd "$debs" && apt-get download prometheus) >"$log" 2>&1 ||
    give_up "apt-get download prometheus failed: $(grep -m1 -E '^(Err|E):' "$log" || tail -1 "$log")"
fi
rm -rf "$target" && mkdir -p "$target"
dpkg -x "$debs"/prometheus_*.deb "$target" >"$log" 2>&1 ||
  give_up "dpkg -x of the prometheus package failed: $(tail -1 "$log")"
[ -x "$target/usr/bin/prometheus" ] || give_up "the prometheus package holds no usr/bin/prometheus"
rm -rf "$debs" "$missing"
exit 0
