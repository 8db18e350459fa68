"""iptables rulesets that cf-launch owns: its own chains, each reached by one jump.

Applied atomically with one ``iptables-restore --noflush``; nothing outside the owned
chains is flushed or edited, and the jumps are added only when missing. Removal reads
the live ruleset, so it is exact and idempotent even after a half-finished start.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .errors import HostChangeError

IPTABLES = "iptables"
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

    def to_json(self) -> dict[str, Any]:
        return {
            "chains": [{"table": c.table, "name": c.name, "rules": list(c.rules)}
                       for c in self.chains],
            "jumps": [{"table": j.table, "chain": j.builtin, "rule": j.spec}
                      for j in self.jumps],
        }

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
                              "install iptables (dnf install iptables-nft)") from None


def jump_present(jump: Jump) -> bool:
    """Whether this exact jump rule is already in its built-in chain."""
    argv = [IPTABLES, "-w", "-t", jump.table, "-C", jump.builtin, *shlex.split(jump.spec)]
    return _run(argv).returncode == 0


def chain_present(table: str, name: str) -> bool:
    return _run([IPTABLES, "-w", "-t", table, "-n", "-L", name]).returncode == 0


def restore(text: str) -> None:
    """Feed one atomic transaction to ``iptables-restore --noflush``."""
    if not text:
        return
    result = _run([f"{IPTABLES}-restore", "-w", "--noflush"], stdin=text)
    if result.returncode != 0:
        raise HostChangeError(f"iptables-restore refused the ruleset: {result.stderr.strip()}",
                              "run `cf-launch plan` to see the rules")


def apply(ruleset: Ruleset) -> None:
    """Create/refresh the owned chains and add each missing jump, in one transaction."""
    for chain in ruleset.chains:
        if not CHAIN_NAME.match(chain.name):
            raise HostChangeError(f"invalid chain name {chain.name!r}")
    present = [j for j in ruleset.jumps if jump_present(j)]
    restore("".join(_apply_section(t, ruleset, present) for t in ruleset.tables()))


def remove(chains: Iterable[tuple[str, str]], jumps: Iterable[Jump]) -> None:
    """Delete the jumps and owned chains that are present; leave everything else alone."""
    chains = list(chains)
    for jump in jumps:
        while jump_present(jump):  # a duplicate jump (added by hand) goes on the next pass
            restore(f"*{jump.table}\n-D {jump.builtin} {jump.spec}\nCOMMIT\n")
    by_table: dict[str, list[str]] = {}
    live = [(t, n) for t, n in chains if chain_present(t, n)]
    for table, name in live:
        by_table.setdefault(table, []).append(f"-F {name}")
    for table, name in live:
        by_table.setdefault(table, []).append(f"-X {name}")
    restore("".join(f"*{t}\n" + "\n".join(lines) + "\nCOMMIT\n"
                    for t, lines in by_table.items() if lines))


BUILTIN_CHAINS = {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}


def tables_present() -> set[str]:
    """Tables that exist now (``iptables-save`` lists only those; ``-t`` would show any)."""
    return {line[1:].strip() for line in save().splitlines() if line.startswith("*")}


def is_nft_backend() -> bool:
    return "nf_tables" in _run([IPTABLES, "-V"]).stdout


def drop_table_if_empty(table: str) -> None:
    """Delete a table cf-launch's rules brought into being, once nothing is left in it.

    Only the nf_tables backend creates tables on first use; a legacy table is left alone.
    A table with any rule, user chain or non-ACCEPT policy is someone else's now: kept.
    """
    if table not in tables_present() or not is_nft_backend():
        return
    for line in _run([f"{IPTABLES}-save", "-t", table]).stdout.splitlines():
        if line.startswith("-A"):
            return
        if line.startswith(":"):
            name, policy = line[1:].split()[:2]
            if name not in BUILTIN_CHAINS or policy != "ACCEPT":
                return
    result = _run(["nft", "delete", "table", "ip", table])
    if result.returncode != 0:
        raise HostChangeError(f"cannot remove the empty iptables table {table} cf-launch "
                              f"created: {result.stderr.strip()}", "install nftables (nft)")


def base_chain_present(table: str, chain: str) -> bool:
    """Whether nf_tables holds this built-in chain (iptables-nft makes them on first use)."""
    return _run(["nft", "list", "chain", "ip", table, chain]).returncode == 0


def nft_available() -> bool:
    return is_nft_backend() and _run(["sh", "-c", "command -v nft"]).returncode == 0


def drop_base_chain_if_empty(table: str, chain: str) -> None:
    """Delete a built-in chain cf-launch's jump brought into being, once it is empty."""
    if not nft_available() or not base_chain_present(table, chain):
        return
    rules = _run([IPTABLES, "-w", "-t", table, "-S", chain]).stdout.splitlines()
    if rules != [f"-P {chain} ACCEPT"]:
        return
    result = _run(["nft", "delete", "chain", "ip", table, chain])
    if result.returncode != 0:
        raise HostChangeError(f"cannot remove the empty chain {table}/{chain} cf-launch "
                              f"created: {result.stderr.strip()}")


def save() -> str:
    """The live ruleset, as ``iptables-save`` prints it."""
    result = _run([f"{IPTABLES}-save"])
    if result.returncode != 0:
        raise HostChangeError(f"iptables-save failed: {result.stderr.strip()}")
    return result.stdout


def normalized(text: str) -> str:
    """A ruleset without comments and counters, for before/after comparison."""
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        out.append(re.sub(r"\[\d+:\d+\]", "[0:0]", line))
    return "\n".join(out) + "\n"
