#!/usr/bin/env bash
# Build (once) and keep a Debian 13 root file system that holds the real Apptainer 1.4.5,
# iptables, iproute2, the CNI plugins and python3. Idempotent: a stamp records the recipe's
# hash, and a matching stamp means nothing is done. One flock guards concurrent runs.
set -euo pipefail

HOST_DIR=${CF_TESTHOST_DIR:-/var/cache/cf-launch-testhost}
ROOT="$HOST_DIR/rootfs"
HERE=$(cd "$(dirname "$0")" && pwd)
PACKAGES="apptainer/unstable iptables nftables iproute2 containernetworking-plugins ethtool python3 python3-venv curl ca-certificates squashfs-tools uidmap fuse2fs procps psmisc systemd-container debootstrap"
RECIPE_HASH=$( (cat "$0"; echo "$PACKAGES") | sha256sum | cut -c1-16)
STAMP="$ROOT/.cf-testhost-$RECIPE_HASH"

mkdir -p "$HOST_DIR"
exec 9>"$HOST_DIR/.provision.lock"
flock 9

if [ -e "$STAMP" ]; then
  echo "testhost: $ROOT is ready (recipe $RECIPE_HASH)"
  exit 0
fi

need() { command -v "$1" >/dev/null 2>&1; }
if ! need debootstrap; then
  echo "testhost: installing debootstrap on this machine"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

if [ ! -x "$ROOT/usr/bin/apt-get" ] || [ ! -e "$ROOT/.debootstrap-done" ]; then
  echo "testhost: debootstrap trixie into $ROOT (about 30 s)"
  rm -rf "$ROOT"
  debootstrap --variant=minbase trixie "$ROOT" http://deb.debian.org/debian >"$HOST_DIR/debootstrap.log" 2>&1 \
    || { tail -20 "$HOST_DIR/debootstrap.log"; exit 1; }
  touch "$ROOT/.debootstrap-done"
fi

cat >"$ROOT/etc/apt/sources.list" <<SRC
deb http://deb.debian.org/debian trixie main
deb http://deb.debian.org/debian sid main
SRC
cat >"$ROOT/etc/apt/apt.conf.d/99cf-testhost" <<CONF
Acquire::Check-Valid-Until "false";
APT::Install-Recommends "false";
CONF
cat >"$ROOT/etc/apt/preferences.d/99cf-testhost" <<PREF
Package: *
Pin: release n=trixie
Pin-Priority: 900

Package: *
Pin: release a=unstable
Pin-Priority: 100
PREF
# The machine's CA bundle (a TLS-intercepting proxy signs PyPI) becomes the rootfs's trust too.
mkdir -p "$ROOT/usr/local/share/ca-certificates"
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/cf-testhost-ca.crt"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true

echo "testhost: installing Apptainer and tools inside the rootfs"
"$HERE/enter.sh" bash -euc "
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq $PACKAGES >/var/log/cf-testhost-apt.log 2>&1 || { tail -30 /var/log/cf-testhost-apt.log; exit 1; }
  grep -q '^root:' /etc/subuid || echo 'root:100000:65536' >>/etc/subuid
  grep -q '^root:' /etc/subgid || echo 'root:100000:65536' >>/etc/subgid
  conf=/etc/apptainer/apptainer.conf
  sed -i 's/^root default capabilities = .*/root default capabilities = file/' \$conf
  grep -q '^root default capabilities = file' \$conf || echo 'root default capabilities = file' >>\$conf
  caps=\$(apptainer capability avail 2>/dev/null | grep -o '^CAP_[A-Z_]*' | grep -v '^CAP_SYS_RESOURCE\$' | paste -sd, -)
  apptainer capability add --user root \"\$caps\"
  apptainer --version
"
touch "$STAMP"
echo "testhost: ready at $ROOT"
