#!/usr/bin/env bash
# Run a command inside the test host's root file system: a private mount namespace,
# proc/sys/dev and /run/netns brought in, tmpfs on /run and /tmp, then pivot_root
# (plain chroot breaks Apptainer's mount-point lookup). The machine's network namespace is
# inherited: callers that touch networking wrap this in `nsenter --net=/run/netns/<sandbox>`.
# Extra binds: CF_TESTHOST_BINDS="src:dst src:dst".
set -euo pipefail
HOST_DIR=${CF_TESTHOST_DIR:-/var/cache/cf-launch-testhost}
ROOT="$HOST_DIR/rootfs"
[ -d "$ROOT" ] || { echo "enter.sh: no rootfs at $ROOT (run provision.sh)" >&2; exit 2; }
mkdir -p /run/netns
exec unshare --mount --propagation private -- bash -euc '
  ROOT=$1; shift
  mount --bind "$ROOT" "$ROOT"
  mount -t proc proc "$ROOT/proc"
  mount --rbind /sys "$ROOT/sys"
  mount --rbind /dev "$ROOT/dev"
  mount -t tmpfs tmpfs "$ROOT/run"
  mount -t tmpfs tmpfs "$ROOT/tmp"
  mkdir -p "$ROOT/run/netns" "$ROOT/run/lock"
  mount --rbind /run/netns "$ROOT/run/netns"
  for pair in ${CF_TESTHOST_BINDS:-}; do
    src=${pair%%:*}; dst=${pair#*:}
    mkdir -p "$ROOT$dst"
    mount --rbind "$src" "$ROOT$dst"
  done
  cd "$ROOT"
  mkdir -p .oldroot
  pivot_root . .oldroot
  umount -l /.oldroot
  cd /
  export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  export SSL_CERT_FILE=/etc/cf-testhost-ca.crt PIP_CERT=/etc/cf-testhost-ca.crt REQUESTS_CA_BUNDLE=/etc/cf-testhost-ca.crt
  exec "$@"
' enter "$ROOT" "$@"
