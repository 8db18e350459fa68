#!/usr/bin/env bash
# The test command (README): installs everything the tests need on a bare Debian 12
# machine (apt + pip), runs ruff and mypy, the unit tests under Python 3.9 (tests/py39), builds
# the Apptainer test host once, then runs pytest.
# Run as root. Extra arguments go to pytest (e.g. -m "not integration").
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "tests/run.sh: run as root (network namespaces, Apptainer --boot)" >&2
  exit 2
fi

APT_PACKAGES="python3 python3-venv iptables nftables iproute2 ethtool containernetworking-plugins debootstrap curl util-linux openssl"
missing=""
for pkg in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  echo "== apt: installing$missing"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

echo "== python: venv and packages"
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip >/dev/null
.venv/bin/pip install -q -e '.[test]'

echo "== lint: ruff, mypy, import layers, Python 3.9 syntax"
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/lint-imports --no-cache
.venv/bin/vermin --target=3.9- --eval-annotations --no-tips --violations -q coldfront_launch/ hooks/

echo "== python 3.9: unit tests in a Debian 11 root file system (cached after the first run)"
bash tests/py39/run.sh

echo "== test host: Debian 13 root file system with Apptainer (cached after the first run)"
bash tests/host/provision.sh

echo "== pytest"
exec .venv/bin/python -m pytest -ra "$@"
