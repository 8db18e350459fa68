"""Replay a journal of undo actions, newest first. Each action is idempotent."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import claims, firewall, host, netinfo
from .errors import HostChangeError, LaunchError
from .state import InstanceState

StopInstance = Callable[[str], None]


NETWORK_KINDS = {"remove_firewall", "restore_offloads"}


def check_namespace(state: InstanceState) -> bool:
    """Whether the network namespace the changes were made in is gone.

    Refuses (raises) when it still exists but is not this process's: undoing there from
    here would change the wrong host. A namespace that is gone took its links, rules and
    sysctls with it; only the changes outside it are left to undo."""
    made_in = next((e["id"] for e in state.entries() if e["kind"] == "netns"), None)
    here = netinfo.netns_id()
    if made_in is None or made_in == here:
        return False
    if not netinfo.netns_alive(made_in):
        return True
    raise HostChangeError(
        f"{state.directory.name} was started in network namespace {made_in}, "
        f"but this process runs in {here}; undoing here would change the wrong host",
        "run `cf-launch stop` in the namespace it was started in "
        "(e.g. nsenter --net=/run/netns/NAME cf-launch stop)")


def undo_all(state: InstanceState, state_root: Path, stop_instance: StopInstance) -> list[str]:
    """Undo everything journaled; return the failures (the journal keeps those entries)."""
    namespace_gone = check_namespace(state)
    entries = state.entries()
    failures: list[str] = []
    remaining: list[dict[str, Any]] = []
    # The namespace record stays while anything is left, so a retry is guarded too.
    where = [e for e in entries if e["kind"] == "netns"][:1]
    for index in reversed(range(len(entries))):
        entry = entries[index]
        if entry["kind"] == "netns":
            continue
        if _released_earlier(entries, index):
            state.rewrite(entries[:index] + remaining)
            continue
        try:
            if namespace_gone and _network_scoped(entry):
                _forget(entry, state, state_root)
            else:
                _undo_one(entry, state, state_root, stop_instance)
        except LaunchError as err:
            failures.append(f"{entry['kind']}: {err}")
            remaining.insert(0, entry)
        # Rewrite after each step so a kill during stop loses no undo action.
        state.rewrite(entries[:index] + remaining)
    state.rewrite(where + remaining if remaining else [])
    return failures


def _network_scoped(entry: dict[str, Any]) -> bool:
    return entry["kind"] in NETWORK_KINDS or (
        entry["kind"] == "release" and "@" in entry["resource"].partition(":")[0])


def _forget(entry: dict[str, Any], state: InstanceState, state_root: Path) -> None:
    """A change inside a namespace that no longer exists: nothing to put back, only the
    claim to drop."""
    if entry["kind"] == "release":
        claims.release(state_root, state.directory.name, entry["resource"], lambda _o: None)


def _released_earlier(entries: list[dict[str, Any]], index: int) -> bool:
    """A claim journaled twice (a start repeated) is released once, at its first place,
    where everything that depends on the shared resource is already gone."""
    entry = entries[index]
    return entry["kind"] == "release" and any(
        e["kind"] == "release" and e["resource"] == entry["resource"] for e in entries[:index])


def _undo_one(entry: dict[str, Any], state: InstanceState, state_root: Path,
              stop_instance: StopInstance) -> None:
    kind = entry["kind"]
    if kind == "stop_instance":
        stop_instance(entry["name"])
    elif kind == "remove_file":
        Path(entry["path"]).unlink(missing_ok=True)
    elif kind == "remove_dir":
        with contextlib.suppress(FileNotFoundError, OSError):
            os.rmdir(entry["path"])  # only if empty: never removes what others put there
    elif kind == "release":
        claims.release(state_root, state.directory.name, entry["resource"],
                       lambda original: host.restore_resource(entry["resource"], original))
    elif kind == "remove_firewall":
        firewall.remove(((table, chain) for table, chain in entry["chains"]),
                        entry.get("family", "ipv4"))
    elif kind == "restore_offloads":
        if entry["features"]:
            with contextlib.suppress(HostChangeError):  # the veth vanishes with the instance
                netinfo.write_offloads(entry["ifname"], entry["features"])
    else:
        raise HostChangeError(f"unknown undo action {kind!r} in {state.journal_path}",
                              "a newer cf-launch wrote this journal; stop with that version")
