"""The default subnet of a bridge network: picked once from a private pool, clear of what
the host already uses, then recorded and kept.

Docker's way: the first /24 of :data:`POOL` that overlaps no address or route of the host
(the network's own bridge left out), no subnet of another CNI network defined on the host,
and no subnet recorded for another cf-launch network. The first ``start`` (or ``prepare``)
writes the pick to ``<state_root>/networks.json`` under the shared lock, so restarts, a
reboot and every instance of the same network get the same subnet. ``plan`` and ``doctor``
show the pick without recording it. An explicit ``subnet`` setting always wins and is not
recorded."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from coldfront_launch import atomic
from coldfront_launch.config.files import read_bounded
from coldfront_launch.errors import ConfigError, PreflightError
from coldfront_launch.linux import netinfo
from coldfront_launch.locks import shared_lock

POOL = (ipaddress.IPv4Network("10.223.0.0/16"), ipaddress.IPv4Network("172.29.0.0/16"),
        ipaddress.IPv4Network("192.168.224.0/19"))
SIZE = 24
RECORD = "networks.json"
SETTING = "hook.bridge.subnet"
# Where other runtimes keep their CNI networks (podman before 4, Kubernetes, nerdctl).
OTHER_CNI_DIRS = (Path("/etc/cni/net.d"),)


def record_path(state_root: Path) -> Path:
    return state_root / RECORD


def recorded_all(state_root: Path) -> dict[str, ipaddress.IPv4Network]:
    """Every network's recorded subnet; a damaged record is a clear error, never a new
    pick behind the admin's back (that would move running firewall rules' addresses)."""
    path = record_path(state_root)
    if not path.exists():
        return {}
    hint = f"fix {path}, or remove it (new subnets are then picked), or set {SETTING}"
    try:
        data = json.loads(read_bounded(SETTING, path, 64 * 1024))
        return {str(name): ipaddress.IPv4Network(entry["subnet"])
                for name, entry in data.items()}
    except ConfigError as err:  # not a regular file, too big, unreadable
        err.hint = hint
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise ConfigError(SETTING, f"the subnet record {path} is damaged ({err})",
                          hint) from None


def candidates() -> Iterator[ipaddress.IPv4Network]:
    for block in POOL:
        yield from block.subnets(new_prefix=SIZE)


def pick(taken: Iterable[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """The first candidate that overlaps nothing in ``taken``."""
    busy = list(taken)
    for candidate in candidates():
        if not any(candidate.overlaps(other) for other in busy):
            return candidate
    pools = ", ".join(map(str, POOL))
    raise PreflightError(f"every /{SIZE} of cf-launch's pool ({pools}) overlaps an address, "
                         "route or CNI network of this host", f"set {SETTING}")


def used_by_host(own_bridge: str) -> list[ipaddress.IPv4Network]:
    """The networks of the host's addresses and routes, except those on ``own_bridge``."""
    found = [a.network.network for a in netinfo.addresses() if a.ifname != own_bridge]
    return found + [r.dst for r in netinfo.routes() if r.ifname != own_bridge]


def defined_by_cni(folders: Iterable[Path], own: Path) -> list[ipaddress.IPv4Network]:
    """The subnets of every CNI network in ``folders`` (``own``, this network's file, left
    out): ``ipam.subnet`` and ``ipam.ranges``, of any plugin."""
    found = []
    for folder in folders:
        for path in sorted(folder.glob("*.conf*")) if folder.is_dir() else []:
            if path == own:
                continue
            try:
                conf = json.loads(read_bounded(SETTING, path, 256 * 1024))
                plugins = conf.get("plugins", [conf])
                texts = [p.get("ipam", {}).get("subnet", "") for p in plugins] + \
                    [r.get("subnet", "") for p in plugins
                     for ranges in p.get("ipam", {}).get("ranges", []) for r in ranges]
            except (ConfigError, ValueError, AttributeError, TypeError):
                continue  # not a regular file, too big, not JSON: not a network
            for text in texts:
                try:
                    found.append(ipaddress.IPv4Network(text, strict=False))
                except (ValueError, TypeError):
                    continue  # IPv6, or not a subnet
    return found


def default(state_root: Path, network: str, bridge: str, cni_dir: Path,
            own: Path) -> ipaddress.IPv4Network:
    """The recorded subnet of ``network``, else the one :func:`pick` would record now."""
    records = recorded_all(state_root)
    if network in records:
        return records[network]
    others = [subnet for name, subnet in records.items() if name != network]
    return pick(used_by_host(bridge) + defined_by_cni((cni_dir, *OTHER_CNI_DIRS), own)
                + others)


def record(state_root: Path, network: str, subnet: ipaddress.IPv4Network
           ) -> ipaddress.IPv4Network:
    """Record ``subnet`` for ``network`` unless one is already (another instance of the
    same network may have been quicker); returns the recorded one."""
    with shared_lock(state_root):
        records = recorded_all(state_root)
        if network in records:
            return records[network]
        records[network] = subnet
        atomic.write_json(record_path(state_root),
                          {name: {"subnet": str(net)} for name, net in records.items()},
                          mode=0o644, indent=2)
        return subnet
