"""``[hook.bridge]`` settings, validated before anything changes."""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from typing import Any

from coldfront_launch import validate as v
from coldfront_launch.errors import ConfigError
from coldfront_launch.types import LaunchContext

NAME = "bridge"
KEYS = {"network", "bridge", "subnet", "ip", "ports", "external_interface", "mtu",
        "cni_config_dir", "offloads", "allow_metadata"}


@dataclass(frozen=True)
class PortMap:
    host: int
    container: int


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


def _port_map(setting: str, value: Any) -> PortMap:
    """``80`` (same port both sides) or ``"8080:80"`` (host:container)."""
    if isinstance(value, str) and ":" in value:
        host, _, container = value.partition(":")
        if not (host.isdigit() and container.isdigit()):
            raise ConfigError(setting, f"{value!r} is not HOST:CONTAINER", "e.g. \"8080:80\"")
        return PortMap(v.port(setting, int(host)), v.port(setting, int(container)))
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    port = v.port(setting, value)
    return PortMap(port, port)


def parse(ctx: LaunchContext) -> BridgeSettings:
    raw: dict[str, Any] = ctx.section(NAME)
    v.no_unknown_keys(f"hook.{NAME}", raw, KEYS)
    d = BridgeSettings()
    key = f"hook.{NAME}"
    raw_ports = raw.get("ports", [80, 443])
    if not isinstance(raw_ports, list) or not raw_ports:
        raise ConfigError(f"{key}.ports", f"{raw_ports!r} is not a list of ports", "e.g. [80, 443]")
    ports = tuple(_port_map(f"{key}.ports[{i}]", p) for i, p in enumerate(raw_ports))
    if len({p.host for p in ports}) != len(ports):
        raise ConfigError(f"{key}.ports", "a host port is listed twice")
    subnet = v.cidr(f"{key}.subnet", raw.get("subnet", str(d.subnet)))
    if subnet.prefixlen > 29:
        raise ConfigError(f"{key}.subnet", f"{subnet} is too small", "use /29 or larger")
    ip = v.ipv4(f"{key}.ip", raw["ip"]) if raw.get("ip") else None
    if ip is not None:
        if ip not in subnet:
            raise ConfigError(f"{key}.ip", f"{ip} is not inside {subnet}")
        if ip in (subnet.network_address, subnet.broadcast_address, subnet.network_address + 1):
            raise ConfigError(f"{key}.ip", f"{ip} is the network, broadcast or gateway address")
    mtu = raw.get("mtu", d.mtu)
    if isinstance(mtu, bool) or not isinstance(mtu, int) or not 576 <= mtu <= 9216:
        raise ConfigError(f"{key}.mtu", f"{mtu!r} is not an MTU between 576 and 9216")
    network = raw.get("network", d.network)
    if not isinstance(network, str) or not v.INSTANCE_NAME.match(network):
        raise ConfigError(f"{key}.network", f"{network!r} is not a valid CNI network name")
    ext = raw.get("external_interface", "")
    return BridgeSettings(
        network=network,
        bridge=v.interface_name(f"{key}.bridge", raw.get("bridge", d.bridge)),
        subnet=subnet,
        ip=ip,
        ports=ports,
        external_interface=v.interface_name(f"{key}.external_interface", ext) if ext else "",
        mtu=mtu,
        cni_config_dir=str(v.path(f"{key}.cni_config_dir", raw["cni_config_dir"]))
        if raw.get("cni_config_dir") else "",
        offloads=v.boolean(f"{key}.offloads", raw.get("offloads", d.offloads)),
        allow_metadata=v.boolean(f"{key}.allow_metadata",
                                 raw.get("allow_metadata", d.allow_metadata)),
    )


def chain_tag(instance: str) -> str:
    """A short, stable tag for an instance's chain names (iptables allows 28 characters)."""
    return hashlib.sha256(instance.encode()).hexdigest()[:6].upper()
