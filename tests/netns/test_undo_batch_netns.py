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
from coldfront_launch.linux.netfilter import Chain, Jump, Ruleset
from coldfront_launch.changes.host import RealHost
from coldfront_launch.state.instance import InstanceState
from coldfront_launch.changes.undo import undo_all
import coldfront_launch.linux.netfilter as fw

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


REFERENCED = """
import json, subprocess, sys
from pathlib import Path
from coldfront_launch.linux.netfilter import Chain, Jump, Ruleset
from coldfront_launch.changes.host import RealHost
from coldfront_launch.state.instance import InstanceState
from coldfront_launch.changes.undo import undo_all
import coldfront_launch.linux.netfilter as fw

root = Path(sys.argv[1])
restores = []
real_run = fw._run
def counting(argv, stdin=None):
    if argv[0].endswith("-restore"):
        restores.append(argv[0])
    return real_run(argv, stdin)
fw._run = counting
state = InstanceState(root / "cf1")
host = RealHost(state, root)  # FOREIGN exists already (the test made it)
for owner in ("a", "b"):
    host.apply_firewall(f"t:{owner}", Ruleset((Chain("filter", f"CFL-{owner}", ("-j RETURN",)),),
                                              (Jump("filter", "FORWARD", f"-j CFL-{owner}"),)))
# Someone else's chain jumps into cf-launch's chain a: deleting a is refused.
subprocess.run(["iptables", "-A", "FOREIGN", "-j", "CFL-a"], check=True)
restores.clear()
first = undo_all(state, root, lambda _n: None)
after_first = [r["type"] + ":" + r.get("owner", "") for r in state.records()]
left = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
subprocess.run(["iptables", "-F", "FOREIGN"], check=True)
second = undo_all(state, root, lambda _n: None)
print(json.dumps({"first": first, "journal": after_first, "calls": restores,
                  "b_left": "CFL-b" in left, "a_left": ":CFL-a" in left,
                  "second": second, "records": state.records()}))
"""


def test_a_refused_batch_falls_back_and_blocks_nothing(box: Sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Two owners' chains in one transaction; a foreign rule that references one of them
    makes iptables-restore refuse the whole batch. Entry by entry, the other owner's chain
    goes, the referenced one is reported and kept in the journal (with the claims on the
    table and built-in chain it still uses), and a later stop
    removes it and leaves the firewall as it was (the foreign chain, made before the
    start, so the filter table was there already)."""
    subprocess.run(["nsenter", f"--net=/run/netns/{box.host}", "iptables", "-N", "FOREIGN"],
                   check=True)
    before = network_snapshot(box.host)
    result = subprocess.run(["nsenter", f"--net=/run/netns/{box.host}", sys.executable, "-c",
                             REFERENCED, str(tmp_path)], capture_output=True, text=True,
                            cwd=ROOT, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["calls"][:1] == ["iptables-restore"] and len(found["calls"]) >= 3, \
        "the batch, then one restore per entry"
    assert len(found["first"]) == 1 and found["first"][0].startswith("firewall t:a: ")
    assert found["journal"] == ["iptables-table:", "nft-chain:", "firewall:t:a"], \
        "the refused entry is kept, with the table and built-in chain its jump is in"
    assert found["a_left"] and not found["b_left"]
    assert found["second"] == [] and found["records"] == []
    assert network_snapshot(box.host) == before
