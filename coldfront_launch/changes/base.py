"""Typed host changes: the :class:`HostChange` base, the journal record form, and the
instance itself.

A :class:`HostChange` is what ``plan`` lists, what ``start`` journals before making it,
and what ``stop`` undoes, newest first, with no per-kind branches anywhere else. Each kind
applies, undoes, describes, drifts and (de)serialises itself, and registers by subclassing
(``kind``). The kinds: :mod:`~coldfront_launch.changes.files`,
:mod:`~coldfront_launch.changes.shared` (claims) and
:mod:`~coldfront_launch.changes.rulesets`; ``coldfront_launch.changes`` imports them all,
so :func:`from_record` always sees every kind. Changes inside a network namespace carry its
id (``netns``), so ``stop`` knows whether they still exist and where to undo them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from coldfront_launch.errors import HostChangeError
from coldfront_launch.linux import netfilter, netinfo

if TYPE_CHECKING:
    from coldfront_launch.state.instance import InstanceState

InstanceStopper = Callable[[str], object]  # what it returns is ignored


def _no_instance(_name: str) -> None:
    """The default ``stop_instance``: nothing to stop."""


class Reading:
    """One look at the live host for a drift check: each firewall family and each link's
    offloads read once (``status --all``: once for all instances)."""

    def __init__(self) -> None:
        self._firewall: dict[str, netfilter.Live] = {}
        self._offloads: dict[str, dict[str, bool]] = {}

    def firewall(self, family: str) -> netfilter.Live:
        if family not in self._firewall:
            self._firewall[family] = netfilter.Live.read(family)
        return self._firewall[family]

    def offloads(self, ifname: str) -> dict[str, bool]:
        if ifname not in self._offloads:
            self._offloads[ifname] = netinfo.read_offloads(ifname)
        return self._offloads[ifname]


@dataclass
class HostEnv:
    """What a change needs to act: the instance's state, the claims registry, where."""

    state: InstanceState
    state_root: Path
    stop_instance: InstanceStopper = _no_instance
    journaled: set[tuple[Any, ...]] = field(default_factory=set)

    @property
    def instance(self) -> str:
        return self.state.directory.name


class HostChange:
    """One change to the host. Subclasses are frozen dataclasses."""

    kind: ClassVar[str] = ""
    #: Shown by ``plan`` (False: a part of another change, journaled on its own).
    listed: ClassVar[bool] = True
    #: Lives in a network namespace, and goes with it.
    network: ClassVar[bool] = False
    #: Fields needed only for planning, not kept in the journal.
    plan_only: ClassVar[tuple[str, ...]] = ()
    registry: ClassVar[dict[str, type[HostChange]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            HostChange.registry[cls.kind] = cls

    # --- what subclasses implement -------------------------------------------------------

    #: The field that names what the change is made to (``target``); or override ``target``.
    target_field: ClassVar[str] = ""

    @property
    def target(self) -> str:
        if not self.target_field:
            raise NotImplementedError(f"{type(self).__name__} names no target_field")
        return str(getattr(self, self.target_field))

    def describe(self) -> str:
        """One line (or a block) for ``plan``."""
        return f"{self.kind} {self.target}"

    def check(self, env: HostEnv) -> None:
        """Refuse before anything is journaled (e.g. a file cf-launch does not own)."""

    def apply(self, env: HostEnv) -> None:
        """Make the change. Its journal record is already on disk."""

    def undo(self, env: HostEnv) -> None:
        """Put back what :meth:`apply` changed. Idempotent."""

    def forget(self, env: HostEnv) -> None:
        """The change's network namespace is gone, and the change with it."""

    #: ``repair`` can put it back from the journal alone.
    repairable: ClassVar[bool] = True

    def drift(self, live: Reading) -> str:
        """How the live host differs from this change ("" when it is intact)."""
        return ""

    def repair(self, env: HostEnv) -> None:
        """Put the change back as the journal says (idempotent)."""
        self.apply(env)

    def needed_by(self, failed: HostChange) -> bool:
        """Whether ``failed`` (a change whose undo failed, kept in the journal) still needs
        this one: then this one is kept too, undone by the stop that undoes ``failed``."""
        return False

    # --- undoing several at once (optional) -----------------------------------------------

    def batch_key(self) -> tuple[Any, ...] | None:
        """Changes undone one after another whose keys are equal (not None) are handed
        together to the first one's :meth:`undo_batch`. None: always undone alone."""
        return None

    @classmethod
    def undo_batch(cls, changes: list[HostChange], env: HostEnv) -> None:
        """Undo ``changes`` (newest first) in one go. Any exception makes the caller undo
        them one by one instead, so (as every undo is idempotent) a batch that fails
        half-way loses nothing."""
        for change in changes:
            change.undo(env)

    # --- shared ------------------------------------------------------------------------

    def identity(self) -> tuple[Any, ...]:
        """Two changes with one identity are journaled once (a repeated start)."""
        return (self.kind, self.target, getattr(self, "netns", ""))

    @property
    def netns_id(self) -> str:
        return str(getattr(self, "netns", ""))

    @property
    def boot_id(self) -> str:
        return str(getattr(self, "boot", ""))

    @property
    def detail(self) -> dict[str, Any]:
        """Extra fields for ``plan --json``."""
        return {}

    def to_json(self) -> dict[str, Any]:
        """The form ``plan --json`` and ``start --json`` print."""
        return {"kind": self.kind, "target": self.target, **self.detail}

    def to_record(self) -> dict[str, Any]:
        """The journal form."""
        data = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)  # type: ignore[arg-type]
                if f.name not in self.plan_only and f.compare}
        return {"type": self.kind, **data}

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> HostChange:
        fields = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
        values = {k: _tupled(v) for k, v in data.items() if k in fields}
        return cls(**values)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _tupled(value: Any) -> Any:
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


def from_record(data: dict[str, Any]) -> HostChange:
    """A journal record back to its change; an unknown type becomes :class:`Unknown`."""
    cls = HostChange.registry.get(str(data.get("type", "")))
    if cls is None:
        return Unknown(dict(data))
    try:
        return cls.from_record(data)
    except (TypeError, ValueError):
        return Unknown(dict(data))


@dataclass(frozen=True)
class Unknown(HostChange):
    """A record this version cannot read: kept, reported, never guessed at. That includes
    a journal line that was no record at all (``unreadable``: bad bytes, junk)."""

    record: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def target(self) -> str:
        if self.record.get("type") == "unreadable":
            return f"journal line {self.record.get('line', '?')}"
        return str(self.record.get("type") or self.record.get("kind") or "?")

    def identity(self) -> tuple[Any, ...]:
        return ("unknown", json.dumps(self.record, sort_keys=True, default=str))

    def to_record(self) -> dict[str, Any]:
        return dict(self.record)

    def undo(self, env: HostEnv) -> None:
        if self.record.get("type") == "unreadable":
            raise HostChangeError(
                f"{self.target} of {env.state.journal_path} could not be read "
                f"({self.record.get('why', '?')}): {self.record.get('text', '')!r}",
                "what it recorded may still be on the host: check by hand (iptables-save, "
                "ip link, sysctl), then delete that line")
        raise HostChangeError(f"unknown undo action {self.target!r} in "
                              f"{env.state.journal_path}",
                              "a newer cf-launch wrote this journal; stop with that version")


# --- the instance itself ---------------------------------------------------------------

@dataclass(frozen=True)
class StopInstance(HostChange):
    """The Apptainer instance: journaled just before ``instance start``."""

    kind: ClassVar[str] = "instance"
    listed: ClassVar[bool] = False
    name: str = ""

    target_field = "name"

    def describe(self) -> str:
        return f"start instance {self.name} (stopped on `cf-launch stop`)"

    def undo(self, env: HostEnv) -> None:
        env.stop_instance(self.name)
