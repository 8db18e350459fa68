"""Read the host's network (iproute2, ``if_nametoindex``) and NIC offloads (ethtool), in the
current network namespace."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import distro
from .errors import HostChangeError


@dataclass(frozen=True)
class HostAddress:
    ifname: str
    network: ipaddress.IPv4Interface


@dataclass(frozen=True)
class HostRoute:
    ifname: str
    dst: ipaddress.IPv4Network


def netns_id() -> str:
    """This process's network namespace, as the inode number of its nsfs file."""
    return str(os.stat("/proc/self/ns/net").st_ino)


def netns_alive(netns: str) -> bool:
    """Whether a network namespace (by inode) still exists: a process is in it, or a
    bind mount under /run/netns keeps it."""
    candidates = list(Path("/proc").glob("[0-9]*/ns/net")) + list(Path("/run/netns").glob("*"))
    for path in candidates:
        try:
            if str(path.stat().st_ino) == netns:
                return True
        except OSError:
            continue
    return False


IP_FOLDERS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")


def _ip_path() -> str:
    """``ip`` from PATH, else from the usual folders (iproute2 is on every Linux host, but
    root's PATH may lack ``sbin``)."""
    found = shutil.which("ip") or next(
        (f"{d}/ip" for d in IP_FOLDERS if os.access(f"{d}/ip", os.X_OK)), None)
    if found is None:
        raise HostChangeError("ip (iproute2) is not installed", "install the iproute2 package")
    return found


def _ip(argv: list[str]) -> list[dict[str, Any]]:
    """``ip -j ARGV`` in this process's namespace, parsed ([] when it fails, e.g. no such
    device). iproute2 rather than pyroute2: importing pyroute2 costs 0.13 s (its package
    imports ipdb, ndb and conntrack whatever submodule is asked for), ``ip`` a few ms."""
    result = subprocess.run([_ip_path(), "-j", *argv], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        return []
    found = json.loads(result.stdout or "[]")
    return [item for item in found if isinstance(item, dict) and item]


def link_index(ifname: str) -> int | None:
    """A link's index in this process's namespace (``if_nametoindex``: no process)."""
    try:
        return socket.if_nametoindex(ifname)
    except OSError:
        return None


def link_exists(ifname: str) -> bool:
    return link_index(ifname) is not None


def link_kind(ifname: str) -> str | None:
    """A link's kind (``bridge``, ``veth``, ...), "" for a physical one, None if absent."""
    if link_index(ifname) is None:
        return None
    found = _ip(["-d", "link", "show", "dev", ifname])
    if not found:
        return None
    return str((found[0].get("linkinfo") or {}).get("info_kind") or "")


def delete_link_if_unused(ifname: str) -> None:
    """Delete a bridge once nothing is attached to it (something foreign may be)."""
    if link_index(ifname) is None:
        return
    if not _ip(["link", "show", "master", ifname]):
        subprocess.run([_ip_path(), "link", "del", "dev", ifname], capture_output=True,
                       check=False)


def _metric(route: dict[str, Any]) -> int:
    return int(route.get("metric") or 0)


def default_route_interface() -> str | None:
    """The interface of the IPv4 default route (lowest metric), if there is one."""
    found = [r for r in _ip(["-4", "route", "show", "table", "main"])
             if r.get("dst") == "default" and r.get("dev")]
    return str(min(found, key=_metric)["dev"]) if found else None


def addresses() -> list[HostAddress]:
    return [HostAddress(str(link.get("ifname", "")),
                        ipaddress.IPv4Interface(f"{a['local']}/{a['prefixlen']}"))
            for link in _ip(["-4", "addr", "show"])
            for a in link.get("addr_info", []) if a.get("family") == "inet"]


def routes() -> list[HostRoute]:
    """IPv4 routes of the main table, default route excluded."""
    return [HostRoute(str(r.get("dev", "")), ipaddress.IPv4Network(r["dst"], strict=False))
            for r in _ip(["-4", "route", "show", "table", "main"])
            if r.get("dst") not in (None, "default")]


def host_veth_of(pid: int, ifname: str = "eth0") -> str | None:
    """The host-side name of the veth whose peer is ``ifname`` in process ``pid``'s netns.

    Asked with ``nsenter ... ip -j link`` rather than pyroute2's netns support, which
    forks this Python process into the other namespace (a forked copy of a cf-launch
    call stack must never run on)."""
    result = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-j", "link",
                             "show", "dev", ifname], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        return None
    links = json.loads(result.stdout or "[]")
    peer = links[0].get("link_index") if links else None
    if peer is None:
        return None
    try:
        return socket.if_indextoname(int(peer))
    except OSError:
        return None


# --- offloads (ethtool) ------------------------------------------------------------------

SHORT_NAMES = {
    "tx-checksumming": "tx", "rx-checksumming": "rx", "scatter-gather": "sg",
    "tcp-segmentation-offload": "tso", "generic-segmentation-offload": "gso",
    "generic-receive-offload": "gro",
}


def _ethtool(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["ethtool", *argv], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise HostChangeError("ethtool is not installed",
                              distro.install_hint("ethtool")) from None


def read_offloads(ifname: str) -> dict[str, bool]:
    """Offload features (``ethtool -k``), keyed by ethtool's long names."""
    result = _ethtool(["-k", ifname])
    if result.returncode != 0:
        raise HostChangeError(f"cannot read offloads of {ifname}: {result.stderr.strip()}")
    features: dict[str, bool] = {}
    for line in result.stdout.splitlines()[1:]:
        name, _, rest = line.strip().partition(":")
        if rest.strip():
            features[name] = rest.split()[0] == "on"
    return features


def write_offloads(ifname: str, features: dict[str, bool]) -> None:
    argv = ["-K", ifname]
    for name, on in features.items():
        argv += [SHORT_NAMES.get(name, name), "on" if on else "off"]
    result = _ethtool(argv)
    if result.returncode != 0:
        raise HostChangeError(f"cannot change offloads of {ifname}: {result.stderr.strip()}")
