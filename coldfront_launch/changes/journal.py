"""The journal as typed host changes: read, append, rewrite, and where it was made.

The state folder (:class:`~coldfront_launch.state.InstanceState`) stores plain records;
this module turns them into :class:`~coldfront_launch.changes.base.HostChange` objects and
back. It also reads journals written by cf-launch 0.1 (untyped undo actions): one JSON
object per line with a ``kind``: ``netns`` (where the changes were made), then undo
actions, each mapped onto the change whose undo it was. The next undo rewrites them in the
current form.
"""

from __future__ import annotations

from typing import Any

from coldfront_launch import changes as c
from coldfront_launch.changes.claims import ClaimKey
from coldfront_launch.errors import HostChangeError
from coldfront_launch.linux import netinfo
from coldfront_launch.linux.netfilter import Chain, Jump, Ruleset
from coldfront_launch.state.instance import InstanceState


def entries(state: InstanceState) -> list[c.HostChange]:
    """All journaled changes, oldest first (0.1 journals read too)."""
    return from_v1(state.records())


def record(state: InstanceState, change: c.HostChange) -> None:
    """Journal one change, on disk before it is made."""
    state.append(change.to_record())


def rewrite(state: InstanceState, remaining: list[c.HostChange]) -> None:
    """Atomically replace the journal with the changes still to undo."""
    state.rewrite([change.to_record() for change in remaining])


def made_in(changes: list[c.HostChange]) -> str | None:
    """The network namespace the journal's network changes were made in."""
    return next((e.netns_id for e in changes if e.network and e.netns_id), None)


def check_namespace(state: InstanceState) -> bool:
    """Whether the network namespace the changes were made in is gone.

    Refuses (raises) when it still exists but is not this process's: undoing there from
    here would change the wrong host. A namespace that is gone took its links, rules and
    sysctls with it; only the changes outside it are left to undo."""
    journaled = entries(state)
    boot = netinfo.boot_id()
    if any(e.network and e.boot_id and e.boot_id != boot for e in journaled):
        return True  # made before a reboot: the namespace, its rules and sysctls are gone
    where = made_in(journaled)
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


def is_v1(record: dict[str, Any]) -> bool:
    return "type" not in record and "kind" in record


def from_v1(records: list[dict[str, Any]]) -> list[c.HostChange]:
    """Convert 0.1 records (and pass typed ones through) in order."""
    netns = next((str(r.get("id", "")) for r in records if r.get("kind") == "netns"), "")
    out: list[c.HostChange] = []
    for record in records:
        if not is_v1(record):
            out.append(c.from_record(record))
        elif record["kind"] != "netns":
            out.append(_one(record, netns))
    return out


def _one(record: dict[str, Any], netns: str) -> c.HostChange:
    kind = record["kind"]
    if kind == "stop_instance":
        return c.StopInstance(record["name"])
    if kind == "remove_file":
        return c.File(record["path"])
    if kind == "remove_dir":
        return c.Directory(record["path"], (record["path"],))
    if kind == "remove_firewall":
        ruleset = Ruleset(tuple(Chain(t, n, ()) for t, n in record["chains"]),
                          tuple(Jump(t, b, s) for t, b, s in record["jumps"]))
        return c.Firewall("", ruleset, netns)
    if kind == "restore_offloads":
        return c.Offloads(ifname=record["ifname"], original=dict(record["features"]),
                          netns=netns)
    if kind == "release":
        return _claim(ClaimKey.parse_v1(record["resource"]))
    return c.Unknown(dict(record))


def _claim(key: ClaimKey) -> c.HostChange:
    """A 0.1 ``release`` of a shared resource: the claim change of that kind."""
    net = key.netns
    if key.kind == "file":
        return c.SharedFile(key.name)
    if key.kind == "sysctl":
        return c.Sysctl(name=key.name, netns=net)
    if key.kind == "link":
        return c.Link(ifname=key.name, netns=net)
    if key.kind == "offloads":
        return c.Offloads(ifname=key.name, shared=True, netns=net)
    if key.kind == "iptables-table":
        return c.IptablesTable(table=key.name, netns=net)
    if key.kind == "nft-chain":
        table, _, chain = key.name.partition("/")
        return c.NftBaseChain(table=table, chain=chain, netns=net)
    return c.Unknown({"kind": "release", "resource": f"{key.kind}:{key.name}"})
