#!/usr/bin/env bash
# Puts containerd 2.x from Debian sid in .cache/containerd-sid, so that the tests check the symbol lookup on 2.x too.
# Extracted, never installed. Uses the mirror the machine's own apt sources name, with a private sources list and
# state dir: the machine's apt configuration is not touched. Failing is not fatal here: it writes why to
# .cache/containerd-sid.missing, and the tests that need containerd 2.x fail with that reason (test/binaries/sid.ts).
set -uo pipefail
cd "$(dirname "$0")/.."
target=.cache/containerd-sid
missing=.cache/containerd-sid.missing
mkdir -p .cache
if [ -x "$target/usr/bin/containerd" ]; then
  rm -f "$missing"
  exit 0
fi
give_up() {
  echo "$1" >"$missing"
  echo "setup: $1: the containerd 2.x tests will fail" >&2
  exit 0
}
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null)
[ -n "$mirror" ] || mirror=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
[ -n "$mirror" ] || give_up "no Debian mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"
state=$PWD/.cache/apt-sid
mkdir -p "$state/etc" "$state/lists/partial" "$state/cache/archives/partial" "$state/deb"
touch "$state/status"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror sid main" >"$state/etc/sources.list"
opts=(-o "Dir::Etc::SourceList=$state/etc/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$state/lists" -o "Dir::State::Status=$state/status" -o "Dir::Cache=$state/cache"
  -o Debug::NoLocking=1 -o APT::Architecture=amd64)
echo "setup: fetching containerd from Debian sid into $target (for the 2.x symbol tests)" >&2
# apt's first error or warning says most (the last is often "Some index files failed to download").
last_line() { grep -m1 -E '^(Err|E):' "$1" || grep -v '^\s*$' "$1" | tail -1; }
log=$state/fetch.log
apt-get "${opts[@]}" --error-on=any update -qq >"$log" 2>&1 ||
  give_up "apt-get update of Debian sid from $mirror failed: $(last_line "$log")"
rm -f "$state"/deb/containerd_*.deb
(cd "$state/deb" && apt-get "${opts[@]}" download containerd) >"$log" 2>&1 ||
  give_up "apt-get download containerd from Debian sid ($mirror) failed: $(last_line "$log")"
rm -rf "$target" && mkdir -p "$target"
dpkg -x "$state"/deb/containerd_*.deb "$target" >"$log" 2>&1 ||
  give_up "dpkg -x of the sid containerd package failed: $(last_line "$log")"
[ -x "$target/usr/bin/containerd" ] || give_up "the sid containerd package holds no usr/bin/containerd"
rm -f "$missing"
exit 0
