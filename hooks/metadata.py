"""Cloud instance metadata: what ColdFront must not reach, the rules that keep it away in
each network mode, and the EC2 check behind ``doctor``'s warning.

Shared by the ``bridge`` and ``override`` hooks. Blocked are exactly the credential
endpoints, never ``169.254.0.0/16`` as a whole: AWS serves DNS (169.254.169.253) and time
(169.254.169.123) from that range too.
"""

from __future__ import annotations

from pathlib import Path

from coldfront_launch.config import seams
from coldfront_launch.linux.netfilter import Chain, Jump, Ruleset, chain_tag
from coldfront_launch.types import Problem

# AWS, GCP and Azure IMDS; AWS ECS/container credentials.
METADATA_V4 = ("169.254.169.254", "169.254.170.2")
# AWS's IPv6 IMDS. Blocked under override when the kernel has IPv6, and in bridge mode
# when the network has IPv6 (``subnet6``; without it the instance has no route there).
METADATA_V6 = ("fd00:ec2::254",)
IF_INET6 = Path("/proc/net/if_inet6")  # present when the kernel has IPv6

DMI_DIR = Path("/sys/class/dmi/id")
DMI_ENV = "CF_LAUNCH_DMI_DIR"  # test seam: a folder with sys_vendor / board_asset_tag files


def forward_drops(source: str, bridge: str, note: str,
                  family: str = "ipv4") -> tuple[str, ...]:
    """Bridge mode: FORWARD rules dropping the instance's packets to the metadata addresses
    (of ``family``)."""
    addresses, prefix = (METADATA_V6, 128) if family == "ipv6" else (METADATA_V4, 32)
    return tuple(f"-i {bridge} -s {source} -d {addr}/{prefix} {note} -j DROP"
                 for addr in addresses)


def owner_chain_name(instance: str) -> str:
    return f"CF-LAUNCH-{chain_tag(instance)}-META"


def owner_ruleset(instance: str, uid: int, family: str = "ipv4") -> Ruleset:
    """Override mode: on the shared namespace's OUTPUT path, reject the service user's
    packets to the metadata addresses; every other process (root, the host's) passes."""
    name = owner_chain_name(instance)
    note = f"-m comment --comment cf-launch:{instance}"
    v6 = family == "ipv6"
    addresses, prefix = (METADATA_V6, 128) if v6 else (METADATA_V4, 32)
    reject = "icmp6-port-unreachable" if v6 else "icmp-port-unreachable"
    rules = tuple(f"-d {addr}/{prefix} -m owner --uid-owner {uid} {note} "
                  f"-j REJECT --reject-with {reject}" for addr in addresses)
    return Ruleset((Chain("filter", name, rules),),
                   (Jump("filter", "OUTPUT", f"{note} -j {name}"),), family)


def ipv6_present() -> bool:
    """Whether the kernel has IPv6 (then the override rule gets an ip6tables twin)."""
    return IF_INET6.exists()


def _dmi(name: str) -> str:
    folder = Path(seams.seam(DMI_ENV) or DMI_DIR)
    try:
        return (folder / name).read_text().strip()
    except OSError:
        return ""


def on_ec2() -> bool:
    """Whether this host is an EC2 instance, from DMI alone (never the network)."""
    return _dmi("sys_vendor") == "Amazon EC2" or _dmi("board_asset_tag").startswith("i-")


def ec2_warning(hook: str, allowed: bool) -> list[Problem]:
    """doctor/preflight: a non-fatal warning when metadata is allowed on EC2."""
    if not allowed or not on_ec2():
        return []
    return [Problem("metadata", f"this host is an EC2 instance and hook.{hook}.allow_metadata "
                    "is true: ColdFront can fetch the host role's credentials from "
                    "169.254.169.254", f"set hook.{hook}.allow_metadata = false unless "
                    "ColdFront must reach the instance metadata service", fatal=False)]

