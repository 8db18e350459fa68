"""Drift and repair: how the live host differs from what the journal says cf-launch
applied, and putting back, from the journal and nothing else, what is missing.

Used by ``status`` and ``doctor`` (:func:`find`), ``repair`` and the supervisor's automatic
repair after a firewall reload or a periodic drift check (:func:`repair`), and
``repair --all`` (:func:`repair_all`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from coldfront_launch import apptainer
from coldfront_launch.changes import journal
from coldfront_launch.changes.base import HostChange, HostEnv, Reading
from coldfront_launch.errors import HostChangeError, NotRunningError
from coldfront_launch.state.instance import InstanceState, known_instances

GONE = "the network namespace the instance was started in is gone"


def _drifted(changes: list[HostChange], live: Reading) -> Iterator[tuple[HostChange, str]]:
    """Each journaled change that is not intact on the live host, with how it differs."""
    for change in changes:
        found = change.drift(live)
        if found:
            yield change, found


def find(state: InstanceState, live: Reading | None = None) -> list[str]:
    """How the live host differs from the journal ("" for none), one line per change.

    ``live`` may be shared by several instances (one firewall read per family for all).
    Raises HostChangeError from another live network namespace (reading here would
    describe the wrong host)."""
    changes = journal.entries(state)
    if journal.check_namespace(state):
        return [GONE]
    return [found for _change, found in _drifted(changes, live or Reading())]


def repair(state: InstanceState, state_root: Path, lock_timeout: float = 0
           ) -> dict[str, list[str]]:
    """Put back what is missing; idempotent. Returns what was ``restored`` and what
    ``cannot`` be (restart the instance). ``lock_timeout``: seconds to wait while another
    cf-launch process holds the lock (a supervisor's automatic repair, the repair unit)."""
    with state.locked(timeout=lock_timeout):
        changes = journal.entries(state)
        if not changes:
            raise NotRunningError(f"cf-launch has no host changes for {state.directory.name}",
                                  "nothing to repair; `cf-launch status --name NAME`")
        if journal.check_namespace(state):
            raise HostChangeError(GONE, "restart the instance: `cf-launch restart`")
        env = HostEnv(state, state_root)
        restored, cannot = [], []
        for change, found in _drifted(changes, Reading()):
            if change.repairable:
                change.repair(env)
                restored.append(found)
            else:
                cannot.append(found)
        return {"restored": restored, "cannot": cannot}


def repair_all(state_root: Path, lock_timeout: float = 0) -> list[dict[str, Any]]:
    """:func:`repair` for every instance with a journal under ``state_root`` that runs;
    one that does not (left by a crash or a reboot) is listed, ``running`` False, and left
    for ``cf-launch stop``."""
    results: list[dict[str, Any]] = []
    for name in known_instances(state_root):
        if apptainer.find(name) is None:
            results.append({"name": name, "running": False, "restored": [], "cannot": []})
            continue
        done = repair(InstanceState(state_root / name), state_root, lock_timeout)
        results.append({"name": name, "running": True, **done})
    return results
