#!/usr/bin/env bash
# The test command (README): installs everything the tests need on a bare Debian 12
# machine (apt + pip), runs ruff and mypy, the unit tests under Python 3.9 (tests/py39, in the
# background), builds the Apptainer test host once, then runs pytest.
# Run as root. Extra arguments go to pytest (e.g. -m "not integration").
#
# tests/run.sh --quick: the day-to-day loop: lint (ruff, mypy, import layers) and the unit
# tier (tests/unit, in parallel with pytest-xdist); no apt, no test host, no Apptainer, no
# Python 3.9 stage. It makes .venv if there is none. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "tests/run.sh: run as root (network namespaces, Apptainer --boot)" >&2
  exit 2
fi

make_venv() {
  echo "== python: venv and packages"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e '.[test]'
}

# The test seams (coldfront_launch/config/seams.py) work only in venvs marked by this file.
mark_test_venv() {
  "$1/bin/python" -c 'from coldfront_launch.config.seams import mark_this_venv; mark_this_venv()'
}

lint() {
  echo "== lint: ruff, mypy, import layers"
  .venv/bin/ruff check .
  .venv/bin/mypy
  .venv/bin/lint-imports --no-cache
}

if [ "${1:-}" = "--quick" ]; then
  shift
  # a venv made before pytest-xdist joined the test extras is brought up to date
  .venv/bin/python -c 'import xdist' 2>/dev/null || make_venv
  mark_test_venv .venv
  lint
  echo "== pytest: the unit tier"
  # Two workers a core: many tests wait on child processes. The fuzz tests try fewer
  # random inputs here (the full run: 150 settings files, 40 damaged journals).
  export CF_FUZZ_EXAMPLES=${CF_FUZZ_EXAMPLES:-25}
  exec .venv/bin/python -m pytest tests/unit -q -n "$(( $(nproc) * 2 ))" --dist load \
    -p no:cacheprovider "$@"
fi

# firewalld, dbus-daemon: the automatic-repair tests run them in sandbox namespaces only.
# systemd-container: nspawn boots the test host with systemd as PID 1 (service test).
# postgresql: the external-database test runs it in a sandbox namespace (tests/host/database.py).
# openssl: certificates for the site-TLS tests.
APT_PACKAGES="python3 python3-venv iptables nftables iproute2 ethtool containernetworking-plugins debootstrap curl util-linux dbus dbus-daemon firewalld systemd-container openssl postgresql"
missing=""
for pkg in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  echo "== apt: installing$missing"
  # Installing firewalld (or dbus) must not start it in this machine's own namespace:
  # invoke-rc.d asks policy-rc.d, and 101 means "do not start".
  made_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
  # Nor at the next boot: the tests start it themselves, in a sandbox namespace.
  case " $missing " in
    *" firewalld "*) systemctl disable firewalld.service >/dev/null 2>&1 || true ;;
  esac
fi

make_venv
mark_test_venv .venv
lint
echo "== lint: Python 3.9 syntax"
.venv/bin/vermin --target=3.9- --eval-annotations --no-tips --violations -q coldfront_launch/ hooks/

# The Python 3.9 stage (its own Debian 11 root file system: a debootstrap, a venv, then
# about 90 s of unit tests) runs beside the test host's provisioning and pytest, which
# mostly wait for network downloads and booting instances; its output follows pytest's.
py39_log=$(mktemp /tmp/cf-launch-py39.XXXXXX)
echo "== python 3.9: unit tests in a Debian 11 root file system, in the background (cached after the first run)"
bash tests/py39/run.sh >"$py39_log" 2>&1 &
py39_pid=$!
trap 'kill "$py39_pid" 2>/dev/null || true' EXIT

echo "== test host: Debian 13 root file system with Apptainer (cached after the first run)"
bash tests/host/provision.sh

echo "== pytest"
status=0
.venv/bin/python -m pytest -ra --durations=25 "$@" || status=$?

echo "== python 3.9: its output"
py39_status=0
wait "$py39_pid" || py39_status=$?
trap - EXIT
cat "$py39_log"
rm -f "$py39_log"
if [ "$py39_status" -ne 0 ]; then
  echo "tests/run.sh: the Python 3.9 stage failed (exit $py39_status)" >&2
  exit "$py39_status"
fi
exit "$status"
