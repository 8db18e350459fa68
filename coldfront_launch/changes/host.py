"""The one narrow interface through which hooks change the host.

Every method builds a typed change (:mod:`coldfront_launch.changes.base`) and hands it to
``_make``. Two implementations share the methods: :class:`RealHost` journals the change,
then makes it; :class:`RecordingHost` only records it, for ``cf-launch plan``. Both list
the same changes, so a plan cannot drift from a start.

Per-instance changes are undone by that instance's ``stop``. Shared changes (a CNI
conflist, a sysctl, the bridge) are claimed by every instance that needs them and put
back as they were by the last one to stop (see :mod:`coldfront_launch.changes.claims`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

from coldfront_launch.changes import (
    Directory,
    File,
    Firewall,
    HostChange,
    HostEnv,
    IptablesTable,
    Link,
    NftBaseChain,
    Offloads,
    SharedFile,
    StopInstance,
    Sysctl,
    journal,
    missing_dirs,
)
from coldfront_launch.linux import netfilter, netinfo, sysctl
from coldfront_launch.state.instance import InstanceState

T = TypeVar("T")


class HostChanges(Protocol):
    """What a hook may do to the host. Every method is idempotent and undone on stop."""

    changes: list[HostChange]

    def make_dir(self, path: Path) -> None:
        """Create a directory and any missing parents (removed on stop if left empty)."""

    def write_file(self, path: Path, content: str, mode: int = 0o644) -> None:
        """Create a file this instance owns; refuse to overwrite one cf-launch did not
        create. Missing parent folders are created, and removed on stop if left empty."""

    def share_file(self, path: Path, content: str, mode: int = 0o644) -> None:
        """Create a file several instances need; the last one to stop removes it."""

    def set_sysctl(self, key: str, value: str) -> None:
        """Set a kernel setting; the last holder to stop restores the first one's original."""

    def claim_link(self, ifname: str) -> None:
        """Hold a link others create for us (the CNI bridge); removed by the last holder
        if it did not exist before the first claim."""

    def apply_firewall(self, owner: str, ruleset: netfilter.Ruleset) -> None:
        """Install this instance's own chains and their jumps atomically."""

    def set_offloads(self, ifname: str, features: dict[str, bool], shared: bool = False) -> None:
        """Set NIC offload features (``ethtool -K``); ``shared`` for a link many use."""


class RecordingHost:
    """Records changes and makes none: the engine behind ``cf-launch plan``.

    :class:`RealHost` inherits every method; only ``_make`` and ``_read`` differ."""

    netns = ""

    def __init__(self) -> None:
        self.changes: list[HostChange] = []

    def _read(self, probe: Callable[[], T]) -> T | None:
        """What undo will need from the live host; a recorder looks at nothing."""
        return None

    def _make(self, change: HostChange) -> None:
        if change.listed:
            self.changes.append(change)

    def make_dir(self, path: Path) -> None:
        self._make(Directory(str(path), self._read(lambda: missing_dirs(path)) or ()))

    def write_file(self, path: Path, content: str, mode: int = 0o644) -> None:
        created = self._read(lambda: missing_dirs(path.parent)) or ()
        self._make(File(str(path), mode, content, created))

    def share_file(self, path: Path, content: str, mode: int = 0o644) -> None:
        created = self._read(lambda: missing_dirs(path.parent)) or ()
        digest = hashlib.sha256(content.encode()).hexdigest()
        self._make(SharedFile(str(path), mode, content, created, digest))

    def set_sysctl(self, key: str, value: str) -> None:
        self._make(Sysctl(name=key, value=value, netns=self.netns,
                          original=self._read(lambda: sysctl.read(key))))

    def claim_link(self, ifname: str) -> None:
        present = self._read(lambda: "present" if netinfo.link_exists(ifname) else "absent")
        self._make(Link(ifname=ifname, original=present, netns=self.netns))

    def apply_firewall(self, owner: str, ruleset: netfilter.Ruleset) -> None:
        family = ruleset.family
        live = self._read(lambda: netfilter.Live.read(family))
        if live is not None:
            # iptables-nft creates a table on first use, and a built-in chain on its first
            # rule: claim each, so the last holder removes what cf-launch brought in.
            for table in ruleset.tables():
                self._make(IptablesTable(table=table, original=_presence(table in live.chains),
                                         netns=self.netns, family=family))
            if netfilter.nft_available():
                base = netfilter.base_chains_present(family)
                for jump in ruleset.jumps:
                    self._make(NftBaseChain(
                        table=jump.table, chain=jump.builtin, netns=self.netns, family=family,
                        original=_presence((jump.table, jump.builtin) in base)))
        self._make(Firewall(owner, ruleset, self.netns, live))

    def set_offloads(self, ifname: str, features: dict[str, bool], shared: bool = False) -> None:
        before = self._read(lambda: netinfo.read_offloads(ifname))
        previous = {k: before[k] for k in features if k in before} if before is not None \
            else None
        self._make(Offloads(ifname=ifname, features=dict(features), shared=shared,
                                original=previous, netns=self.netns))


def _presence(present: bool) -> str:
    return "present" if present else "absent"


class RealHost(RecordingHost):
    """Makes each change for real, journaling it first (once per identity)."""

    def __init__(self, state: InstanceState, state_root: Path) -> None:
        super().__init__()
        self.netns = netinfo.netns_id()
        self.boot = netinfo.boot_id()
        self.env = HostEnv(state, state_root,
                           journaled={c.identity() for c in journal.entries(state)})

    def _read(self, probe: Callable[[], T]) -> T | None:
        return probe()

    def track_instance(self, name: str) -> None:
        """Journal the instance itself, just before ``instance start``."""
        self._make(StopInstance(name))

    def _make(self, change: HostChange) -> None:
        if change.network:
            change = dataclasses.replace(change, boot=self.boot)  # type: ignore[type-var]
        change.check(self.env)
        if change.identity() not in self.env.journaled:
            journal.record(self.env.state, change)
            self.env.journaled.add(change.identity())
        change.apply(self.env)
        super()._make(change)
