"""Replay a journal of host changes, newest first. Each undo is idempotent."""

from __future__ import annotations

from pathlib import Path

from coldfront_launch.changes import journal
from coldfront_launch.changes.base import HostChange, HostEnv, InstanceStopper
from coldfront_launch.errors import LaunchError
from coldfront_launch.state.instance import InstanceState

Step = tuple[int, "list[HostChange]"]  # (lowest journal index, changes newest first)


def steps(entries: list[HostChange], alone: bool = False) -> list[Step]:
    """The journal in undo order, newest first, cut into steps.

    A change journaled twice (a repeated start) is undone once, at its first place, where
    everything that depends on it is already gone; its later copies are empty steps.
    Neighbouring changes with one :meth:`~HostChange.batch_key` share a step (``alone``:
    none do)."""
    first: dict[tuple[object, ...], int] = {}
    for index, change in enumerate(entries):
        first.setdefault(change.identity(), index)
    out: list[Step] = []
    key: tuple[object, ...] | None = None
    for index in reversed(range(len(entries))):
        change = entries[index]
        if first[change.identity()] != index:
            out.append((index, []))
            key = None
            continue
        this = None if alone else change.batch_key()
        if this is not None and this == key and out and out[-1][1]:
            out[-1] = (index, [*out[-1][1], change])
        else:
            out.append((index, [change]))
        key = this
    return out


def _cause(err: Exception) -> str:
    return str(err) if isinstance(err, LaunchError) else f"{type(err).__name__}: {err}"


def _undo(group: list[HostChange], env: HostEnv, forget: bool
          ) -> list[tuple[HostChange, str]]:
    """Undo one step: as a batch if it has several changes, else (or if the batch
    failed) one by one. Returns the changes that could not be undone, with the cause."""
    if len(group) > 1:
        try:
            type(group[0]).undo_batch(group, env)
            return []
        except Exception:  # noqa: BLE001, S110 - the fallback below reports what fails
            pass
    failed = []
    for change in group:
        try:
            if forget and change.network:
                change.forget(env)
            else:
                change.undo(env)
        except Exception as err:  # noqa: BLE001 - one failure never blocks the rest
            failed.append((change, _cause(err)))
    return failed


def undo_all(state: InstanceState, state_root: Path, stop_instance: InstanceStopper
             ) -> list[str]:
    """Undo everything journaled; return the failures (the journal keeps those entries).

    Neighbouring changes of one kind go in one batch (the firewall: one transaction per
    family; the claims: one pass over the registry); a batch that fails is undone entry
    by entry, so one failure never blocks the rest. What a change that failed still
    needs (its table, its built-in chain) is kept with it for the next stop."""
    namespace_gone = journal.check_namespace(state)
    env = HostEnv(state, state_root, stop_instance)
    entries = journal.entries(state)
    failures: list[str] = []
    remaining: list[HostChange] = []
    failed: list[HostChange] = []
    shrink_later = False
    for low, group in steps(entries, alone=namespace_gone):
        kept = [c for c in group if any(c.needed_by(f) for f in failed)]
        todo = [c for c in group if c not in kept]
        for change, cause in _undo(todo, env, namespace_gone) if todo else []:
            failures.append(f"{change.kind or 'record'} {change.target}: {cause}")
            failed.append(change)
        remaining[:0] = [c for c in reversed(group) if c in kept or c in failed]
        # Rewrite after each step so a kill during stop loses no undo action; on a full
        # disk, keep undoing and shrink the journal once at the end (undo is idempotent:
        # a kill meanwhile only repeats steps already done).
        if not shrink_later:
            shrink_later = not _shrink(state, entries[:low] + remaining)
    if shrink_later and not _shrink(state, remaining):
        failures.append(f"the journal {state.journal_path} could not be shrunk (the disk is "
                        "full?): it still lists changes that are undone; the next stop "
                        "undoes them again, harmlessly")
    return failures


def _shrink(state: InstanceState, remaining: list[HostChange]) -> bool:
    """Rewrite the journal with ``remaining`` (none: delete it, which needs no space)."""
    try:
        journal.rewrite(state, remaining)
    except OSError:
        return False
    return True
