"""Undo in batches: one firewall transaction per family, every claim in one pass, and
entry by entry when a batch fails, with the journal rewritten after each step."""

from __future__ import annotations

from pathlib import Path

import pytest

from coldfront_launch import changes as c
from coldfront_launch.changes import claims
from coldfront_launch.changes import journal as typed
from coldfront_launch.changes.undo import steps, undo_all
from coldfront_launch.errors import HostChangeError
from coldfront_launch.linux import netfilter, netinfo
from coldfront_launch.linux.netfilter import Chain, Jump, Ruleset
from coldfront_launch.state.instance import InstanceState


def ruleset(owner: str, family: str = "ipv4") -> Ruleset:
    chain = f"CF-LAUNCH-{owner}"
    return Ruleset((Chain("filter", chain, ("-j ACCEPT",)),),
                   (Jump("filter", "FORWARD", f"-j {chain}"),), family)


def fw(owner: str, family: str = "ipv4") -> c.Firewall:
    return c.Firewall(f"bridge:{owner}", ruleset(owner, family), netinfo.netns_id())


class FakeFirewall:
    """Records each ``netfilter.remove`` call; refuses any that holds a chain in ``refuse``
    (as iptables-restore refuses a whole transaction)."""

    def __init__(self, refuse: tuple[str, ...] = ()) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.refuse = refuse

    def remove(self, chains: object, family: str = "ipv4") -> None:
        names = [name for _table, name in chains]  # type: ignore[attr-defined]
        self.calls.append((family, names))
        if any(name in self.refuse for name in names):
            raise HostChangeError("iptables-restore: line 2 failed")


@pytest.fixture
def fake_fw(monkeypatch: pytest.MonkeyPatch) -> FakeFirewall:
    fake = FakeFirewall()
    monkeypatch.setattr(netfilter, "remove", fake.remove)
    return fake


def journal(tmp_path: Path, *entries: c.HostChange) -> InstanceState:
    state = InstanceState(tmp_path / "state" / "cf1")
    for entry in entries:
        typed.record(state, entry)
    return state


def test_neighbours_with_one_batch_key_share_a_step() -> None:
    sysctl = c.Sysctl(name="net.ipv4.ip_forward", value="1", original="0", netns="1")
    link = c.Link(ifname="sbr0", original="absent", netns="1")
    veth = c.Offloads(ifname="veth1", features={"tso": False}, shared=False,
                      original={"tso": True}, netns="1")
    entries = [c.File("/x"), sysctl, link, c.StopInstance("cf1"), fw("a"), fw("b"),
               fw("c", "ipv6"), veth]
    kinds = [[ch.target for ch in group] for _low, group in steps(entries)]
    assert kinds == [["veth1"], ["bridge:c"], ["bridge:b", "bridge:a"], ["cf1"],
                     ["sbr0", "net.ipv4.ip_forward"], ["/x"]]
    assert [low for low, _ in steps(entries)] == [7, 6, 4, 3, 1, 0]
    assert all(len(g) == 1 for _low, g in steps(entries, alone=True))


def test_a_repeated_entry_is_an_empty_step_and_breaks_no_order() -> None:
    entries = [fw("a"), c.StopInstance("cf1"), fw("a")]
    assert [(low, [x.kind for x in g]) for low, g in steps(entries)] == [
        (2, []), (1, ["instance"]), (0, ["firewall"])]


def test_one_firewall_transaction_per_family(tmp_path: Path, fake_fw: FakeFirewall) -> None:
    state = journal(tmp_path, fw("a"), fw("b"), fw("a6", "ipv6"), fw("b6", "ipv6"))
    assert undo_all(state, tmp_path / "state", lambda _n: None) == []
    assert fake_fw.calls == [("ipv6", ["CF-LAUNCH-b6", "CF-LAUNCH-a6"]),
                             ("ipv4", ["CF-LAUNCH-b", "CF-LAUNCH-a"])]
    assert typed.entries(state) == []


def test_a_failed_batch_falls_back_to_entry_by_entry(tmp_path: Path,
                                                     fake_fw: FakeFirewall) -> None:
    """E.g. a firewall reload removed a chain: the batch is refused whole; undone one by
    one, only the entry that still fails is reported and kept; the rest goes."""
    fake_fw.refuse = ("CF-LAUNCH-b",)
    stopped: list[str] = []
    state = journal(tmp_path, c.StopInstance("cf1"), fw("a"), fw("b"), fw("c"))
    failures = undo_all(state, tmp_path / "state", stopped.append)
    assert fake_fw.calls == [("ipv4", ["CF-LAUNCH-c", "CF-LAUNCH-b", "CF-LAUNCH-a"]),
                             ("ipv4", ["CF-LAUNCH-c"]), ("ipv4", ["CF-LAUNCH-b"]),
                             ("ipv4", ["CF-LAUNCH-a"])]
    assert len(failures) == 1 and failures[0].startswith("firewall bridge:b: ")
    assert "line 2 failed" in failures[0]
    assert stopped == ["cf1"], "a failure blocks nothing after it"
    assert typed.entries(state) == [fw("b")], "the failed entry is kept, nothing else"


def test_a_batch_that_fails_only_as_a_batch_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_fw: FakeFirewall) -> None:
    def refuse_batches(changes: list[c.HostChange], env: c.HostEnv) -> None:
        raise HostChangeError("batch refused")
    monkeypatch.setattr(c.Firewall, "undo_batch", classmethod(
        lambda cls, changes, env: refuse_batches(changes, env)))
    state = journal(tmp_path, fw("a"), fw("b"))
    assert undo_all(state, tmp_path / "state", lambda _n: None) == []
    assert [names for _f, names in fake_fw.calls] == [["CF-LAUNCH-b"], ["CF-LAUNCH-a"]]
    assert typed.entries(state) == []


def test_journal_rewritten_after_each_step(tmp_path: Path, fake_fw: FakeFirewall) -> None:
    """A kill during stop loses nothing: when the instance stops, the batch undone before
    it is already out of the journal, and everything older is still in it."""
    sysctl = c.Sysctl(name="net.ipv4.ip_forward", value="1", original="0",
                      netns=netinfo.netns_id())
    state = journal(tmp_path, sysctl, c.StopInstance("cf1"), fw("a"), fw("b"))
    seen: list[list[c.HostChange]] = []
    failures = undo_all(state, tmp_path / "state", lambda _n: seen.append(typed.entries(state)))
    assert seen == [[sysctl, c.StopInstance("cf1")]]
    assert failures == [] and typed.entries(state) == []


def sysctl_claims(root: Path, sysctl_root: Path, names: list[str]) -> list[c.Sysctl]:
    made = []
    for name in names:
        path = sysctl_root / name.replace(".", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("1\n")
        change = c.Sysctl(name=name, value="1", original="0", netns=netinfo.netns_id())
        claims.claim(root, "cf1", change.key(), lambda: "0")
        made.append(change)
    return made


def test_claims_released_in_one_pass(tmp_path: Path, sysctl_root: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "state"
    made = sysctl_claims(root, sysctl_root, ["net.a.x", "net.a.y", "net.a.z"])
    writes: list[int] = []
    real_write = claims._write
    monkeypatch.setattr(claims, "_write",
                        lambda r, reg: (writes.append(len(reg)), real_write(r, reg)))
    state = journal(tmp_path, *made)
    assert undo_all(state, root, lambda _n: None) == []
    assert writes == [0], "one write of the registry for three claims"
    assert [(sysctl_root / n).read_text().strip() for n in ("net/a/x", "net/a/y", "net/a/z")] \
        == ["0", "0", "0"]
    assert claims.read(root) == {} and typed.entries(state) == []


def test_a_failed_restore_in_the_claims_pass_falls_back(tmp_path: Path,
                                                        sysctl_root: Path) -> None:
    root = tmp_path / "state"
    good = sysctl_claims(root, sysctl_root, ["net.a.x", "net.a.z"])
    bad = c.Sysctl(name="net.gone.y", value="1", original="0",
                   netns=netinfo.netns_id())  # its file has vanished
    claims.claim(root, "cf1", bad.key(), lambda: "0")
    state = journal(tmp_path, good[0], bad, good[1])
    failures = undo_all(state, root, lambda _n: None)
    assert len(failures) == 1 and "sysctl net.gone.y" in failures[0]
    assert (sysctl_root / "net/a/x").read_text().strip() == "0"
    assert (sysctl_root / "net/a/z").read_text().strip() == "0"
    assert list(claims.read(root)) == [bad.key()], "only the failed claim is still held"
    assert typed.entries(state) == [bad]


def test_shared_file_batch_removes_its_folders(tmp_path: Path) -> None:
    root = tmp_path / "state"
    folder = tmp_path / "etc" / "net"
    folder.mkdir(parents=True)
    (folder / "50.conflist").write_text("{}")
    shared = c.SharedFile(str(folder / "50.conflist"), 0o644, "", (str(tmp_path / "etc"),
                                                                  str(folder)), "ab")
    link = c.Link(ifname="cfl-none0", original="present", netns=netinfo.netns_id())
    for change in (shared, link):
        claims.claim(root, "cf1", change.key(), change.original_value)
    state = journal(tmp_path, shared, link)
    assert undo_all(state, root, lambda _n: None) == []
    assert not (tmp_path / "etc").exists(), "the file and the folders it needed are gone"


def test_a_failed_ruleset_keeps_the_table_and_chain_it_uses(tmp_path: Path,
                                                            fake_fw: FakeFirewall) -> None:
    """The claims on the table and built-in chain a kept ruleset still uses stay held and
    journaled (undone by the next stop); those of the other family are released."""
    fake_fw.refuse = ("CF-LAUNCH-a",)
    here = netinfo.netns_id()
    root = tmp_path / "state"
    table = c.IptablesTable(table="filter", original="present", netns=here)
    chain = c.NftBaseChain(table="filter", chain="FORWARD", original="present", netns=here)
    table6 = c.IptablesTable(table="filter", original="present", netns=here, family="ipv6")
    for claim in (table, chain, table6):
        claims.claim(root, "cf1", claim.key(), claim.original_value)
    state = journal(tmp_path, table6, fw("b6", "ipv6"), table, chain, fw("a"))
    failures = undo_all(state, root, lambda _n: None)
    assert len(failures) == 1 and failures[0].startswith("firewall bridge:a: ")
    assert typed.entries(state) == [table, chain, fw("a")]
    assert set(claims.read(root)) == {table.key(), chain.key()}
    fake_fw.refuse = ()
    assert undo_all(state, root, lambda _n: None) == []
    assert typed.entries(state) == [] and claims.read(root) == {}
