#!/usr/bin/env bash
# Run the unit tests under Python 3.9 (Amazon Linux 2023's python3): Debian 11 (bullseye)
# ships python3 3.9, so a bullseye root file system made with debootstrap holds it. The root
# file system and a venv with the test dependencies are built once and kept under
# /var/cache/cf-launch-py39 (stamps record the recipe's and pyproject.toml's hashes); each
# run copies this tree in, installs it editable without dependencies, and runs pytest.
# Run as root. Extra arguments go to pytest.
set -euo pipefail

PY_DIR=${CF_PY39_DIR:-/var/cache/cf-launch-py39}
ROOT="$PY_DIR/rootfs"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
ENTER="$SRC/tests/host/enter.sh"
PACKAGES="python3 python3-venv iproute2 iptables nftables ethtool containernetworking-plugins ca-certificates"
RECIPE_HASH=$( (cat "$0"; echo "$PACKAGES") | sha256sum | cut -c1-16)
STAMP="$ROOT/.cf-py39-$RECIPE_HASH"
VENV=/opt/cf-py39-venv
DEPS_HASH=$(sha256sum "$SRC/pyproject.toml" | cut -c1-16)
# Unit tests that create network namespaces on this machine run in the main test run only.
DESELECT=(
  --deselect tests/unit/lifecycle/test_launcher.py::test_stop_from_another_namespace_is_refused
  --deselect tests/unit/lifecycle/test_launcher.py::test_stop_after_the_namespace_is_gone
  --deselect tests/unit/test_docs.py::test_example_plugin_starts_and_stops_in_a_namespace
  # The settings fuzz test (150 random configs, each a cf-launch start/stop in a sandbox
  # namespace) took 716 s of this stage's 820 s; it runs in the main test run.
  --deselect tests/unit/config/test_fuzz_settings.py::test_random_settings_never_crash
)

mkdir -p "$PY_DIR"
exec 9>"$PY_DIR/.run.lock"   # one run at a time: the venv is shared
flock 9

if [ ! -e "$STAMP" ]; then   # new, interrupted, or made by another recipe: start again
  echo "py39: debootstrap bullseye into $ROOT (about a minute)"
  rm -rf "$ROOT"
  debootstrap --variant=minbase --include="${PACKAGES// /,}" bullseye "$ROOT" \
    http://deb.debian.org/debian >"$PY_DIR/debootstrap.log" 2>&1 \
    || { tail -20 "$PY_DIR/debootstrap.log"; exit 1; }
  touch "$STAMP"
fi
# The machine's CA bundle (a TLS-intercepting proxy may sign PyPI) and resolver, every run.
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/cf-testhost-ca.crt"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true

CF_TESTHOST_DIR="$PY_DIR" CF_TESTHOST_BINDS="$SRC:/src" "$ENTER" bash -euc '
  venv=$1 deps=$2; shift 2
  unset PIP_FIND_LINKS  # a path on this machine, not in the root file system
  python3 --version
  tar -C /src --exclude=./.git --exclude=./.venv --exclude="*.sif" --exclude=__pycache__ \
    --exclude=./tests/host/rootfs --exclude="./.*_cache" -cf - . | (mkdir -p /tmp/src && tar -C /tmp/src -xf -)
  if [ "$(cat "$venv/.deps" 2>/dev/null)" != "$deps" ]; then
    echo "py39: venv with the test dependencies"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip setuptools wheel
    "$venv/bin/pip" install -q "/tmp/src[test]"
    echo "$deps" >"$venv/.deps"
  fi
  "$venv/bin/pip" install -q --no-deps --no-build-isolation -e /tmp/src
  # the test seams work only in a marked venv (coldfront_launch/config/seams.py)
  "$venv/bin/python" -c "from coldfront_launch.config.seams import mark_this_venv; mark_this_venv()"
  cd /tmp/src
  exec "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/unit tests/packaging "$@"
' py39 "$VENV" "$DEPS_HASH" "${DESELECT[@]}" "$@"
