#!/usr/bin/env bash
# Boot a throw-away copy of the test host's root file system with a real systemd as PID 1
# (systemd-nspawn -b), for tests of cf-launch's systemd unit. Nothing is written to the test
# host itself: the copy is an overlay (upper layer in WORKDIR), removed by `stop`.
#
#   nspawn.sh boot WORKDIR NETNS   boot it in the existing network namespace /run/netns/NETNS
#                                  (never this machine's own); prints the PID of systemd inside
#   nspawn.sh stop WORKDIR         power it off, unmount, remove WORKDIR and its cgroups
#
# Enter it with `nsenter -t <pid> -a -r -w CMD` to read state, but start instances through
# systemd (systemctl, systemd-run): a process entered from outside stays in this machine's
# cgroups, shown as "/../.." inside the container's cgroup namespace. An
# `apptainer instance start --boot` run from there reports success, but systemd inside
# the instance stops in pause() at once, with nothing in the instance's logs, and
# `systemctl` in it says "Failed to connect to bus: No such file or directory". The same
# command run by `systemd-run` inside boots to `running`.
#
# What it takes on this machine (cgroup v1, PID 1 not systemd):
#  - --register=no --keep-unit: there is no machined or systemd on the host to register with.
#  - Own cgroups: nspawn starts in a cgroup of its own in every v1 hierarchy, name=systemd and
#    the unified one, so the container's cgroup namespace root is that cgroup, and the
#    hierarchies it remounts writable (Apptainer places instances in cgroups) show only it.
#  - SYSTEMD_NSPAWN_API_VFS_WRITABLE=network: /proc/sys/net writable (cf-launch sets
#    ip_forward in the sandbox namespace); the rest of /proc/sys stays read-only.
#  - /dev/loop-control and /dev/fuse bound in, /dev/loopN made inside (its /dev is a tmpfs).
#  - `systemd cgroups = no` for the Apptainer inside (no scope units through its systemd).
set -euo pipefail
HOST_DIR=${CF_TESTHOST_DIR:-/var/cache/cf-launch-testhost}
ROOT="$HOST_DIR/rootfs"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
CG=/sys/fs/cgroup
BOOT_TIMEOUT=${CF_NSPAWN_BOOT_TIMEOUT:-90}

usage() { echo "usage: $0 boot WORKDIR NETNS | stop WORKDIR" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1 work=$2
# A valid machine name (letters, digits, "-"): mkdtemp's suffix may hold "_", which nspawn
# refuses ("Invalid machine name"); a short hash of the folder is always valid.
tag=cf-nspawn-$(printf %s "$work" | sha256sum | cut -c1-12)

# The v1 hierarchies to give the container (mount points under /sys/fs/cgroup).
hierarchies() {
  awk '$3 == "cgroup" && $2 ~ "^/sys/fs/cgroup/" {print $2}' /proc/self/mounts
}

# A cgroup of our own under the current one in hierarchy $1 (its mount point).
own_cgroup() {
  local mnt=$1 opts current
  opts=$(awk -v m="$mnt" '$2 == m {print $4}' /proc/self/mounts)
  current=$(awk -F: -v o=",$opts," '
    { n = split($2, a, ","); for (i = 1; i <= n; i++) if (index(o, "," a[i] ",")) { print $3; exit } }' \
    /proc/self/cgroup)
  [ -n "$current" ] || current=/
  echo "$mnt${current%/}/$tag"
}

cgroup_dirs() {
  for mnt in $(hierarchies); do own_cgroup "$mnt"; done
  if [ "$(stat -fc %T "$CG")" = cgroup2fs ]; then   # cgroup v2 only (not tried on this CI)
    echo "$CG$(awk -F: '$1 == "0" {print $3}' /proc/self/cgroup | sed 's:/$::')/$tag"
  elif mountpoint -q "$CG/unified"; then
    echo "$CG/unified$(awk -F: '$1 == "0" {print $3}' /proc/self/cgroup | sed 's:/$::')/$tag"
  fi
}

boot() {
  local netns=$1
  [ -d "$ROOT" ] || { echo "nspawn.sh: no rootfs at $ROOT (run provision.sh)" >&2; exit 2; }
  [ -e "/run/netns/$netns" ] || { echo "nspawn.sh: no netns $netns" >&2; exit 2; }
  command -v systemd-nspawn >/dev/null || { echo "nspawn.sh: install systemd-container" >&2; exit 2; }
  mkdir -p "$work/upper" "$work/work" "$work/root"
  mount -t overlay overlay \
    -o "lowerdir=$ROOT,upperdir=$work/upper,workdir=$work/work" "$work/root"
  sed -i 's/^systemd cgroups = yes/systemd cgroups = no/' "$work/root/etc/apptainer/apptainer.conf"

  cgroup_dirs >"$work/cgroups"
  while read -r dir; do
    mkdir -p "$dir"
    if [ -e "$dir/cpuset.cpus" ]; then
      cat "$(dirname "$dir")/cpuset.cpus" >"$dir/cpuset.cpus"
      cat "$(dirname "$dir")/cpuset.mems" >"$dir/cpuset.mems"
    fi
  done <"$work/cgroups"

  # shellcheck disable=SC2016
  setsid bash -c '
    while read -r dir; do echo $$ >"$dir/cgroup.procs"; done <"$1/cgroups"
    exec env SYSTEMD_NSPAWN_API_VFS_WRITABLE=network systemd-nspawn --boot --quiet \
      --directory="$1/root" --machine="$2" --register=no --keep-unit \
      --network-namespace-path="/run/netns/$3" --capability=all \
      --bind=/dev/loop-control --bind=/dev/fuse --bind-ro="$4:/src" \
      --console=pipe
  ' nspawn "$work" "$tag" "$netns" "$SRC" </dev/null >"$work/console.log" 2>&1 &
  echo $! >"$work/nspawn.pid"

  local leader="" deadline=$((SECONDS + BOOT_TIMEOUT)) state=""
  while [ $SECONDS -lt $deadline ]; do
    kill -0 "$(cat "$work/nspawn.pid")" 2>/dev/null \
      || { echo "nspawn.sh: systemd-nspawn exited:" >&2; tail -20 "$work/console.log" >&2; exit 1; }
    leader=$(pgrep -P "$(cat "$work/nspawn.pid")" | head -1 || true)
    if [ -n "$leader" ] && [ "$(readlink "/proc/$leader/exe" 2>/dev/null)" != "$(readlink -f "$(command -v systemd-nspawn)")" ]; then
      state=$(nsenter -t "$leader" -a systemctl is-system-running 2>/dev/null || true)
      case $state in running|degraded) break ;; esac
    fi
    sleep 0.5
  done
  case $state in running|degraded) ;; *)
    echo "nspawn.sh: systemd inside did not come up within ${BOOT_TIMEOUT}s (state: ${state:-none})" >&2
    tail -20 "$work/console.log" >&2; exit 1 ;;
  esac
  echo "$leader" >"$work/leader"

  # Loop devices for Apptainer's images. The v1 hierarchies this machine mounts become
  # writable inside (through the container's cgroup namespace only our own cgroups show);
  # the ones nspawn adds that this machine does not mount are unmounted inside, so nothing
  # inside creates cgroups at their roots.
  nsenter -t "$leader" -a bash -euc '
    for i in $(seq 0 63); do [ -e /dev/loop$i ] || mknod -m 660 /dev/loop$i b 7 $i; done
    ours=" $1 "
    awk '\''$3 == "cgroup" && $2 ~ "^/sys/fs/cgroup/" && $2 != "/sys/fs/cgroup/systemd" {print $2, $4}'\'' \
        /proc/self/mounts | while read -r dir opts; do
      umount -l "$dir"
      case $ours in *" ${dir##*/} "*) ;; *) continue ;; esac
      ctrl=$(echo "$opts" | tr , "\n" | grep -v -x -e ro -e rw -e "no.*" -e relatime | paste -sd, -)
      mount -t cgroup -o "$ctrl" cgroup "$dir"
    done
  ' remount "$(hierarchies | grep -v /systemd$ | xargs -n1 basename | paste -sd' ' -)"
  echo "$leader"
}

stop() {
  if [ -s "$work/nspawn.pid" ]; then
    local pid
    pid=$(cat "$work/nspawn.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"   # nspawn asks systemd inside to power off
      for _ in $(seq 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
      for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    fi
  fi
  if mountpoint -q "$work/root"; then
    # nspawn leaves a lock named after the root's inode, and (as /run is not a tmpfs here)
    # its propagation folder.
    rm -f "/run/systemd/nspawn/locks/$(stat -c 'inode-%d:%i' "$work/root")"
    umount "$work/root" || umount -l "$work/root"
  fi
  rm -rf "/run/systemd/nspawn/propagate/$tag"
  rmdir /run/systemd/nspawn/propagate /run/systemd/nspawn/locks /run/systemd/nspawn 2>/dev/null || true
  if [ -s "$work/cgroups" ]; then
    while read -r dir; do
      [ -d "$dir" ] && find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done <"$work/cgroups"
  fi
  rm -rf "$work"
}

case $cmd in
  boot) [ $# -eq 3 ] || usage; boot "$3" ;;
  stop) stop ;;
  *) usage ;;
esac
