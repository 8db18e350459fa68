"""Replaying the journal: order, idempotence, failures kept with their namespace."""

from __future__ import annotations

from pathlib import Path

from coldfront_launch import claims, netinfo
from coldfront_launch.state import InstanceState
from coldfront_launch.undo import undo_all


def _state(tmp_path: Path) -> InstanceState:
    state = InstanceState(tmp_path / "state" / "cf1")
    state.ensure()
    state.record({"kind": "netns", "id": netinfo.netns_id()})
    return state


def test_newest_first_and_empty_afterwards(tmp_path: Path) -> None:
    state = _state(tmp_path)
    folder = tmp_path / "made"
    state.record({"kind": "remove_dir", "path": str(folder)})
    folder.mkdir()
    state.record({"kind": "remove_file", "path": str(folder / "f")})
    (folder / "f").write_text("x")
    stopped: list[str] = []
    state.record({"kind": "stop_instance", "name": "cf1"})
    assert undo_all(state, tmp_path / "state", stopped.append) == []
    assert stopped == ["cf1"] and not folder.exists(), "file before its folder"
    assert state.entries() == []
    assert undo_all(state, tmp_path / "state", stopped.append) == [], "idempotent"


def test_failures_stay_with_the_namespace_record(tmp_path: Path) -> None:
    state = _state(tmp_path)
    state.record({"kind": "from-the-future"})
    failures = undo_all(state, tmp_path / "state", lambda _n: None)
    assert len(failures) == 1 and "unknown undo action" in failures[0]
    assert [e["kind"] for e in state.entries()] == ["netns", "from-the-future"]


def test_repeated_claim_released_once_at_its_first_place(tmp_path: Path) -> None:
    """The last holder's release must come after the instance (and its veth) is gone."""
    root = tmp_path / "state"
    state = _state(tmp_path)
    resource = f"link@{netinfo.netns_id()}:cflbr-test"
    order: list[str] = []
    state.record({"kind": "release", "resource": resource})
    claims.claim(root, "cf1", resource, lambda: "present")
    state.record({"kind": "stop_instance", "name": "cf1"})
    state.record({"kind": "release", "resource": resource})  # a repeated start

    def stop(name: str) -> None:
        order.append("stop")
        assert claims.holders(root, resource) == ["cf1"], "still held while stopping"
    undo_all(state, root, stop)
    assert order == ["stop"] and claims.holders(root, resource) == []
