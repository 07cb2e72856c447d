#!/usr/bin/env bash
# Builds podwire's image, podwire:<version>, from deploy/Dockerfile with Debian's buildah, and prints its size.
# No container registry may be reachable: then the Dockerfile's base (debian:trixie-slim) is made here with
# debootstrap of the same suite and imported under the name docker would pull, so the Dockerfile stays unchanged.
# Idempotent: the base and the build's layers are kept in buildah's storage (/var/lib/containers) and reused.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'build-image: %s\n' "$*" >&2; }
die() { printf 'build-image: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (buildah keeps its images in /var/lib/containers): run it again with sudo"

dockerfile=deploy/Dockerfile
version=$(sed -n 's/^  "version": "\([^"]*\)",$/\1/p' package.json)
[ -n "$version" ] || die "no version in package.json: restore its \"version\" line"
image="podwire:$version"
# The first FROM is the base: debian:<suite>-slim, fully qualified as docker resolves it.
base=$(sed -n 's/^FROM \([^ ]*\).*/\1/p' "$dockerfile" | head -1)
[[ "$base" =~ ^debian:([a-z]+)-slim$ ]] || die "$dockerfile starts FROM $base; this script makes only debian:<suite>-slim bases"
suite=${BASH_REMATCH[1]}
base_ref="docker.io/library/$base"
mirror=http://deb.debian.org/debian

install() {
  local missing=()
  for p in "$@"; do command -v "$p" >/dev/null || missing+=("$p"); done
  [ "${#missing[@]}" -eq 0 ] && return
  say "installing ${missing[*]} (Debian)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || die "apt-get update failed: check /etc/apt/sources.list.d and the network to Debian's mirror"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    die "apt-get install ${missing[*]} failed: run it by hand to see why"
}

# buildah rather than podman: it builds (podman build is buildah inside) and runs what the checks need (host PID,
# mounts, capabilities), and it is the smaller install. podman 4.3's `podman run` also always asks runc to set
# RLIMIT_NPROC, which fails where root lacks CAP_SYS_RESOURCE (as on this machine); `buildah run` sets no rlimit.
install buildah

# One run at a time on a machine: a second waits, then finds the base and the layers the first made, and an
# interrupted run removes only the working containers of its own build (below).
mkdir -p /var/lib/containers
exec 9>/var/lib/containers/podwire-build-image.lock
if ! flock -n 9; then
  say "another scripts/build-image.sh is running: waiting for it"
  flock 9
fi

# Temp dirs, a half-made base container and an interrupted build's working containers go whatever happens.
scratch=
container=
building=
cleanup() {
  [ -z "$container" ] || buildah rm "$container" >/dev/null 2>&1 || true
  [ -z "$scratch" ] || rm -rf "$scratch"
  # buildah build removes its stages' containers when it ends, not when it is interrupted (Ctrl-C).
  if [ -n "$building" ]; then
    local id
    for id in $(buildah containers --quiet 2>/dev/null); do
      [[ " $building " == *" $id "* ]] || buildah rm "$id" >/dev/null 2>&1 || true
    done
  fi
}
trap cleanup EXIT

# debootstrap's output into $1, and on stderr one line per phase (retrieving, extracting, unpacking, configuring)
# instead of two per package. A bash loop, not awk: Debian's mawk holds its input back in a buffer.
phases() {
  local line verb last=
  while IFS= read -r line; do
    printf '%s\n' "$line" >>"$1"
    [[ "$line" =~ ^[IEW]:\ ([A-Za-z]+) ]] || continue
    verb=${BASH_REMATCH[1]}
    [ "$verb" = Validating ] && continue
    [ "$verb" = "$last" ] || say "debootstrap: $line"
    last=$verb
  done
}

# The build's output into $1, and on stderr its steps as they start (a cold build spends minutes in apt and npm).
steps() {
  local line
  while IFS= read -r line; do
    printf '%s\n' "$line" >>"$1"
    [[ "$line" =~ STEP\ [0-9]+/[0-9]+: ]] && say "$line"
  done
  return 0
}

# The slimming the official -slim images have (debuerreotype): no docs, man pages or translations installed later,
# no apt caches kept; so a package installed in the Dockerfile costs here what it costs on the official base.
slim_like_official() {
  local root=$1
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
EOF
  cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
  echo 'Acquire::GzipIndexes "true";' >"$root/etc/apt/apt.conf.d/docker-gzip-indexes"
  echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
  # The suite, its updates and its security fixes, as the official image lists them.
  rm -f "$root/etc/apt/sources.list"
  cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  find "$root/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$root"/usr/share/{groff,info,linda,man}/* "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* \
    "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/tmp/*
  find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
}

make_base() {
  install debootstrap
  [ -e "/usr/share/debootstrap/scripts/$suite" ] ||
    die "this debootstrap does not know $suite: install a newer debootstrap (Debian backports) or pull $base_ref"
  scratch=$(mktemp -d /tmp/podwire-base.XXXXXX)
  local started=$SECONDS
  say "debootstrap --variant=minbase $suite from $mirror (about 2 minutes)"
  if ! debootstrap --variant=minbase "$suite" "$scratch/root" "$mirror" 2>&1 | phases "$scratch/debootstrap.log"; then
    tail -n 5 "$scratch/root/debootstrap/debootstrap.log" "$scratch/debootstrap.log" 2>/dev/null >&2 || true
    die "debootstrap of $suite failed (last lines above): check the network to $mirror"
  fi
  slim_like_official "$scratch/root"
  say "importing it as $base_ref"
  # buildah has no `import`: a container from scratch, the root copied into it, committed with the official config.
  container=$(buildah from --quiet scratch)
  tar -C "$scratch/root" --numeric-owner -c . | tar -C "$(buildah mount "$container")" --numeric-owner -x
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd bash \
    --label "org.opencontainers.image.description=debootstrap --variant=minbase $suite, made by podwire's scripts/build-image.sh" \
    "$container"
  buildah commit --quiet --rm "$container" "$base_ref" >/dev/null ||
    die "buildah commit of the $suite root failed: run scripts/build-image.sh again"
  container=
  rm -rf "$scratch"
  scratch=
  say "base $base_ref made in $((SECONDS - started)) s"
}

if buildah inspect --type image "$base_ref" >/dev/null 2>&1; then
  say "base $base_ref present"
elif timeout 60 buildah pull --quiet "$base_ref" >/dev/null 2>&1; then
  say "pulled $base_ref"
else
  say "cannot pull $base_ref (no registry reachable): making it locally"
  make_base
fi

# An HTTPS proxy that re-signs traffic (as on this machine) needs its CA for npm inside the build: the host's bundle.
secret=()
ca=/etc/ssl/certs/ca-certificates.crt
[ -s "$ca" ] && secret=(--secret "id=npm-ca,src=$ca")

# --network host for the RUN steps (apt, npm): the default private network would make buildah add a bridge and
# firewall rules to the host; host networking adds nothing. --pull=never: the base is local by now.
say "building $image from $dockerfile"
scratch=$(mktemp -d /tmp/podwire-build.XXXXXX)
started=$SECONDS
building=" $(buildah containers --quiet | tr '\n' ' ') "
# Its whole output only when it fails.
if ! buildah build --layers --pull=never --network host "${secret[@]}" -f "$dockerfile" -t "$image" . 2>&1 |
  steps "$scratch/build.log"; then
  tail -n 30 "$scratch/build.log" >&2
  die "buildah build of $dockerfile failed (last lines above): fix it and run scripts/build-image.sh again"
fi
building=
say "built $image in $((SECONDS - started)) s"
printf '%s %s\n' "$image" "$(buildah images --format '{{.Size}}' "$image")"
