#!/usr/bin/env bash
# Installs what deploybench needs on Debian or Ubuntu and starts the Docker daemon.
# Idempotent: a second run installs nothing and starts nothing, and says so.
# Must run as root (or through sudo), since it installs packages and starts dockerd.
set -euo pipefail

log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 2; }

PACKAGES=(
  docker.io          # the container engine
  debootstrap        # the full Debian userland of the fat-image model
  docker-registry    # a local CNCF distribution registry for pull measurements
  qemu-system-x86    # the vm model
  qemu-utils         # qemu-img for VM disks
  fonts-dejavu-core  # the font that PNG plots are drawn with
  iproute2           # tc, for link shaping
  ca-certificates
  git
)

[ "$(id -u)" -eq 0 ] || die "run as root, for example: sudo $0"
. /etc/os-release 2>/dev/null || die "cannot read /etc/os-release: only Debian and Ubuntu are supported"
case " ${ID:-} ${ID_LIKE:-} " in
  *" debian "*|*" ubuntu "*) ;;
  *) die "this is ${PRETTY_NAME:-an unknown system}; only Debian and Ubuntu are supported" ;;
esac

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done

# Installing qemu-system-x86 removes a newer qemu-utils from backports, so the two
# are always installed together.
case " ${missing[*]:-} " in
  *" qemu-system-x86 "*) case " ${missing[*]} " in *" qemu-utils "*) ;; *) missing+=(qemu-utils) ;; esac ;;
esac

if [ ${#missing[@]} -eq 0 ]; then
  log "all ${#PACKAGES[@]} packages already installed"
else
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/deploybench-apt.log 2>&1; then
    # A qemu-utils from backports blocks the suite's qemu-system-x86: take both from the suite.
    log "install failed, retrying with qemu-utils from ${VERSION_CODENAME:-the release}"
    retry=()
    for package in "${missing[@]}"; do
      if [ "$package" = qemu-utils ] || [ "$package" = qemu-system-x86 ]; then continue; fi
      retry+=("$package")
    done
    retry+=(qemu-system-x86 "qemu-utils/${VERSION_CODENAME}")
    apt-get install -y -qq --no-install-recommends "${retry[@]}" >/tmp/deploybench-apt.log 2>&1 \
      || { tail -20 /tmp/deploybench-apt.log >&2; die "apt-get install failed; the log is /tmp/deploybench-apt.log"; }
  fi
  log "installed ${#missing[@]} package(s)"
fi

# The Docker daemon: started by systemd where it runs, by hand otherwise.
if docker info >/dev/null 2>&1; then
  log "the Docker daemon already answers"
else
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    log "starting docker with systemctl"
    systemctl start docker || die "systemctl start docker failed; see journalctl -u docker"
  else
    log "starting dockerd in the background (log: /var/log/deploybench-dockerd.log)"
    nohup dockerd >>/var/log/deploybench-dockerd.log 2>&1 &
  fi
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 \
    || { tail -20 /var/log/deploybench-dockerd.log >&2 2>/dev/null || true; die "the Docker daemon did not answer within 60 s"; }
  log "the Docker daemon answers"
fi

command -v cargo >/dev/null || die "cargo not found: install Rust (rustup) for this user first"
log "ready: docker $(docker version --format '{{.Server.Version}}' 2>/dev/null), $(cargo --version)"
