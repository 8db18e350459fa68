"""The ``bridge`` hook: a CNI bridge, and a host firewall that cf-launch owns.

The instance gets its own network namespace on bridge ``cflaunch0``, in a /24 picked from a
private pool that nothing on the host uses (:mod:`~coldfront_launch.hooks.bridge.subnets`;
recorded at the first start and kept). The host
forwards ports 80 and 443 to it (DNAT, also for clients on the host itself), masquerades its
outbound traffic (but drops what goes to the cloud's instance metadata service, see
:mod:`coldfront_launch.hooks.metadata`), clamps TCP MSS, and turns checksum/segmentation
offloads off on the bridge and the instance's veth. Every rule lives in chains of the
instance's own, reached by one jump each, and ``stop`` removes exactly those.

Settings, ``[hook.bridge]``::

    network = "cf-launch"        # CNI network name
    bridge = "cflaunch0"         # at most 15 characters
    subnet = ""                  # e.g. "192.168.77.0/24"; default: picked, then recorded
    subnet6 = ""                 # e.g. "fd42:cf:1::/64": IPv6 too (default: IPv4 only)
    ip = ""                      # fixed address inside subnet (needs subnet; default: IPAM)
    ports = [80, 443]            # or "HOST:CONTAINER", e.g. "8080:80"
    external_interface = ""      # default: the interface of the default route
    mtu = 1500
    cni_config_dir = ""          # default: from apptainer.conf
    offloads = true              # turn tx checksum / TSO / GSO off
    allow_metadata = false       # true lets it reach 169.254.169.254, .170.2, fd00:ec2::254
"""

from __future__ import annotations

import ipaddress
import shutil
from dataclasses import replace
from pathlib import Path

from coldfront_launch import apptainer
from coldfront_launch.changes.host import HostChanges
from coldfront_launch.config import validate as v
from coldfront_launch.errors import HostChangeError, PreflightError
from coldfront_launch.hooks import metadata
from coldfront_launch.hooks.bridge import cni as bridge_cni
from coldfront_launch.hooks.bridge import ipv6, subnets
from coldfront_launch.hooks.bridge import leases as bridge_leases
from coldfront_launch.hooks.bridge import neighbours as bridge_neighbours
from coldfront_launch.hooks.bridge import rules as bridge_rules
from coldfront_launch.hooks.bridge.settings import NAME, BridgeSettings, parse, parse_ports
from coldfront_launch.linux import distro, netfilter, netinfo, sysctl
from coldfront_launch.plugins.spec import hookimpl
from coldfront_launch.types import PLACEHOLDER_IP, Endpoint, InstanceInfo, LaunchContext, Problem

CONFLICTS = ("override",)
OFFLOADS_OFF = {"tx-checksumming": False, "tcp-segmentation-offload": False,
                "generic-segmentation-offload": False}
PLACEHOLDER_VETH = "<instance-veth>"
CNI_LEASES = Path("/var/lib/cni/networks")  # host-local IPAM: one file per leased address


def external_interface(settings: BridgeSettings) -> str:
    """The configured external interface, else the default route's."""
    if settings.external_interface:
        return settings.external_interface
    found = netinfo.default_route_interface()
    if not found:
        raise PreflightError("the host has no IPv4 default route, so the external interface "
                             "is unknown",
                             f"set hook.{NAME}.external_interface in the settings")
    return found


@hookimpl
def cf_launch_validate(ctx: LaunchContext) -> None:
    v.one_network_hook(ctx.hooks, NAME, CONFLICTS)
    parse(ctx)


def _overlaps(settings: BridgeSettings) -> list[str]:
    clashes = []
    for addr in netinfo.addresses():
        if addr.ifname != settings.bridge and addr.network.network.overlaps(settings.subnet):
            clashes.append(f"address {addr.network} on {addr.ifname}")
    for route in netinfo.routes():
        if route.ifname != settings.bridge and route.dst.overlaps(settings.subnet):
            clashes.append(f"route {route.dst} via {route.ifname}")
    return clashes


def _ip_in_use(settings: BridgeSettings, instance: str) -> str:
    if settings.ip is None:
        return ""
    for other in apptainer.list_instances():
        if other.name != instance and other.ip.split("/")[0] == str(settings.ip):
            return f"instance {other.name}"
    lease = CNI_LEASES / settings.network / str(settings.ip)
    return f"a CNI lease ({lease})" if lease.exists() and lease not in stale_leases(settings) \
        else ""


def stale_leases(settings: BridgeSettings) -> list[Path]:
    """This network's IPAM leases from before the current boot: their containers are gone
    (host-local IPAM keeps them on disk across a reboot). Other networks' are left alone."""
    folder = CNI_LEASES / settings.network
    booted = netinfo.boot_time()
    found = []
    for lease in sorted(folder.glob("*")) if folder.is_dir() and booted else []:
        try:
            ipaddress.ip_address(lease.name)
            if lease.is_file() and lease.stat().st_mtime < booted:
                found.append(lease)
        except (ValueError, OSError):
            continue  # last_reserved_ip.0, lock: IPAM's own files
    return found


@hookimpl
def cf_launch_preflight(ctx: LaunchContext) -> list[Problem]:
    s = parse(ctx)
    problems: list[Problem] = []
    for tool in ("iptables", "ethtool"):
        if shutil.which(tool) is None:
            problems.append(Problem(tool, f"{tool} is not installed", distro.install_hint(tool)))
    if shutil.which("iptables") and netfilter.is_nft_backend() and not netfilter.nft_available():
        problems.append(Problem("nft", "iptables uses nf_tables but the nft tool is missing: "
                                "empty tables and built-in chains cf-launch's rules create "
                                "cannot be removed on stop", distro.install_hint("nft"),
                                fatal=False))
    if not s.external_interface and not netinfo.default_route_interface():
        problems.append(Problem("external interface", "the host has no IPv4 default route",
                                f"set hook.{NAME}.external_interface"))
    elif s.external_interface and not netinfo.link_exists(s.external_interface):
        problems.append(Problem("external interface", f"{s.external_interface} does not exist",
                                f"fix hook.{NAME}.external_interface"))
    for clash in _overlaps(s):
        problems.append(Problem("subnet", f"{s.subnet} overlaps {clash} on the host",
                                f"choose another hook.{NAME}.subnet" if s.subnet_chosen else
                                f"set hook.{NAME}.subnet, or remove network {s.network} from "
                                f"{subnets.record_path(ctx.settings.state_root)} (recorded "
                                "at its first start) to pick anew"))
    problems += ipv6.preflight(s)
    problems += bridge_neighbours.strict_forward_ports()
    if shutil.which("iptables-save"):
        saved = netfilter.save()
        problems += bridge_neighbours.docker_forward_drop(saved)
        taken = bridge_rules.forwarded_ports(saved)
        for port in s.ports:
            owner = taken.get(port.host)
            if owner and owner != ctx.settings.name:
                problems.append(Problem("ports", f"host port {port.host} is already forwarded "
                                        f"to cf-launch instance {owner}",
                                        f"give this instance other hook.{NAME}.ports"))
    used_by = _ip_in_use(s, ctx.settings.name)
    if used_by:
        problems.append(Problem("ip", f"{s.ip} is already used by {used_by}",
                                f"choose another hook.{NAME}.ip"))
    for path, why in bridge_cni.sharing_networks(s):
        problems.append(Problem("cni", f"{path} {why}: containers on both networks can get "
                                "the same address", f"give hook.{NAME}.bridge and subnet "
                                "values of their own", fatal=False))
    for path in bridge_cni.foreign_definitions(s):
        problems.append(Problem("cni", f"{path} already defines a network named {s.network}",
                                f"set another hook.{NAME}.network"))
    plugins = bridge_cni.plugin_dir()
    for plugin in ("bridge", "host-local"):
        if not (plugins / plugin).exists():
            problems.append(Problem("cni", f"the CNI plugin {plugins / plugin} is missing",
                                    distro.install_hint("cni")))
    return problems + metadata.ec2_warning(NAME, s.allow_metadata)


@hookimpl
def cf_launch_start_options(ctx: LaunchContext) -> list[str]:
    s = parse(ctx)
    options = ["--net", "--network", s.network]
    if s.ip is not None:
        options += ["--network-args", f"IP={s.ip}"]
    return options


@hookimpl
def cf_launch_pre_start(ctx: LaunchContext, host: HostChanges) -> None:
    s = parse(ctx)
    if not s.subnet_chosen and not ctx.planning:  # kept from now on (another may be first)
        s = replace(s, subnet=subnets.record(ctx.settings.state_root, s.network, s.subnet))
    external = external_interface(s)
    for lease in stale_leases(s):  # left by an instance that a reboot took away
        lease.unlink(missing_ok=True)
    if not ctx.planning:
        bridge_leases.release(ctx.state_dir)  # left by this instance when it died
    host.share_file(bridge_cni.conflist_path(s), bridge_cni.conflist(s))
    host.set_sysctl("net.ipv4.ip_forward", "1")
    ipv6.pre_start(s, host, external)
    # Loose mode (2) wins over strict (1): the kernel uses the maximum. Claim it when
    # filtering is strict anywhere that matters, or already loose (maybe by another
    # instance, whose stop must then not put strict back while this one runs).
    if _rp_filter("all") == "2" or any(_rp_filter(k) == "1"
                                       for k in ("all", "default", external)):
        host.set_sysctl("net.ipv4.conf.all.rp_filter", "2")
    host.claim_link(s.bridge)


def _rp_filter(name: str) -> str:
    return sysctl.read_or_empty(f"net.ipv4.conf.{name}.rp_filter")


def instance_ip(instance: InstanceInfo) -> str:
    ip = instance.ip.split("/")[0]
    if ip and ip != PLACEHOLDER_IP:
        ipaddress.IPv4Address(ip)
    return ip


@hookimpl
def cf_launch_check_instance(ctx: LaunchContext, instance: InstanceInfo) -> list[Problem]:
    """``attach``: the instance has an address in this network (``--net --network``)."""
    s = parse(ctx)
    address = instance.ip.split("/")[0]
    hint = f"its start needs: --net --network {s.network}" + \
        (f" --network-args IP={s.ip}" if s.ip else "")
    try:
        ip = ipaddress.IPv4Address(address) if address else None
    except ValueError:
        ip = None
    if ip is None:
        return [Problem("network", f"{instance.name} has no IPv4 address on a CNI network",
                        hint)]
    # Apptainer's default network may share the subnet: the lease tells the networks apart.
    lease = CNI_LEASES / s.network / str(ip)
    if ip not in s.subnet or (s.ip is not None and ip != s.ip) or not lease.exists():
        return [Problem("network", f"{instance.name} has {ip}, not an address of network "
                        f"{s.network} ({s.ip or s.subnet}; no lease {lease})", hint)]
    return []


@hookimpl
def cf_launch_post_start(ctx: LaunchContext, host: HostChanges, instance: InstanceInfo) -> None:
    s = parse(ctx)
    ip = instance_ip(instance)
    if not ip:
        raise HostChangeError(f"instance {instance.name} has no IP address on {s.network}",
                              "check the instance's log: `cf-launch logs`")
    external = external_interface(s)
    ruleset = bridge_rules.ruleset(ctx.settings.name, s, ip, external)
    host.apply_firewall(f"{NAME}:{ctx.settings.name}", ruleset)
    ip6 = ipv6.post_start(ctx, s, host, instance, external)
    if ip6 and not ctx.planning:  # released after a crash too, like the IPv4 lease
        bridge_leases.note(ctx.state_dir, CNI_LEASES / s.network / ip6)
    if not ctx.planning:
        bridge_leases.note(ctx.state_dir, CNI_LEASES / s.network / ip)
    if not s.offloads:
        return
    veth = PLACEHOLDER_VETH if ctx.planning else netinfo.host_veth_of(instance.pid)
    if not veth:
        raise HostChangeError(f"cannot find the host side of {instance.name}'s veth")
    host.set_offloads(s.bridge, OFFLOADS_OFF, shared=True)
    host.set_offloads(veth, OFFLOADS_OFF)
    if not ctx.planning:
        for link in (s.bridge, veth):
            still_on = [k for k, on in netinfo.read_offloads(link).items()
                        if k in OFFLOADS_OFF and on]
            if still_on:
                raise HostChangeError(f"offloads still on for {link}: {', '.join(still_on)}")


@hookimpl
def cf_launch_post_stop(ctx: LaunchContext) -> None:
    # detach leaves the instance running: its lease is still in use then
    if apptainer.find(ctx.settings.name) is None:
        bridge_leases.release(ctx.state_dir)


@hookimpl
def cf_launch_readiness_endpoint(ctx: LaunchContext, instance: InstanceInfo) -> Endpoint | None:
    ports = parse_ports(ctx)  # not parse(): status needs no subnet (nor pyroute2 to pick one)
    ip = instance_ip(instance)
    container = next((p.container for p in ports if p.container == 80), ports[0].container)
    if ctx.section(NAME).get("subnet6") and instance.pid and not ctx.planning:
        return Endpoint(ip, container, fallback=netinfo.global_ipv6_of(instance.pid)) if ip \
            else None
    return Endpoint(ip, container) if ip else None
