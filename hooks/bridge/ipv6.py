"""IPv6 beside IPv4 on the bridge network (``[hook.bridge] subnet6``): the checks, the
host's forwarding, and the instance's ip6tables ruleset, the IPv4 ruleset's twin.

With ``subnet6`` the CNI network gets a range of each family, the instance an address from
each, and the forwarded ports work over both. The subnet is a unique local one (not
routed), so the instance's outbound IPv6 is masqueraded like its IPv4. Turning IPv6
forwarding on makes Linux ignore router advertisements on interfaces whose ``accept_ra``
is 1, which would drop a host's SLAAC default route (EC2's among them): the external
interface's ``accept_ra`` is raised to 2 while forwarding is on, and both are put back by
the last instance to stop."""

from __future__ import annotations

import ipaddress
import shutil
import time

from coldfront_launch.changes.host import HostChanges
from coldfront_launch.errors import HostChangeError
from coldfront_launch.hooks.bridge import rules as bridge_rules
from coldfront_launch.hooks.bridge.settings import NAME, BridgeSettings
from coldfront_launch.linux import distro, netinfo, sysctl
from coldfront_launch.types import InstanceInfo, LaunchContext, Problem

PLACEHOLDER_IP6 = "<instance-ip6>"
FORWARDING = "net.ipv6.conf.all.forwarding"
ADDRESS_WAIT = 5.0  # seconds for the instance's IPv6 address to show (DAD, CNI's setup)


def preflight(s: BridgeSettings) -> list[Problem]:
    """With ``subnet6``: the namespace has IPv6, and the subnet overlaps nothing of the
    host's. Without: a hint when the host has an IPv6 default route."""
    if s.subnet6 is None:
        if netinfo.ipv6_enabled() and netinfo.has_global_ipv6_route():
            return [Problem("ipv6", "this host has IPv6 (a default route), the bridge "
                            "network IPv4 only: clients reach ColdFront over IPv4 alone",
                            f'set hook.{NAME}.subnet6, e.g. "fd42:cf:1::/64" (a unique '
                            "local range): ports are then forwarded over IPv6 too",
                            fatal=False)]
        return []
    if shutil.which("ip6tables") is None:
        return [Problem("ip6tables", "ip6tables is not installed (hook.bridge.subnet6 needs "
                        "it)", distro.install_hint("iptables"))]
    if not netinfo.ipv6_enabled():
        return [Problem("ipv6", f"hook.{NAME}.subnet6 is set, but IPv6 is turned off "
                        "here (net.ipv6.conf.all.disable_ipv6 = 1, or no IPv6 in the "
                        "kernel)", f"remove hook.{NAME}.subnet6, or turn IPv6 on")]
    return [Problem("subnet6", f"{s.subnet6} overlaps {network} on {ifname or 'the host'}",
                    f"choose another hook.{NAME}.subnet6")
            for ifname, network in netinfo.networks6()
            if ifname != s.bridge and network.overlaps(s.subnet6)]


def pre_start(s: BridgeSettings, host: HostChanges, external: str) -> None:
    """IPv6 forwarding on, router advertisements still heard on the external interface."""
    if s.subnet6 is None:
        return
    host.set_sysctl(FORWARDING, "1")
    if sysctl.read_or_empty(f"net.ipv6.conf.{external}.accept_ra") == "1":
        host.set_sysctl(f"net.ipv6.conf.{external}.accept_ra", "2")


def post_start(ctx: LaunchContext, s: BridgeSettings, host: HostChanges,
               instance: InstanceInfo, external: str) -> str:
    """The instance's ip6tables ruleset; returns its IPv6 address ("" without subnet6)."""
    if s.subnet6 is None:
        return ""
    ip6 = PLACEHOLDER_IP6 if ctx.planning else address_of(instance, s)
    ruleset = bridge_rules.ruleset(ctx.settings.name, s, ip6, external, "ipv6")
    host.apply_firewall(f"{NAME}:{ctx.settings.name}:ipv6", ruleset)
    return ip6


def address_of(instance: InstanceInfo, s: BridgeSettings) -> str:
    """The instance's address in ``subnet6``, waited for (a few seconds at most)."""
    deadline = time.monotonic() + ADDRESS_WAIT
    while True:
        found = netinfo.global_ipv6_of(instance.pid)
        if found and s.subnet6 is not None and ipaddress.IPv6Address(found) in s.subnet6:
            return found
        if time.monotonic() >= deadline:
            raise HostChangeError(
                f"instance {instance.name} has no IPv6 address in {s.subnet6}"
                + (f" (it has {found})" if found else ""),
                f"check that {s.network}'s conflist has both ranges (`cf-launch plan`), "
                "and the instance's log: `cf-launch logs`")
        time.sleep(0.1)
