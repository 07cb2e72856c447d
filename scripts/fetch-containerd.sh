#!/usr/bin/env bash
# Puts containerd from other Debian suites in .cache/containerd-<suite> (default: sid's 2.x and trixie's 1.7), so
# that the tests check the symbol lookup and the tracing on those versions too: `bash scripts/fetch-containerd.sh
# [SUITE...]`. Extracted, never installed. Uses the mirror the machine's own apt sources name, with a private
# sources list and state dir: the machine's apt configuration is not touched, and one `apt-get update` reads the
# indexes of every suite still missing. Failing is not fatal here: it writes why to .cache/containerd-<suite>.missing,
# and the tests that need that containerd fail with the reason (test/binaries/suites.ts).
set -uo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- sid trixie
mkdir -p .cache

# Suites already unpacked are done; the others are fetched together.
wanted=()
for suite in "$@"; do
  if [ -x ".cache/containerd-$suite/usr/bin/containerd" ]; then
    rm -f ".cache/containerd-$suite.missing"
  else
    wanted+=("$suite")
  fi
done
[ ${#wanted[@]} -gt 0 ] || exit 0

# give_up WHY SUITE...: each suite's tests fail with WHY.
give_up() {
  local why=$1
  shift
  for suite in "$@"; do
    echo "$why" >".cache/containerd-$suite.missing"
    echo "setup: $why: the tests of containerd from Debian $suite will fail" >&2
  done
}

mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null)
[ -n "$mirror" ] || mirror=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
if [ -z "$mirror" ]; then
  give_up "no Debian mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list" "${wanted[@]}"
  exit 0
fi
state=$PWD/.cache/apt-suites
mkdir -p "$state/etc" "$state/lists/partial" "$state/cache/archives/partial" "$state/deb"
touch "$state/status"
for suite in "${wanted[@]}"; do
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main"
done >"$state/etc/sources.list"
# Only the Packages indexes: no translations, no Contents, no other architectures.
opts=(-o "Dir::Etc::SourceList=$state/etc/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$state/lists" -o "Dir::State::Status=$state/status" -o "Dir::Cache=$state/cache"
  -o Debug::NoLocking=1 -o APT::Architecture=amd64 -o APT::Architectures=amd64 -o Acquire::Languages=none)
echo "setup: fetching containerd from Debian ${wanted[*]} into .cache/containerd-<suite> (for their tests)" >&2
# apt's first error or warning says most (the last is often "Some index files failed to download").
last_line() { grep -m1 -E '^(Err|E):' "$1" || grep -v '^\s*$' "$1" | tail -1; }
log=$state/fetch.log
if ! apt-get "${opts[@]}" --error-on=any update -qq >"$log" 2>&1; then
  give_up "apt-get update of Debian ${wanted[*]} from $mirror failed: $(last_line "$log")" "${wanted[@]}"
  exit 0
fi
for suite in "${wanted[@]}"; do
  target=.cache/containerd-$suite
  rm -rf "$state/deb/$suite" && mkdir -p "$state/deb/$suite"
  if ! (cd "$state/deb/$suite" && apt-get "${opts[@]}" download "containerd/$suite") >"$log" 2>&1; then
    give_up "apt-get download containerd/$suite ($mirror) failed: $(last_line "$log")" "$suite"
    continue
  fi
  rm -rf "$target" && mkdir -p "$target"
  if ! dpkg -x "$state/deb/$suite"/containerd_*.deb "$target" >"$log" 2>&1; then
    give_up "dpkg -x of the $suite containerd package failed: $(last_line "$log")" "$suite"
    continue
  fi
  if [ ! -x "$target/usr/bin/containerd" ]; then
    give_up "the $suite containerd package holds no usr/bin/containerd" "$suite"
    continue
  fi
  rm -f ".cache/containerd-$suite.missing" "$state/deb/$suite"/containerd_*.deb
done
exit 0
