"""Replay a journal of host changes, newest first. Each undo is idempotent."""

from __future__ import annotations

from pathlib import Path

from . import netinfo
from .changes import HostChange, HostEnv, InstanceStopper
from .errors import HostChangeError, LaunchError
from .state import InstanceState


def made_in(entries: list[HostChange]) -> str | None:
    """The network namespace the journal's network changes were made in."""
    return next((e.netns_id for e in entries if e.network and e.netns_id), None)


def check_namespace(state: InstanceState) -> bool:
    """Whether the network namespace the changes were made in is gone.

    Refuses (raises) when it still exists but is not this process's: undoing there from
    here would change the wrong host. A namespace that is gone took its links, rules and
    sysctls with it; only the changes outside it are left to undo."""
    entries = state.entries()
    boot = netinfo.boot_id()
    if any(e.network and e.boot_id and e.boot_id != boot for e in entries):
        return True  # made before a reboot: the namespace, its rules and sysctls are gone
    where = made_in(entries)
    here = netinfo.netns_id()
    if where is None or where == here:
        return False
    if not netinfo.netns_alive(where):
        return True
    raise HostChangeError(
        f"{state.directory.name} was started in network namespace {where}, "
        f"but this process runs in {here}; undoing here would change the wrong host",
        "run `cf-launch stop` in the namespace it was started in "
        "(e.g. nsenter --net=/run/netns/NAME cf-launch stop)")


def undo_all(state: InstanceState, state_root: Path, stop_instance: InstanceStopper
             ) -> list[str]:
    """Undo everything journaled; return the failures (the journal keeps those entries)."""
    namespace_gone = check_namespace(state)
    env = HostEnv(state, state_root, stop_instance)
    entries = state.entries()
    failures: list[str] = []
    remaining: list[HostChange] = []
    first: dict[tuple[object, ...], int] = {}
    for index, change in enumerate(entries):
        first.setdefault(change.identity(), index)
    for index in reversed(range(len(entries))):
        change = entries[index]
        # Journaled twice (a repeated start): undone once, at its first place, where
        # everything that depends on it is already gone.
        if first[change.identity()] == index:
            try:
                if namespace_gone and change.network:
                    change.forget(env)
                else:
                    change.undo(env)
            except Exception as err:  # noqa: BLE001 - one failure never blocks the rest
                cause = str(err) if isinstance(err, LaunchError) else \
                    f"{type(err).__name__}: {err}"
                failures.append(f"{change.kind or 'record'} {change.target}: {cause}")
                remaining.insert(0, change)
        # Rewrite after each step so a kill during stop loses no undo action.
        state.rewrite(entries[:index] + remaining)
    return failures

