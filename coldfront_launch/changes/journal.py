"""Journals written by cf-launch 0.1 (untyped undo actions), read as typed changes.

0.1 wrote one JSON object per line with a ``kind``: ``netns`` (where the changes were
made), then undo actions. Each maps onto the change whose undo it was.
"""

from __future__ import annotations

from typing import Any

from coldfront_launch.changes import base as c
from coldfront_launch.changes.claims import ClaimKey
from coldfront_launch.linux.netfilter import Chain, Jump, Ruleset


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
