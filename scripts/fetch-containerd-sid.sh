#!/usr/bin/env bash
# Puts containerd 2.x from Debian sid in .cache/containerd-sid, so that the tests check the symbol lookup on 2.x too.
# Extracted, never installed. Uses the mirror the machine's own apt sources name, with a private sources list and
# state dir: the machine's apt configuration is not touched. Failing is not fatal: the tests that need it say they
# were skipped and why.
set -uo pipefail
cd "$(dirname "$0")/.."
target=.cache/containerd-sid
[ -x "$target/usr/bin/containerd" ] && exit 0
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null)
[ -n "$mirror" ] || mirror=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
if [ -z "$mirror" ]; then
  echo "setup: no Debian mirror in the apt sources: the containerd 2.x tests will be skipped" >&2
  exit 0
fi
state=$PWD/.cache/apt-sid
mkdir -p "$state/etc" "$state/lists/partial" "$state/cache/archives/partial" "$state/deb"
touch "$state/status"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror sid main" >"$state/etc/sources.list"
opts=(-o "Dir::Etc::SourceList=$state/etc/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$state/lists" -o "Dir::State::Status=$state/status" -o "Dir::Cache=$state/cache"
  -o Debug::NoLocking=1 -o APT::Architecture=amd64)
echo "setup: fetching containerd from Debian sid into $target (for the 2.x symbol tests)" >&2
if apt-get "${opts[@]}" update -qq >/dev/null 2>&1 &&
  (cd "$state/deb" && apt-get "${opts[@]}" download containerd >/dev/null 2>&1); then
  rm -rf "$target" && mkdir -p "$target" && dpkg -x "$state"/deb/containerd_*.deb "$target"
else
  echo "setup: could not fetch containerd from sid: the containerd 2.x tests will be skipped" >&2
fi
exit 0
