"""Replaying the journal: order, idempotence, failures kept with their namespace.

The journals here are written in cf-launch 0.1's format on purpose: they are migrated
when read, so an instance started before an upgrade still stops cleanly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from coldfront_launch.changes import claims, journal
from coldfront_launch.changes.claims import ClaimKey
from coldfront_launch.changes.undo import undo_all
from coldfront_launch.linux import netinfo
from coldfront_launch.state.instance import InstanceState


def _v1(state: InstanceState, record: dict[str, Any]) -> None:
    """Append a record as cf-launch 0.1 wrote it."""
    state.ensure()
    with state.journal_path.open("a") as fh:
        fh.write(json.dumps(record) + "\n")


def _state(tmp_path: Path) -> InstanceState:
    state = InstanceState(tmp_path / "state" / "cf1")
    state.ensure()
    _v1(state, {"kind": "netns", "id": netinfo.netns_id()})
    return state


def test_newest_first_and_empty_afterwards(tmp_path: Path) -> None:
    state = _state(tmp_path)
    folder = tmp_path / "made"
    _v1(state, {"kind": "remove_dir", "path": str(folder)})
    folder.mkdir()
    _v1(state, {"kind": "remove_file", "path": str(folder / "f")})
    (folder / "f").write_text("x")
    stopped: list[str] = []
    _v1(state, {"kind": "stop_instance", "name": "cf1"})
    assert undo_all(state, tmp_path / "state", stopped.append) == []
    assert stopped == ["cf1"] and not folder.exists(), "file before its folder"
    assert journal.entries(state) == []
    assert undo_all(state, tmp_path / "state", stopped.append) == [], "idempotent"


def test_failures_stay_with_the_namespace_record(tmp_path: Path) -> None:
    state = _state(tmp_path)
    _v1(state, {"kind": "release", "resource": f"sysctl@{netinfo.netns_id()}:net.x"})
    _v1(state, {"kind": "from-the-future"})
    failures = undo_all(state, tmp_path / "state", lambda _n: None)
    assert len(failures) == 1 and "unknown undo action" in failures[0]
    kept = journal.entries(state)
    assert [e.kind for e in kept] == [""] and kept[0].to_record() == {"kind": "from-the-future"}
    assert state.records() == [{"kind": "from-the-future"}], \
        "an unknown record is kept exactly as written (with its checksum added on disk)"
    assert "crc32" in json.loads(state.journal_path.read_text())


def test_repeated_claim_released_once_at_its_first_place(tmp_path: Path) -> None:
    """The last holder's release must come after the instance (and its veth) is gone."""
    root = tmp_path / "state"
    state = _state(tmp_path)
    netns = netinfo.netns_id()
    resource = f"link@{netns}:cflbr-test"
    key = ClaimKey("link", "cflbr-test", netns)
    order: list[str] = []
    _v1(state, {"kind": "release", "resource": resource})
    claims.claim(root, "cf1", key, lambda: "present")
    _v1(state, {"kind": "stop_instance", "name": "cf1"})
    _v1(state, {"kind": "release", "resource": resource})  # a repeated start

    def stop(name: str) -> None:
        order.append("stop")
        assert claims.read(root)[key]["holders"] == ["cf1"], "still held while stopping"
    undo_all(state, root, stop)
    assert order == ["stop"] and key not in claims.read(root)
