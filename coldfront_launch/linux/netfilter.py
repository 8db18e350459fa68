"""Netfilter rulesets that cf-launch owns: its own chains, each reached by one jump, and
the empty tables and base chains it brought into nft, dropped again.

A ruleset is IPv4 (``iptables``) unless its ``family`` is ``ipv6`` (``ip6tables``); on an
nft backend the ``nft`` tool reads and drops what iptables-nft created.

Applied atomically with one ``iptables-restore --noflush``; nothing outside the owned
chains is flushed or edited, and the jumps are added only when missing. Removal reads
the live ruleset, so it is exact and idempotent even after a half-finished start.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from coldfront_launch.errors import HostChangeError
from coldfront_launch.linux import distro

IPTABLES = "iptables"
TOOLS = {"ipv4": IPTABLES, "ipv6": "ip6tables"}
NFT_FAMILIES = {"ipv4": "ip", "ipv6": "ip6"}
CHAIN_NAME = re.compile(r"^[A-Za-z0-9_-]{1,28}$")


@dataclass(frozen=True)
class Chain:
    """A chain cf-launch creates and owns, with its rules (``-A`` arguments)."""

    table: str
    name: str
    rules: tuple[str, ...]


@dataclass(frozen=True)
class Jump:
    """The single rule that sends a built-in chain's traffic into an owned chain."""

    table: str
    builtin: str
    spec: str


@dataclass(frozen=True)
class Ruleset:
    """Everything one owner (an instance's hook) puts in the firewall."""

    chains: tuple[Chain, ...]
    jumps: tuple[Jump, ...]
    family: str = "ipv4"

    def to_json(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "chains": [{"table": c.table, "name": c.name, "rules": list(c.rules)}
                       for c in self.chains],
            "jumps": [{"table": j.table, "chain": j.builtin, "rule": j.spec}
                      for j in self.jumps],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Ruleset:
        """The inverse of :meth:`to_json` (rules may be absent: undo needs only names)."""
        return cls(
            tuple(Chain(c["table"], c["name"], tuple(c.get("rules", ())))
                  for c in data.get("chains", [])),
            tuple(Jump(j["table"], j["chain"], j["rule"]) for j in data.get("jumps", [])),
            str(data.get("family", "ipv4")),
        )

    def restore_text(self) -> str:
        """The exact ``iptables-restore --noflush`` input that applies this ruleset."""
        return "".join(_apply_section(table, self) for table in self.tables())

    def tables(self) -> list[str]:
        seen: list[str] = []
        for table in [c.table for c in self.chains] + [j.table for j in self.jumps]:
            if table not in seen:
                seen.append(table)
        return seen


def _apply_section(table: str, ruleset: Ruleset, present_jumps: Iterable[Jump] = ()) -> str:
    present = set(present_jumps)
    lines = [f"*{table}"]
    chains = [c for c in ruleset.chains if c.table == table]
    lines += [f":{c.name} - [0:0]" for c in chains]
    lines += [f"-F {c.name}" for c in chains]
    for c in chains:
        lines += [f"-A {c.name} {rule}" for rule in c.rules]
    for j in ruleset.jumps:
        if j.table == table and j not in present:
            lines.append(f"-I {j.builtin} 1 {j.spec}")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def _run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise HostChangeError(f"{argv[0]} is not installed",
                              distro.install_hint("nft" if argv[0] == "nft" else "iptables")
                              ) from None


@dataclass
class Live:
    """One reading of the live ruleset (``iptables-save``): tables, chains, rules."""

    chains: dict[str, dict[str, str]]  # table -> chain -> policy ("-" for user chains)
    rules: dict[str, list[str]]        # table -> "-A CHAIN ..." lines

    @classmethod
    def read(cls, family: str = "ipv4") -> Live:
        chains: dict[str, dict[str, str]] = {}
        rules: dict[str, list[str]] = {}
        table = ""
        for line in save(family).splitlines():
            if line.startswith("*"):
                table = line[1:].strip()
                chains[table], rules[table] = {}, []
            elif line.startswith(":") and table:
                name, policy = line[1:].split()[:2]
                chains[table][name] = policy
            elif line.startswith("-A ") and table:
                rules[table].append(line)
        return cls(chains, rules)

    def jumps_to(self, table: str, chain: str) -> list[str]:
        """Rules of built-in chains whose target is ``chain`` (cf-launch's own chain)."""
        return [r for r in self.rules.get(table, [])
                if r.split()[1] in BUILTIN_CHAINS and r.split()[-2:] == ["-j", chain]]


BUILTIN_CHAINS = {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}


def restore(text: str, family: str = "ipv4") -> None:
    """Feed one atomic transaction to ``iptables-restore --noflush`` (ip6tables for ipv6)."""
    if not text:
        return
    result = _run([f"{TOOLS[family]}-restore", "-w", "--noflush"], stdin=text)
    if result.returncode != 0:
        raise HostChangeError(f"iptables-restore refused the ruleset: {result.stderr.strip()}",
                              "run `cf-launch plan` to see the rules")


def apply(ruleset: Ruleset, live: Live | None = None) -> None:
    """Create/refresh the owned chains and add each missing jump, in one transaction.

    ``live`` is a reading of the ruleset taken just before, if the caller has one."""
    for chain in ruleset.chains:
        if not CHAIN_NAME.match(chain.name):
            raise HostChangeError(f"invalid chain name {chain.name!r}")
    live = live or Live.read(ruleset.family)
    present = [j for j in ruleset.jumps if live.jumps_to(j.table, _target(j))]
    restore("".join(_apply_section(t, ruleset, present) for t in ruleset.tables()),
            ruleset.family)


def _target(jump: Jump) -> str:
    return shlex.split(jump.spec)[-1]


def remove(chains: Iterable[tuple[str, str]], family: str = "ipv4") -> None:
    """Delete every jump into the owned chains, then the chains; leave all else alone.

    Reads the live ruleset once and deletes by the saved rule text, so a duplicated jump
    goes too, and a half-applied start is undone exactly. One atomic transaction."""
    live = Live.read(family)
    owned = list(chains)
    by_table: dict[str, list[str]] = {}
    for table, name in owned:
        for rule in live.jumps_to(table, name):
            by_table.setdefault(table, []).append("-D " + rule[3:])
    present = [(t, n) for t, n in owned if n in live.chains.get(t, {})]
    for table, name in present:
        by_table.setdefault(table, []).append(f"-F {name}")
    for table, name in present:
        by_table.setdefault(table, []).append(f"-X {name}")
    restore("".join(f"*{t}\n" + "\n".join(lines) + "\nCOMMIT\n"
                    for t, lines in by_table.items() if lines), family)


@functools.lru_cache(maxsize=1)
def is_nft_backend() -> bool:
    return "nf_tables" in _run([IPTABLES, "-V"]).stdout


@functools.lru_cache(maxsize=1)
def nft_available() -> bool:
    return is_nft_backend() and shutil.which("nft") is not None


def drop_table_if_empty(table: str, family: str = "ipv4") -> None:
    """Delete a table cf-launch's rules brought into being, once nothing is left in it.

    Only the nf_tables backend creates tables on first use; a legacy table is left alone.
    A table with any rule, user chain or non-ACCEPT policy is someone else's now: kept.
    """
    live = Live.read(family)
    if table not in live.chains or not nft_available():
        return
    if live.rules[table] or any(name not in BUILTIN_CHAINS or policy != "ACCEPT"
                                for name, policy in live.chains[table].items()):
        return
    _nft_delete("table", table, family=family)


def base_chains_present(family: str = "ipv4") -> set[tuple[str, str]]:
    """(table, chain) pairs nf_tables holds now (iptables-nft makes built-ins on first use)."""
    if not nft_available():
        return set()
    result = _run(["nft", "-j", "list", "chains", NFT_FAMILIES[family]])
    if result.returncode != 0:
        return set()
    found = set()
    for item in json.loads(result.stdout).get("nftables", []):
        chain = item.get("chain")
        if chain:
            found.add((chain["table"], chain["name"]))
    return found


def drop_base_chain_if_empty(table: str, chain: str, family: str = "ipv4") -> None:
    """Delete a built-in chain cf-launch's jump brought into being, once it is empty."""
    if (table, chain) not in base_chains_present(family):
        return
    live = Live.read(family)
    if live.chains.get(table, {}).get(chain) != "ACCEPT" or any(
            r.split()[1] == chain for r in live.rules.get(table, [])):
        return
    _nft_delete("chain", table, chain, family)


def drop_empty(chains: list[tuple[str, str]], tables: list[str],
               family: str = "ipv4") -> None:
    """:func:`drop_base_chain_if_empty` for each chain, then :func:`drop_table_if_empty`
    for each table, decided from one reading and done in one ``nft -f`` transaction."""
    if not (chains or tables) or not nft_available():
        return
    live = Live.read(family)
    base = base_chains_present(family) if chains else set()
    nft = NFT_FAMILIES[family]
    lines = []
    for table, chain in chains:
        if (table, chain) in base and live.chains.get(table, {}).get(chain) == "ACCEPT" \
                and not any(r.split()[1] == chain for r in live.rules.get(table, [])):
            lines.append(f"delete chain {nft} {table} {chain}")
            live.chains[table].pop(chain)  # gone for the table's check below
    for table in tables:
        if table in live.chains and not live.rules[table] and all(
                name in BUILTIN_CHAINS and policy == "ACCEPT"
                for name, policy in live.chains[table].items()):
            lines.append(f"delete table {nft} {table}")
    if not lines:
        return
    result = _run(["nft", "-f", "-"], stdin="\n".join(lines) + "\n")
    if result.returncode != 0:
        raise HostChangeError(f"cannot remove the empty tables and chains cf-launch created: "
                              f"{result.stderr.strip()}", "install nftables (nft)")


def _nft_delete(kind: str, table: str, chain: str = "", family: str = "ipv4") -> None:
    result = _run(["nft", "delete", kind, NFT_FAMILIES[family], table,
                   *([chain] if chain else [])])
    if result.returncode != 0:
        raise HostChangeError(f"cannot remove the empty {kind} {table} {chain} cf-launch "
                              f"created: {result.stderr.strip()}", "install nftables (nft)")


def save(family: str = "ipv4") -> str:
    """The live ruleset, as ``iptables-save`` (``ip6tables-save``) prints it."""
    result = _run([f"{TOOLS[family]}-save"])
    if result.returncode != 0:
        raise HostChangeError(f"{TOOLS[family]}-save failed: {result.stderr.strip()}")
    return result.stdout


def chain_tag(instance: str) -> str:
    """A short, stable tag for an instance's chain names (iptables allows 28 characters),
    shared by every plugin that names chains after the instance."""
    return hashlib.sha256(instance.encode()).hexdigest()[:6].upper()
