"""``[hook.bridge]`` settings, validated before anything changes."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from coldfront_launch.config import validate as v
from coldfront_launch.config.validate import PortMap
from coldfront_launch.errors import ConfigError
from coldfront_launch.linux import netinfo
from coldfront_launch.types import LaunchContext

NAME = "bridge"
KEYS = {"network", "bridge", "subnet", "ip", "ports", "external_interface", "mtu",
        "cni_config_dir", "offloads", "allow_metadata"}


@dataclass(frozen=True)
class BridgeSettings:
    network: str = "cf-launch"
    bridge: str = "sbr0"
    subnet: ipaddress.IPv4Network = ipaddress.IPv4Network("10.22.0.0/16")
    ip: ipaddress.IPv4Address | None = None
    ports: tuple[PortMap, ...] = (PortMap(80, 80), PortMap(443, 443))
    external_interface: str = ""
    mtu: int = 1500
    cni_config_dir: str = ""
    offloads: bool = True
    allow_metadata: bool = False

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.subnet.network_address + 1


def parse(ctx: LaunchContext) -> BridgeSettings:
    raw: dict[str, Any] = ctx.section(NAME)
    v.no_unknown_keys(f"hook.{NAME}", raw, KEYS)
    d = BridgeSettings()
    key = f"hook.{NAME}"
    ports = v.port_maps(f"{key}.ports", raw.get("ports", [80, 443]))
    subnet = v.cidr(f"{key}.subnet", raw.get("subnet", str(d.subnet)))
    if subnet.prefixlen > 29:
        raise ConfigError(f"{key}.subnet", f"{subnet} is too small", "use /29 or larger")
    ip = v.ipv4(f"{key}.ip", raw["ip"]) if raw.get("ip", "") != "" else None
    if ip is not None:
        if ip not in subnet:
            raise ConfigError(f"{key}.ip", f"{ip} is not inside {subnet}")
        if ip in (subnet.network_address, subnet.broadcast_address, subnet.network_address + 1):
            raise ConfigError(f"{key}.ip", f"{ip} is the network, broadcast or gateway address")
    mtu = v.whole_number(f"{key}.mtu", raw.get("mtu", d.mtu), 576, 9216)
    network = raw.get("network", d.network)
    if not isinstance(network, str) or not v.INSTANCE_NAME.fullmatch(network):
        raise ConfigError(f"{key}.network", f"{network!r} is not a valid CNI network name",
                          "letters, digits, '_', '.' and '-', starting with a letter or digit")
    ext = raw.get("external_interface", "")
    cni_dir = raw.get("cni_config_dir", "")
    return BridgeSettings(
        network=network,
        bridge=_bridge_name(f"{key}.bridge", raw.get("bridge", d.bridge)),
        subnet=subnet,
        ip=ip,
        ports=ports,
        external_interface=v.interface_name(f"{key}.external_interface", ext) if ext else "",
        mtu=mtu,
        cni_config_dir=str(v.path(f"{key}.cni_config_dir", cni_dir, kind="dir"))
        if cni_dir != "" else "",
        offloads=v.boolean(f"{key}.offloads", raw.get("offloads", d.offloads)),
        allow_metadata=v.boolean(f"{key}.allow_metadata",
                                 raw.get("allow_metadata", d.allow_metadata)),
    )


def _bridge_name(setting: str, value: Any) -> str:
    """A valid interface name that is not an existing interface of another kind: the
    hook turns offloads off on the bridge, and must never do so on the host's own NIC."""
    name = v.interface_name(setting, value)
    kind = netinfo.link_kind(name)
    if kind not in (None, "bridge"):
        raise ConfigError(setting, f"{name} is an existing {kind or 'network'} interface, "
                          "not a bridge", "choose a name no interface has, e.g. sbr0")
    return name


