"""Typed host changes: each kind applies, undoes, describes and (de)serialises itself.

A :class:`HostChange` is what ``plan`` lists, what ``start`` journals before making it,
and what ``stop`` undoes, newest first, with no per-kind branches anywhere else. Adding a
kind of change means writing one class here.

Shared resources (a sysctl, the CNI conflist, the bridge, iptables tables) are *claims*:
each instance that needs one holds it, and the last holder puts back what the first found
(:mod:`coldfront_launch.changes.claims`). Changes inside a network namespace carry its id
(``netns``), so ``stop`` knows whether they still exist and where to undo them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from coldfront_launch import atomic
from coldfront_launch.changes import claims
from coldfront_launch.changes.claims import ClaimKey
from coldfront_launch.errors import HostChangeError
from coldfront_launch.linux import netfilter as firewall
from coldfront_launch.linux import netinfo, sysctl

if TYPE_CHECKING:
    from coldfront_launch.state.instance import InstanceState

InstanceStopper = Callable[[str], object]  # what it returns is ignored


def _no_instance(_name: str) -> None:
    """The default ``stop_instance``: nothing to stop."""


class Reading:
    """One look at the live host for a drift check: each firewall family and each link's
    offloads read once (``status --all``: once for all instances)."""

    def __init__(self) -> None:
        self._firewall: dict[str, firewall.Live] = {}
        self._offloads: dict[str, dict[str, bool]] = {}

    def firewall(self, family: str) -> firewall.Live:
        if family not in self._firewall:
            self._firewall[family] = firewall.Live.read(family)
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

    @property
    def target(self) -> str:
        raise NotImplementedError

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
    """A record this version cannot read: kept, reported, never guessed at."""

    record: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def target(self) -> str:
        return str(self.record.get("type") or self.record.get("kind") or "?")

    def to_record(self) -> dict[str, Any]:
        return dict(self.record)

    def undo(self, env: HostEnv) -> None:
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

    @property
    def target(self) -> str:
        return self.name

    def describe(self) -> str:
        return f"start instance {self.name} (stopped on `cf-launch stop`)"

    def undo(self, env: HostEnv) -> None:
        env.stop_instance(self.name)


# --- files -----------------------------------------------------------------------------

def missing_dirs(path: Path) -> tuple[str, ...]:
    """The folders that must be created for ``path`` to exist, outermost first."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(str(probe))
        probe = probe.parent
    return tuple(reversed(missing))


def _make_dirs(created: tuple[str, ...]) -> None:
    for directory in created:
        Path(directory).mkdir(exist_ok=True)


def _remove_dirs(created: tuple[str, ...]) -> None:
    for directory in reversed(created):
        with contextlib.suppress(OSError):
            os.rmdir(directory)  # only if empty: never removes what others put there


@dataclass(frozen=True)
class Directory(HostChange):
    """A folder, with the parents it needed; removed on stop if left empty."""

    kind: ClassVar[str] = "dir"
    path: str = ""
    created: tuple[str, ...] = ()

    @property
    def target(self) -> str:
        return self.path

    def describe(self) -> str:
        return f"create directory {self.path}"

    def apply(self, env: HostEnv) -> None:
        _make_dirs(self.created)

    def undo(self, env: HostEnv) -> None:
        _remove_dirs(self.created)


@dataclass(frozen=True)
class _FileFields:
    """What a written file is: path, mode, content (plan only), folders it needed."""

    plan_only: ClassVar[tuple[str, ...]] = ("content",)
    path: str = ""
    mode: int = 0o644
    content: str = field(default="", repr=False)
    created: tuple[str, ...] = ()

    @property
    def target(self) -> str:
        return self.path

    @property
    def detail(self) -> dict[str, Any]:
        return {"mode": f"{self.mode:04o}", "content": self.content}


@dataclass(frozen=True)
class File(_FileFields, HostChange):
    """A file this instance owns (a bind file, a hook's file); removed on stop, with the
    folders it needed."""

    kind: ClassVar[str] = "file"

    repairable: ClassVar[bool] = False  # its content is not journaled (it may be secret)

    def describe(self) -> str:
        return f"write {self.path} (mode {self.mode:04o})"

    def drift(self, live: Reading) -> str:
        return "" if Path(self.path).exists() else f"{self.path} is gone"

    def check(self, env: HostEnv) -> None:
        if Path(self.path).exists() and self.identity() not in env.journaled:
            raise HostChangeError(f"{self.path} exists and cf-launch did not create it",
                                  "move it away or choose another path; cf-launch never "
                                  "overwrites files it does not own")

    def apply(self, env: HostEnv) -> None:
        _make_dirs(self.created)
        atomic.write_text(Path(self.path), self.content, mode=self.mode)

    def undo(self, env: HostEnv) -> None:
        Path(self.path).unlink(missing_ok=True)
        _remove_dirs(self.created)


# --- shared resources (claims) ---------------------------------------------------------

@dataclass(frozen=True)
class Claim(HostChange):
    """A resource several instances may hold; the last holder restores ``original``.

    ``original`` is read before the change is journaled; only the first holder's is kept
    (in ``claims.json``)."""

    #: The kind in ``claims.json`` (when it differs from the change's own).
    claim_kind: ClassVar[str] = ""

    def key(self) -> ClaimKey:
        return ClaimKey(self.claim_kind or self.kind, self.target, self.netns_id)

    def original_value(self) -> Any:
        return getattr(self, "original", None)

    def hold(self, env: HostEnv, check: Callable[[dict[str, Any]], None] | None = None,
             extra: dict[str, Any] | None = None) -> None:
        claims.claim(env.state_root, env.instance, self.key(), self.original_value,
                     check=check, extra={**(extra or {}), **({"boot": self.boot_id}
                                                            if self.boot_id else {})})

    def restore(self, original: Any) -> None:
        """Put the resource back as the first holder found it."""

    def released(self) -> None:
        """After the release, whoever restored (e.g. remove the folders a file needed)."""

    def undo(self, env: HostEnv) -> None:
        claims.release(env.state_root, env.instance, self.key(), self.restore)
        self.released()

    def forget(self, env: HostEnv) -> None:
        claims.release(env.state_root, env.instance, self.key(), lambda _original: None)

    def batch_key(self) -> tuple[Any, ...] | None:
        return ("claim",)

    @classmethod
    def restore_together(cls, items: list[tuple[Claim, Any]]) -> None:
        """Restore several resources of this class (newest first) as their last holder."""
        for change, original in items:
            change.restore(original)

    @classmethod
    def undo_batch(cls, changes: list[HostChange], env: HostEnv) -> None:
        """Release every claim under one lock, with one read and one write of the
        registry (the sysctls, links, tables and chains of one stop in one pass);
        neighbours of one class restore together (the nf_tables leftovers: one
        transaction per family). A failure leaves the registry unwritten."""
        held = [c for c in changes if isinstance(c, Claim)]

        def restore(last: list[tuple[int, Any]]) -> None:
            runs: list[list[tuple[Claim, Any]]] = []
            for index, original in last:
                change = held[index]
                if runs and _restorer(runs[-1][0][0]) is _restorer(change):
                    runs[-1].append((change, original))
                else:
                    runs.append([(change, original)])
            for run in runs:
                type(run[0][0]).restore_together(run)
        claims.release_many(env.state_root, env.instance, [c.key() for c in held], restore)
        for change in held:
            change.released()


def _restorer(change: Claim) -> object:
    """The function behind a claim's ``restore_together`` (shared by subclasses)."""
    return getattr(type(change).restore_together, "__func__", None)


@dataclass(frozen=True)
class _NetworkClaim(Claim):
    """A claim inside a network namespace: what the first holder found (``original``),
    where (``netns``), and in which boot (``boot``: a reboot took it away)."""

    network: ClassVar[bool] = True
    original: Any = field(default=None, hash=False)
    netns: str = ""
    boot: str = ""


@dataclass(frozen=True)
class SharedFile(_FileFields, Claim):
    """A file several instances need with the same content (the CNI conflist)."""

    kind: ClassVar[str] = "shared-file"
    claim_kind: ClassVar[str] = "file"
    plan_only: ClassVar[tuple[str, ...]] = ()  # journaled: repair writes it again
    sha256: str = ""

    def drift(self, live: Reading) -> str:
        try:
            found = hashlib.sha256(Path(self.path).read_bytes()).hexdigest()
        except OSError:
            return f"{self.path} is gone"
        return "" if found == self.sha256 else f"{self.path} was changed"

    def describe(self) -> str:
        return f"write {self.path} (mode {self.mode:04o}, shared by instances)"

    def original_value(self) -> Any:
        return "absent"

    def check(self, env: HostEnv) -> None:
        if self.key() not in claims.read(env.state_root) and Path(self.path).exists():
            raise HostChangeError(f"{self.path} exists and cf-launch did not create it",
                                  "move it away or choose another name in the settings")

    def apply(self, env: HostEnv) -> None:
        digest = hashlib.sha256(self.content.encode()).hexdigest()

        def same_content(entry: dict[str, Any]) -> None:
            if entry.get("sha256") != digest:
                raise HostChangeError(
                    f"{self.path} is in use by {', '.join(entry['holders'])} with other "
                    "settings", "give this instance the same network settings, or another "
                    "network name")
        _make_dirs(self.created)
        self.hold(env, check=same_content, extra={"sha256": digest})
        if not Path(self.path).exists():
            atomic.write_text(Path(self.path), self.content, mode=self.mode)

    def restore(self, original: Any) -> None:
        if original == "absent":
            Path(self.path).unlink(missing_ok=True)

    def released(self) -> None:
        _remove_dirs(self.created)


@dataclass(frozen=True)
class Sysctl(_NetworkClaim):
    """A kernel setting; the last holder restores the first one's original value."""

    kind: ClassVar[str] = "sysctl"
    name: str = ""
    value: str = ""

    @property
    def target(self) -> str:
        return self.name

    def describe(self) -> str:
        return f"sysctl {self.name} = {self.value} (previous value restored)"

    @property
    def detail(self) -> dict[str, Any]:
        return {"value": self.value}

    def apply(self, env: HostEnv) -> None:
        self.hold(env)
        if sysctl.read(self.name) != self.value:
            sysctl.write(self.name, self.value)

    def drift(self, live: Reading) -> str:
        found = sysctl.read(self.name)
        return "" if found == self.value else f"sysctl {self.name} is {found}, not {self.value}"

    def restore(self, original: Any) -> None:
        sysctl.write(self.name, str(original))


@dataclass(frozen=True)
class Link(_NetworkClaim):
    """A link others create for us (the CNI bridge); deleted by the last holder if it
    did not exist before the first claim, and nothing is attached to it."""

    kind: ClassVar[str] = "link"
    ifname: str = ""

    @property
    def target(self) -> str:
        return self.ifname

    def describe(self) -> str:
        return (f"claim link {self.ifname} (deleted by the last instance if cf-launch "
                "created it)")

    repairable: ClassVar[bool] = False  # the CNI plugin makes it, at instance start

    def apply(self, env: HostEnv) -> None:
        self.hold(env)

    def restore(self, original: Any) -> None:
        if original == "absent":
            netinfo.delete_link_if_unused(self.ifname)

    def drift(self, live: Reading) -> str:
        return "" if netinfo.link_exists(self.ifname) else \
            f"link {self.ifname} is gone (restart the instance)"


@dataclass(frozen=True)
class Offloads(_NetworkClaim):
    """NIC offload features (``ethtool -K``) of one link. ``shared`` for a link many
    instances use (the bridge: a claim); else this instance's own (its veth)."""

    kind: ClassVar[str] = "offloads"
    ifname: str = ""
    features: dict[str, bool] = field(default_factory=dict, hash=False)
    shared: bool = False

    @property
    def target(self) -> str:
        return self.ifname

    def describe(self) -> str:
        return f"offloads on {self.ifname}: " + ", ".join(
            f"{k} {'on' if v else 'off'}" for k, v in self.features.items())

    @property
    def detail(self) -> dict[str, Any]:
        return {"features": dict(self.features), "shared": self.shared}

    def apply(self, env: HostEnv) -> None:
        if self.shared:
            self.hold(env)
        netinfo.write_offloads(self.ifname, self.features)

    def restore(self, original: Any) -> None:
        if original and netinfo.link_exists(self.ifname):
            netinfo.write_offloads(self.ifname, original)

    def drift(self, live: Reading) -> str:
        if not netinfo.link_exists(self.ifname):
            return ""  # the link's own drift (or the instance's end) says it
        found = live.offloads(self.ifname)
        wrong = [k for k, on in self.features.items() if found.get(k, on) != on]
        return f"offloads on {self.ifname}: {', '.join(wrong)} changed" if wrong else ""

    def batch_key(self) -> tuple[Any, ...] | None:
        return super().batch_key() if self.shared else None

    def undo(self, env: HostEnv) -> None:
        if self.shared:
            super().undo(env)
        elif self.original:
            with contextlib.suppress(HostChangeError):  # the veth vanishes with the instance
                netinfo.write_offloads(self.ifname, self.original)

    def forget(self, env: HostEnv) -> None:
        if self.shared:
            super().forget(env)


class _FamilyClaim(_NetworkClaim):
    """A firewall claim in one address family (``family``): IPv6's are keyed apart."""

    v6_kind: ClassVar[str] = ""
    listed: ClassVar[bool] = False

    def key(self) -> ClaimKey:
        ipv6 = getattr(self, "family", "ipv4") == "ipv6"
        return ClaimKey(self.v6_kind if ipv6 else self.kind, self.target, self.netns_id)

    def identity(self) -> tuple[Any, ...]:
        return (*super().identity(), getattr(self, "family", "ipv4"))

    def apply(self, env: HostEnv) -> None:
        self.hold(env)


@dataclass(frozen=True)
class IptablesTable(_FamilyClaim):
    """An iptables table that iptables-nft creates on first use; dropped by the last
    holder if it was absent and is empty. Part of a :class:`Firewall` change."""

    kind: ClassVar[str] = "iptables-table"
    v6_kind: ClassVar[str] = "ip6tables-table"
    table: str = ""
    family: str = "ipv4"

    @property
    def target(self) -> str:
        return self.table

    def needed_by(self, failed: HostChange) -> bool:
        """A ruleset left in place (its removal failed) keeps its table."""
        return (isinstance(failed, Firewall) and failed.netns == self.netns
                and failed.ruleset.family == self.family
                and self.table in failed.ruleset.tables())

    def restore(self, original: Any) -> None:
        if original == "absent":
            firewall.drop_table_if_empty(self.table, self.family)

    @classmethod
    def restore_together(cls, items: list[tuple[Claim, Any]]) -> None:
        """Tables and built-in chains (newest first): the empty ones cf-launch brought in
        go in one reading of the ruleset and one ``nft -f`` transaction per family,
        chains before tables."""
        def family(change: Claim) -> str:
            return str(getattr(change, "family", "ipv4"))
        for fam in dict.fromkeys(family(c) for c, _o in items):
            absent = [c for c, original in items if original == "absent" and family(c) == fam]
            firewall.drop_empty(
                [(c.table, c.chain) for c in absent if isinstance(c, NftBaseChain)],
                [c.table for c in absent
                 if isinstance(c, IptablesTable) and not isinstance(c, NftBaseChain)], fam)


@dataclass(frozen=True)
class NftBaseChain(IptablesTable):
    """A built-in chain that nf_tables creates on its first rule; dropped by the last
    holder if it was absent and is empty. Part of a :class:`Firewall` change."""

    kind: ClassVar[str] = "nft-chain"
    v6_kind: ClassVar[str] = "nft6-chain"
    chain: str = ""

    @property
    def target(self) -> str:
        return f"{self.table}/{self.chain}"

    def needed_by(self, failed: HostChange) -> bool:
        """A ruleset left in place keeps the built-in chain its jump is in."""
        return (isinstance(failed, Firewall) and failed.netns == self.netns
                and failed.ruleset.family == self.family
                and any((j.table, j.builtin) == (self.table, self.chain)
                        for j in failed.ruleset.jumps))

    def restore(self, original: Any) -> None:
        if original == "absent":
            firewall.drop_base_chain_if_empty(self.table, self.chain, self.family)


# --- firewall --------------------------------------------------------------------------

@dataclass(frozen=True)
class Firewall(HostChange):
    """An owner's chains and the one jump into each, applied in one transaction and
    removed exactly (nothing else in the firewall is touched)."""

    kind: ClassVar[str] = "firewall"
    network: ClassVar[bool] = True
    owner: str = ""
    ruleset: firewall.Ruleset = field(default_factory=lambda: firewall.Ruleset((), ()))
    netns: str = ""
    live: firewall.Live | None = field(default=None, compare=False, repr=False)
    boot: str = ""  # the boot it was made in: a reboot took it away

    @property
    def target(self) -> str:
        return self.owner

    def identity(self) -> tuple[Any, ...]:
        return (self.kind, self.owner, self.netns, self.ruleset.family,
                tuple((c.table, c.name) for c in self.ruleset.chains))

    def describe(self) -> str:
        return f"firewall ruleset {self.owner}:\n" + "".join(
            f"    {line}\n" for line in self.ruleset.restore_text().splitlines()).rstrip("\n")

    @property
    def detail(self) -> dict[str, Any]:
        return {"restore": self.ruleset.restore_text(), **self.ruleset.to_json()}

    def to_record(self) -> dict[str, Any]:
        return {"type": self.kind, "owner": self.owner, "netns": self.netns,
                **self.ruleset.to_json()}

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> HostChange:
        return cls(data.get("owner", ""), firewall.Ruleset.from_json(data), data.get("netns", ""))

    def apply(self, env: HostEnv) -> None:
        firewall.apply(self.ruleset, self.live)

    def undo(self, env: HostEnv) -> None:
        firewall.remove(((c.table, c.name) for c in self.ruleset.chains), self.ruleset.family)

    def batch_key(self) -> tuple[Any, ...] | None:
        return (self.kind, self.ruleset.family)

    @classmethod
    def undo_batch(cls, changes: list[HostChange], env: HostEnv) -> None:
        """Every owner's chains and jumps of one family: one read of the ruleset, one
        ``iptables-restore`` transaction (refused whole if any line fails)."""
        rulesets = [c.ruleset for c in changes if isinstance(c, Firewall)]
        firewall.remove([(c.table, c.name) for r in rulesets for c in r.chains],
                        rulesets[0].family)

    def drift(self, live: Reading) -> str:
        state = live.firewall(self.ruleset.family)
        found = []
        for chain in self.ruleset.chains:
            if chain.name not in state.chains.get(chain.table, {}):
                found.append(f"chain {chain.table}/{chain.name} is gone")
                continue
            rules = [r for r in state.rules.get(chain.table, [])
                     if r.startswith(f"-A {chain.name} ")]
            if chain.rules and len(rules) != len(chain.rules):
                found.append(f"chain {chain.table}/{chain.name} has {len(rules)} of its "
                             f"{len(chain.rules)} rules")
        for jump in self.ruleset.jumps:
            target = jump.spec.split()[-1]
            if not state.jumps_to(jump.table, target):
                found.append(f"the jump from {jump.table}/{jump.builtin} to {target} is gone")
        return "; ".join(found)
