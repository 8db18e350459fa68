"""Firewall changes: the iptables tables and nft base chains claimed in a network
namespace, and a :class:`Firewall` ruleset in chains cf-launch owns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from coldfront_launch.changes.base import HostChange, HostEnv, Reading
from coldfront_launch.changes.claims import ClaimKey
from coldfront_launch.changes.shared import Claim, NetworkClaim
from coldfront_launch.linux import netfilter


class _FamilyClaim(NetworkClaim):
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

    target_field = "table"

    def needed_by(self, failed: HostChange) -> bool:
        """A ruleset left in place (its removal failed) keeps its table."""
        return (isinstance(failed, Firewall) and failed.netns == self.netns
                and failed.ruleset.family == self.family
                and self.table in failed.ruleset.tables())

    def restore(self, original: Any) -> None:
        if original == "absent":
            netfilter.drop_table_if_empty(self.table, self.family)

    @classmethod
    def restore_together(cls, items: list[tuple[Claim, Any]]) -> None:
        """Tables and built-in chains (newest first): the empty ones cf-launch brought in
        go in one reading of the ruleset and one ``nft -f`` transaction per family,
        chains before tables."""
        def family(change: Claim) -> str:
            return str(getattr(change, "family", "ipv4"))
        for fam in dict.fromkeys(family(c) for c, _o in items):
            absent = [c for c, original in items if original == "absent" and family(c) == fam]
            netfilter.drop_empty(
                [(c.table, c.chain) for c in absent if isinstance(c, NftBaseChain)],
                [c.table for c in absent
                 if isinstance(c, IptablesTable) and not isinstance(c, NftBaseChain)], fam)


@dataclass(frozen=True)
class NftBaseChain(IptablesTable):
    """A built-in chain (``table/chain``, e.g. ``nat/POSTROUTING``) of an nf_tables
    backend. nft creates it with the table's first rule, so a holder that found it absent
    drops it again when it is empty and the last holder lets go. Part of a
    :class:`Firewall` change, keyed per address family like the table it belongs to."""

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
            netfilter.drop_base_chain_if_empty(self.table, self.chain, self.family)


# --- firewall --------------------------------------------------------------------------

@dataclass(frozen=True)
class Firewall(HostChange):
    """An owner's chains and the one jump into each, applied in one transaction and
    removed exactly (nothing else in the firewall is touched)."""

    kind: ClassVar[str] = "firewall"
    network: ClassVar[bool] = True
    owner: str = ""
    ruleset: netfilter.Ruleset = field(default_factory=lambda: netfilter.Ruleset((), ()))
    netns: str = ""
    live: netfilter.Live | None = field(default=None, compare=False, repr=False)
    boot: str = ""  # the boot it was made in: a reboot took it away

    target_field = "owner"

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
        return cls(data.get("owner", ""), netfilter.Ruleset.from_json(data), data.get("netns", ""))

    def apply(self, env: HostEnv) -> None:
        netfilter.apply(self.ruleset, self.live)

    def undo(self, env: HostEnv) -> None:
        netfilter.remove(((c.table, c.name) for c in self.ruleset.chains), self.ruleset.family)

    def batch_key(self) -> tuple[Any, ...] | None:
        return (self.kind, self.ruleset.family)

    @classmethod
    def undo_batch(cls, changes: list[HostChange], env: HostEnv) -> None:
        """Every owner's chains and jumps of one family: one read of the ruleset, one
        ``iptables-restore`` transaction (refused whole if any line fails)."""
        rulesets = [c.ruleset for c in changes if isinstance(c, Firewall)]
        netfilter.remove([(c.table, c.name) for r in rulesets for c in r.chains],
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
