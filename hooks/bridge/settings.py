"""``[hook.bridge]`` settings, validated before anything changes."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from typing import Any

from coldfront_launch.config import validate as v
from coldfront_launch.config.validate import PortMap
from coldfront_launch.errors import ConfigError
from coldfront_launch.hooks.bridge import cni, subnets
from coldfront_launch.linux import netinfo
from coldfront_launch.types import LaunchContext

NAME = "bridge"
KEYS = {"network", "bridge", "subnet", "subnet6", "ip", "ports", "external_interface", "mtu",
        "cni_config_dir", "offloads", "allow_metadata"}


DEFAULT_BRIDGE = "cflaunch0"  # not Apptainer's sbr0: its default network is another pool


@dataclass(frozen=True)
class BridgeSettings:
    """``subnet_chosen``: the subnet came from the setting (``False``: recorded, or picked
    by :mod:`~coldfront_launch.hooks.bridge.subnets` and recorded at the first start)."""

    network: str = "cf-launch"
    bridge: str = DEFAULT_BRIDGE
    subnet: ipaddress.IPv4Network = ipaddress.IPv4Network("192.168.224.0/24")
    ip: ipaddress.IPv4Address | None = None
    ports: tuple[PortMap, ...] = (PortMap(80, 80), PortMap(443, 443))
    external_interface: str = ""
    mtu: int = 1500
    cni_config_dir: str = ""
    offloads: bool = True
    allow_metadata: bool = False
    subnet_chosen: bool = True
    #: IPv6 beside IPv4 (None: IPv4 only, the default)
    subnet6: ipaddress.IPv6Network | None = None

    @property
    def gateway6(self) -> ipaddress.IPv6Address | None:
        return self.subnet6.network_address + 1 if self.subnet6 is not None else None

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.subnet.network_address + 1


def parse(ctx: LaunchContext) -> BridgeSettings:
    raw: dict[str, Any] = ctx.section(NAME)
    v.no_unknown_keys(f"hook.{NAME}", raw, KEYS)
    d = BridgeSettings()
    key = f"hook.{NAME}"
    ports = parse_ports(ctx)
    network = raw.get("network", d.network)
    if not isinstance(network, str) or not v.INSTANCE_NAME.fullmatch(network):
        raise ConfigError(f"{key}.network", f"{network!r} is not a valid CNI network name",
                          "letters, digits, '_', '.' and '-', starting with a letter or digit")
    ext = raw.get("external_interface", "")
    cni_dir = raw.get("cni_config_dir", "")
    given = BridgeSettings(
        network=network,
        bridge=_bridge_name(f"{key}.bridge", raw.get("bridge", d.bridge)),
        ports=ports,
        external_interface=v.interface_name(f"{key}.external_interface", ext) if ext else "",
        mtu=v.whole_number(f"{key}.mtu", raw.get("mtu", d.mtu), 576, 9216),
        cni_config_dir=str(v.path(f"{key}.cni_config_dir", cni_dir, kind="dir"))
        if cni_dir != "" else "",
        offloads=v.boolean(f"{key}.offloads", raw.get("offloads", d.offloads)),
        allow_metadata=v.boolean(f"{key}.allow_metadata",
                                 raw.get("allow_metadata", d.allow_metadata)),
        subnet6=v.cidr6(f"{key}.subnet6", raw["subnet6"]) if raw.get("subnet6", "") != ""
        else None,
    )
    if raw.get("subnet", "") == "":
        if raw.get("ip", "") != "":
            raise ConfigError(f"{key}.ip", "a fixed address needs a fixed subnet",
                              f"set {key}.subnet too (without it, the subnet is picked per "
                              "host)")
        return replace(given, subnet=_default_subnet(ctx, given), subnet_chosen=False)
    subnet = v.cidr(f"{key}.subnet", raw["subnet"])
    if subnet.prefixlen > 29:
        raise ConfigError(f"{key}.subnet", f"{subnet} is too small", "use /29 or larger")
    ip = v.ipv4(f"{key}.ip", raw["ip"]) if raw.get("ip", "") != "" else None
    if ip is not None:
        if ip not in subnet:
            raise ConfigError(f"{key}.ip", f"{ip} is not inside {subnet}")
        if ip in (subnet.network_address, subnet.broadcast_address, subnet.network_address + 1):
            raise ConfigError(f"{key}.ip", f"{ip} is the network, broadcast or gateway address")
    return replace(given, subnet=subnet, ip=ip)


def parse_ports(ctx: LaunchContext) -> tuple[PortMap, ...]:
    """Only ``ports``: what the readiness check needs, without picking a subnet."""
    return v.port_maps(f"hook.{NAME}.ports", ctx.section(NAME).get("ports", [80, 443]))


def _default_subnet(ctx: LaunchContext, given: BridgeSettings) -> ipaddress.IPv4Network:
    return subnets.default(ctx.settings.state_root, given.network, given.bridge,
                           cni.config_dir(given), cni.conflist_path(given))


def _bridge_name(setting: str, value: Any) -> str:
    """A valid interface name that is not an existing interface of another kind: the
    hook turns offloads off on the bridge, and must never do so on the host's own NIC."""
    name = v.interface_name(setting, value)
    kind = netinfo.link_kind(name)
    if kind not in (None, "bridge"):
        raise ConfigError(setting, f"{name} is an existing {kind or 'network'} interface, "
                          "not a bridge", f"choose a name no interface has, e.g. {DEFAULT_BRIDGE}")
    return name


