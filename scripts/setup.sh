#!/usr/bin/env bash
# One idempotent step before `npm run demo` and `npm test`: installs only what is missing and says what it did.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (podwire's lab starts containerd and creates namespaces): run it again with sudo"
[ -f /etc/debian_version ] && command -v apt-get >/dev/null ||
  die "needs a Debian-like system with apt-get (Debian 12 is what podwire is tested on)"

# Debian packages: the real stack the lab drives, and what builds the pause image.
packages=(bpftrace containerd runc containernetworking-plugins iproute2 gcc libc6-dev tmux)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || die "apt-get update failed: check /etc/apt/sources.list.d and the network to Debian's mirror"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    die "apt-get install ${missing[*]} failed: run it by hand to see why"
else
  say "Debian packages present"
fi

# Debian's containerd package starts the machine's own containerd when systemd runs; the lab never uses it.

# bpftrace cannot list or attach tracepoints without tracefs.
if [ ! -e /sys/kernel/tracing/events ]; then
  mount -t tracefs tracefs /sys/kernel/tracing || die "cannot mount tracefs on /sys/kernel/tracing: the kernel needs CONFIG_TRACING"
  say "mounted tracefs on /sys/kernel/tracing"
fi

# npm ci only when the lock file changed since the last install.
stamp=node_modules/.podwire-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null || die "npm ci failed: run it by hand to see why"
  echo "$want" >"$stamp"
else
  say "npm dependencies present"
fi

say "building"
npm run --silent build || die "the TypeScript build failed: see the errors above"
say "ready"
