"""The host's network in the current namespace: which namespace and boot this is, links,
addresses and routes (pyroute2, imported on first use from ``pyroute2.iproute``; a link's
index with ``if_nametoindex``) and NIC offloads (ethtool). Reads, and the two writes undo
needs: NIC offloads set back, and a link deleted when nothing uses it."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from coldfront_launch.config import seams
from coldfront_launch.errors import HostChangeError
from coldfront_launch.linux import distro

if TYPE_CHECKING:
    from pyroute2.iproute import IPRoute


@dataclass(frozen=True)
class HostAddress:
    ifname: str
    network: ipaddress.IPv4Interface


@dataclass(frozen=True)
class HostRoute:
    ifname: str
    dst: ipaddress.IPv4Network


def netns_path(inode: str) -> str:
    """A path that ``nsenter --net=`` can enter the network namespace ``inode`` by: its
    name under /run/netns, else a process's (``/proc/PID/ns/net``); "" if none is found."""
    named = Path("/run/netns")
    for path in sorted(named.iterdir()) if named.is_dir() else []:
        with contextlib.suppress(OSError):
            if str(path.stat().st_ino) == inode:
                return str(path)
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(proc / "ns" / "net") == f"net:[{inode}]":
                    return str(proc / "ns" / "net")
    return ""


def netns_id() -> str:
    """This process's network namespace, as the inode number of its nsfs file."""
    return str(os.stat("/proc/self/ns/net").st_ino)


BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str:
    """This boot's id (``CF_LAUNCH_BOOT_ID_FILE`` points tests at another file)."""
    path = Path(seams.seam("CF_LAUNCH_BOOT_ID_FILE") or BOOT_ID)
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def boot_time() -> float:
    """When this machine booted (seconds since the epoch), from ``/proc/stat``.

    Under the test seam ``CF_LAUNCH_BOOT_ID_FILE``, a simulated boot happened when that
    file was written: its modification time."""
    seam = seams.seam("CF_LAUNCH_BOOT_ID_FILE")
    if seam:
        try:
            return os.stat(seam).st_mtime
        except OSError:
            return 0.0
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0.0


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


def _iproute() -> IPRoute:
    """A netlink socket in this process's namespace (pyroute2 imported on first use:
    its top-level package alone costs more than a ``cf-launch --help``)."""
    from pyroute2.iproute import IPRoute
    return IPRoute()


def _ifnames(ipr: IPRoute) -> dict[int, str]:
    return {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}


def link_exists(ifname: str) -> bool:
    """Whether a link is there, in this process's namespace (``if_nametoindex``: no
    netlink socket and no pyroute2 import, for ``status``'s drift check)."""
    return link_index(ifname) is not None


def link_kind(ifname: str) -> str | None:
    """A link's kind (``bridge``, ``veth``, ...), "" for a physical one, None if absent
    (then known without pyroute2)."""
    if link_index(ifname) is None:
        return None
    with _iproute() as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            return None
        info = ipr.get_links(found[0])[0].get_attr("IFLA_LINKINFO")
        return str(info.get_attr("IFLA_INFO_KIND") or "") if info is not None else ""


def link_index(ifname: str) -> int | None:
    """A link's index in this process's namespace, None if there is none."""
    try:
        return socket.if_nametoindex(ifname)
    except OSError:
        return None


def delete_link_if_unused(ifname: str) -> None:
    """Delete a bridge once nothing is attached to it (something foreign may be)."""
    with _iproute() as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            return
        ports = [link for link in ipr.get_links() if link.get_attr("IFLA_MASTER") == found[0]]
        if not ports:
            ipr.link("del", index=found[0])


def default_route_interface() -> str | None:
    """The interface of the IPv4 default route (lowest metric), if there is one."""
    with _iproute() as ipr:
        names = _ifnames(ipr)
        best: tuple[int, str] | None = None
        for route in ipr.get_routes(family=socket.AF_INET, table=254):
            if route["dst_len"] != 0 or route.get_attr("RTA_OIF") is None:
                continue
            metric = route.get_attr("RTA_PRIORITY") or 0
            name = names.get(route.get_attr("RTA_OIF"), "")
            if best is None or metric < best[0]:
                best = (metric, name)
        return best[1] if best else None


def addresses() -> list[HostAddress]:
    with _iproute() as ipr:
        names = _ifnames(ipr)
        return [HostAddress(names.get(a["index"], ""), ipaddress.IPv4Interface(
                    f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"))
                for a in ipr.get_addr(family=socket.AF_INET)]


def local_addresses() -> list[str]:
    """Every address of this namespace, IPv4 and IPv6 (link-local IPv6 left out: a Host
    header cannot name its zone), as text; read from the kernel, never from DNS."""
    with _iproute() as ipr:
        found = [str(a.get_attr("IFA_ADDRESS")) for a in ipr.get_addr()]
    return [a for a in found if a and not ipaddress.ip_address(a).is_link_local]


def routes() -> list[HostRoute]:
    """IPv4 routes of the main table, default route excluded."""
    with _iproute() as ipr:
        names = _ifnames(ipr)
        found = []
        for route in ipr.get_routes(family=socket.AF_INET, table=254):
            if route["dst_len"] == 0:
                continue
            dst = route.get_attr("RTA_DST")
            found.append(HostRoute(names.get(route.get_attr("RTA_OIF"), ""),
                                   ipaddress.IPv4Network(f"{dst}/{route['dst_len']}",
                                                         strict=False)))
        return found


def networks6() -> list[tuple[str, ipaddress.IPv6Network]]:
    """The IPv6 networks of this namespace's addresses and main-table routes, with their
    interface names (link-local, multicast and the default route left out)."""
    with _iproute() as ipr:
        names = _ifnames(ipr)
        found = [(names.get(a["index"], ""), ipaddress.IPv6Network(
            f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}", strict=False))
            for a in ipr.get_addr(family=socket.AF_INET6)]
        for route in ipr.get_routes(family=socket.AF_INET6, table=254):
            dst = route.get_attr("RTA_DST")
            if route["dst_len"] and dst:
                found.append((names.get(route.get_attr("RTA_OIF"), ""),
                              ipaddress.IPv6Network(f"{dst}/{route['dst_len']}",
                                                    strict=False)))
    return [(n, net) for n, net in found if not net.is_link_local and not net.is_multicast]


IPV6_DISABLED = Path("/proc/sys/net/ipv6/conf/all/disable_ipv6")


def ipv6_enabled() -> bool:
    """Whether this namespace has IPv6: the kernel has it and it is not turned off."""
    try:
        return IPV6_DISABLED.read_text().strip() == "0"
    except OSError:
        return False


def has_global_ipv6_route() -> bool:
    """Whether this namespace has an IPv6 default route (then ``doctor`` suggests
    ``subnet6``)."""
    with contextlib.suppress(Exception), _iproute() as ipr:
        return any(r["dst_len"] == 0 for r in ipr.get_routes(family=socket.AF_INET6,
                                                             table=254))
    return False


def global_ipv6_of(pid: int, ifname: str = "eth0") -> str:
    """The global IPv6 address of ``ifname`` in process ``pid``'s namespace ("" if none
    yet), asked with ``nsenter ... ip -j`` like :func:`host_veth_of`."""
    result = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-j", "-6",
                             "addr", "show", "dev", ifname, "scope", "global"],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return ""
    for link in json.loads(result.stdout or "[]"):
        for info in link.get("addr_info", []):
            if info.get("family") == "inet6" and info.get("local"):
                return str(info["local"])
    return ""


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
    with _iproute() as ipr:
        match = ipr.get_links(peer)
        return str(match[0].get_attr("IFLA_IFNAME")) if match else None


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
