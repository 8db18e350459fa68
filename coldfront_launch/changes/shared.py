"""Shared resources as claims: each instance that needs one holds it, and the last holder
puts back what the first found (:mod:`coldfront_launch.changes.claims`): a sysctl, a
link, a link's offloads. ``NetworkClaim`` (a claim inside a network namespace, with the
boot it was made in) is the base of these and of the firewall claims in ``rulesets``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from coldfront_launch.changes import claims
from coldfront_launch.changes.base import HostChange, HostEnv, Reading
from coldfront_launch.changes.claims import ClaimKey
from coldfront_launch.errors import HostChangeError
from coldfront_launch.linux import netinfo, sysctl


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
class NetworkClaim(Claim):
    """A claim inside a network namespace: what the first holder found (``original``),
    where (``netns``), and in which boot (``boot``: a reboot took it away)."""

    network: ClassVar[bool] = True
    original: Any = field(default=None, hash=False)
    netns: str = ""
    boot: str = ""


@dataclass(frozen=True)
class Sysctl(NetworkClaim):
    """A kernel setting; the last holder restores the first one's original value."""

    kind: ClassVar[str] = "sysctl"
    name: str = ""
    value: str = ""

    target_field = "name"

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
        # Already the original (the set never happened, or someone put it back): nothing
        # to undo, and no failure to report where /proc/sys is read-only.
        if sysctl.read(self.name) != str(original):
            sysctl.write(self.name, str(original))


@dataclass(frozen=True)
class Link(NetworkClaim):
    """A link others create for us (the CNI bridge); deleted by the last holder if it
    did not exist before the first claim, and nothing is attached to it."""

    kind: ClassVar[str] = "link"
    ifname: str = ""

    target_field = "ifname"

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
class Offloads(NetworkClaim):
    """NIC offload features (``ethtool -K``) of one link. ``shared`` for a link many
    instances use (the bridge: a claim); else this instance's own (its veth)."""

    kind: ClassVar[str] = "offloads"
    ifname: str = ""
    features: dict[str, bool] = field(default_factory=dict, hash=False)
    shared: bool = False

    target_field = "ifname"

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
