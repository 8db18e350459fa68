"""The batched undo with the real iptables-nft and nft, in a sandbox namespace: the
instance's chains of both families and the empty tables and chains cf-launch brought in go
in one transaction each; a chain removed behind cf-launch's back (a firewall reload) makes
the batch fall back, and nothing is left."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.host.harness import ROOT, Sandbox, network_snapshot

pytestmark = pytest.mark.netns

DRIVER = """
import json, sys
from pathlib import Path
from coldfront_launch.firewall import Chain, Jump, Ruleset
from coldfront_launch.host import RealHost
from coldfront_launch.state import InstanceState
from coldfront_launch.undo import undo_all
import coldfront_launch.firewall as fw

root = Path(sys.argv[1])
restores = []
real_run = fw._run
def counting(argv, stdin=None):
    if argv[0].endswith("-restore") or argv[:2] == ["nft", "-f"] or argv[:2] == ["nft", "delete"]:
        restores.append(argv[0] + (" " + argv[1] if argv[0] == "nft" else ""))
    return real_run(argv, stdin)
fw._run = counting
names = sys.argv[2].split(",")
for name in names:
    host = RealHost(InstanceState(root / name), root)
    for family, table in (("ipv4", "mangle"), ("ipv6", "mangle")):
        chain = f"CFL-{name}-{family[-1]}"
        host.apply_firewall(f"t:{name}:{family}", Ruleset(
            (Chain(table, chain, ("-j RETURN",)),),
            (Jump(table, "FORWARD", f"-j {chain}"),), family))
if sys.argv[3] == "reload":
    import subprocess
    subprocess.run(["iptables", "-t", "mangle", "-D", "FORWARD", "-j", f"CFL-{names[0]}-4"],
                   check=True)
    for op in ("-F", "-X"):
        subprocess.run(["iptables", "-t", "mangle", op, f"CFL-{names[0]}-4"], check=True)
restores.clear()
failures = []
for name in reversed(names):
    failures += undo_all(InstanceState(root / name), root, lambda _n: None)
print(json.dumps({"failures": failures, "calls": restores}))
"""


@pytest.fixture
def box() -> Iterator[Sandbox]:
    sandbox = Sandbox.create(net=42)
    yield sandbox
    sandbox.destroy()


def run(box: Sandbox, root: str, names: str, mode: str) -> dict[str, list[str]]:
    result = subprocess.run(["nsenter", f"--net=/run/netns/{box.host}", sys.executable, "-c",
                             DRIVER, root, names, mode], capture_output=True, text=True,
                            cwd=ROOT, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    found: dict[str, list[str]] = json.loads(result.stdout)
    return found


def test_one_transaction_per_family_and_nothing_left(box: Sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    before = network_snapshot(box.host)
    found = run(box, str(tmp_path), "cf1", "plain")
    assert found["failures"] == []
    assert found["calls"] == ["ip6tables-restore", "nft -f", "iptables-restore", "nft -f"], \
        "per family: the chains in one restore, the empty table and chain in one nft -f"
    assert network_snapshot(box.host) == before


def test_a_chain_gone_after_a_reload_falls_back(box: Sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The removal reads the live ruleset, so a vanished chain alone does not fail it;
    all is gone, nothing reported."""
    before = network_snapshot(box.host)
    found = run(box, str(tmp_path), "cf1,cf2", "reload")
    assert found["failures"] == []
    assert network_snapshot(box.host) == before
