"""Typed host changes: each kind round-trips through the journal; 0.1 journals and
claims.json are migrated; unknown formats are refused with a clear message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coldfront_launch import changes as c
from coldfront_launch.changes import claims, journal
from coldfront_launch.changes.claims import ClaimKey
from coldfront_launch.errors import HostChangeError
from coldfront_launch.linux.netfilter import Chain, Jump, Ruleset
from coldfront_launch.state.instance import InstanceState

RULESET = Ruleset((Chain("nat", "CF-LAUNCH-ABC-DNAT", ("-p tcp -j DNAT --to 10.22.0.2:80",)),),
                  (Jump("nat", "PREROUTING", "-j CF-LAUNCH-ABC-DNAT"),))
EXAMPLES = [
    c.StopInstance("cf1"),
    c.Directory("/srv/a/b", ("/srv/a", "/srv/a/b")),
    c.File("/srv/x.conf", 0o600, "", ("/srv",)),
    c.SharedFile("/etc/net/50.conflist", 0o644, "", ("/etc/net",), "ab12"),
    c.Sysctl(name="net.ipv4.ip_forward", value="1", original="0", netns="4026531840"),
    c.Link(ifname="sbr0", original="absent", netns="4026531840"),
    c.Offloads(ifname="sbr0", features={"tx-checksumming": False}, shared=True,
               original={"tx-checksumming": True}, netns="4026531840"),
    c.Offloads(ifname="veth1", features={"tx-checksumming": False},
               original={"tx-checksumming": True}, netns="1"),
    c.IptablesTable(table="mangle", original="absent", netns="4026531840"),
    c.NftBaseChain(table="nat", chain="OUTPUT", original="present", netns="4026531840"),
    c.Firewall("bridge:cf1", RULESET, "4026531840"),
]


def test_every_kind_has_an_example() -> None:
    assert {type(e) for e in EXAMPLES} == set(c.HostChange.registry.values())


@pytest.mark.parametrize("change", EXAMPLES, ids=lambda e: e.kind)
def test_round_trip_through_the_journal(change: c.HostChange, tmp_path: Path) -> None:
    state = InstanceState(tmp_path / "cf1")
    journal.record(state, change)
    (back,) = journal.entries(state)
    assert back == change and type(back) is type(change)
    assert back.to_record() == change.to_record()
    assert json.loads(state.journal_path.read_text())["type"] == change.kind


def test_content_is_not_journaled(tmp_path: Path) -> None:
    """Bind files can be large, and the env file is secret: the journal keeps paths."""
    state = InstanceState(tmp_path / "cf1")
    journal.record(state, c.File("/srv/secret.env", 0o600, "SECRET_KEY=abc\n"))
    assert "SECRET_KEY" not in state.journal_path.read_text()


def test_namespace_is_a_field(tmp_path: Path) -> None:
    change = c.Sysctl(name="net.ipv4.ip_forward", value="1", original="0", netns="123")
    assert change.key() == ClaimKey("sysctl", "net.ipv4.ip_forward", "123")
    assert change.to_record()["netns"] == "123" and change.network
    assert not c.File("/x").network


V1_JOURNAL = [
    {"kind": "netns", "id": "777"},
    {"kind": "remove_dir", "path": "/srv/binds"},
    {"kind": "remove_file", "path": "/srv/binds/etc/x.conf"},
    {"kind": "release", "resource": "file:/etc/apptainer/network/50_cf.conflist"},
    {"kind": "release", "resource": "sysctl@777:net.ipv4.ip_forward"},
    {"kind": "release", "resource": "link@777:sbr0"},
    {"kind": "stop_instance", "name": "cf1"},
    {"kind": "release", "resource": "iptables-table@777:mangle"},
    {"kind": "release", "resource": "nft-chain@777:nat/OUTPUT"},
    {"kind": "remove_firewall", "chains": [["nat", "CF-LAUNCH-ABC-DNAT"]],
     "jumps": [["nat", "PREROUTING", "-j CF-LAUNCH-ABC-DNAT"]]},
    {"kind": "release", "resource": "offloads@777:sbr0"},
    {"kind": "restore_offloads", "ifname": "veth1", "features": {"tx-checksumming": True}},
]


def test_v1_journal_is_migrated(tmp_path: Path) -> None:
    state = InstanceState(tmp_path / "cf1")
    state.ensure()
    state.journal_path.write_text("".join(json.dumps(r) + "\n" for r in V1_JOURNAL))
    got = journal.entries(state)
    assert got == [
        c.Directory("/srv/binds", ("/srv/binds",)),
        c.File("/srv/binds/etc/x.conf"),
        c.SharedFile("/etc/apptainer/network/50_cf.conflist"),
        c.Sysctl(name="net.ipv4.ip_forward", netns="777"),
        c.Link(ifname="sbr0", netns="777"),
        c.StopInstance("cf1"),
        c.IptablesTable(table="mangle", netns="777"),
        c.NftBaseChain(table="nat", chain="OUTPUT", netns="777"),
        c.Firewall("", Ruleset((Chain("nat", "CF-LAUNCH-ABC-DNAT", ()),),
                               (Jump("nat", "PREROUTING", "-j CF-LAUNCH-ABC-DNAT"),)), "777"),
        c.Offloads(ifname="sbr0", shared=True, netns="777"),
        c.Offloads(ifname="veth1", original={"tx-checksumming": True}, netns="777"),
    ]
    assert all(not isinstance(e, c.Unknown) for e in got)
    # Rewritten in the current form, the same changes come back.
    journal.rewrite(state, got)
    assert all("type" in json.loads(line) for line in state.journal_path.read_text().splitlines())
    assert journal.entries(state) == got


def test_v1_claims_are_migrated_and_rewritten(tmp_path: Path) -> None:
    (tmp_path / "claims.json").write_text(json.dumps({
        "sysctl@777:net.ipv4.ip_forward": {"original": "0", "holders": ["cf1", "cf2"]},
        "file:/etc/apptainer/network/50_cf.conflist": {"original": "absent",
                                                       "holders": ["cf1"], "sha256": "ab"},
    }))
    key = ClaimKey("sysctl", "net.ipv4.ip_forward", "777")
    assert claims.read(tmp_path)[key]["holders"] == ["cf1", "cf2"]
    restored: list[str] = []
    claims.release(tmp_path, "cf2", key, restored.append)
    data = json.loads((tmp_path / "claims.json").read_text())
    assert data["version"] == 2 and {"kind", "name", "netns"} <= set(data["claims"][0])
    claims.release(tmp_path, "cf1", key, restored.append)
    assert restored == ["0"], "the last holder restores the first one's original"
    file_key = ClaimKey("file", "/etc/apptainer/network/50_cf.conflist")
    assert c.SharedFile("/etc/apptainer/network/50_cf.conflist").key() == file_key
    assert claims.read(tmp_path)[file_key]["holders"] == ["cf1"]


def test_unknown_claims_format_is_refused(tmp_path: Path) -> None:
    (tmp_path / "claims.json").write_text(json.dumps({"version": 99, "claims": []}))
    with pytest.raises(HostChangeError, match="format this cf-launch does not know"):
        claims.read(tmp_path)


def test_unknown_journal_record_is_kept_and_reported(tmp_path: Path) -> None:
    state = InstanceState(tmp_path / "cf1")
    state.ensure()
    record = {"type": "wormhole", "where": "elsewhere"}
    state.journal_path.write_text(json.dumps(record) + "\n")
    (entry,) = journal.entries(state)
    assert isinstance(entry, c.Unknown) and entry.to_record() == record
    env = c.HostEnv(state, tmp_path)
    with pytest.raises(HostChangeError, match="unknown undo action 'wormhole'"):
        entry.undo(env)
