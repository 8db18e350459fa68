"""The CNI network the bridge hook gives Apptainer: where it goes and what it says."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import TYPE_CHECKING

from coldfront_launch.apptainer import conf

if TYPE_CHECKING:  # settings asks this module where the network's file goes
    from coldfront_launch.hooks.bridge.settings import BridgeSettings

FALLBACK_DIRS = (Path("/usr/local/etc/apptainer/network"), Path("/etc/apptainer/network"))
DEFAULT_PLUGIN_DIRS = (Path("/usr/libexec/apptainer/cni"), Path("/usr/local/libexec/apptainer/cni"),
                       Path("/usr/lib/cni"), Path("/opt/cni/bin"))


def config_dir(settings: BridgeSettings) -> Path:
    """Apptainer's CNI configuration folder: setting, apptainer.conf, then the defaults."""
    if settings.cni_config_dir:
        return Path(settings.cni_config_dir)
    configured = conf.conf_value("cni configuration path")[0]
    if configured:
        return Path(configured)
    for folder in FALLBACK_DIRS:
        if folder.is_dir():
            return folder
    return FALLBACK_DIRS[-1]


def plugin_dir() -> Path:
    configured = conf.conf_value("cni plugin path")[0]
    if configured:
        return Path(configured)
    return next((d for d in DEFAULT_PLUGIN_DIRS if (d / "bridge").exists()), DEFAULT_PLUGIN_DIRS[0])


def conflist_path(settings: BridgeSettings) -> Path:
    return config_dir(settings) / f"50_{settings.network}.conflist"


def conflist(settings: BridgeSettings) -> str:
    """Bridge + host-local IPAM; masquerading is done by cf-launch's own chains."""
    return json.dumps({
        "cniVersion": "1.0.0",
        "name": settings.network,
        "plugins": [{
            "type": "bridge",
            "bridge": settings.bridge,
            "isGateway": True,
            "ipMasq": False,
            "mtu": settings.mtu,
            "ipam": ipam(settings),
        }],
    }, indent=2) + "\n"


def ipam(settings: BridgeSettings) -> dict[str, object]:
    """host-local IPAM: one IPv4 subnet, or with ``subnet6`` a range of each family (the
    instance gets an address from each) and a default route for both."""
    if settings.subnet6 is None:
        return {"type": "host-local", "subnet": str(settings.subnet),
                "gateway": str(settings.gateway), "routes": [{"dst": "0.0.0.0/0"}]}
    return {"type": "host-local",
            "ranges": [[{"subnet": str(settings.subnet), "gateway": str(settings.gateway)}],
                       [{"subnet": str(settings.subnet6),
                         "gateway": str(settings.gateway6)}]],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}


def foreign_definitions(settings: BridgeSettings) -> list[Path]:
    """Other conflists in the folder that define a network of the same name."""
    folder = config_dir(settings)
    ours = conflist_path(settings)
    found = []
    for path in sorted(folder.glob("*.conf*")) if folder.is_dir() else []:
        if path == ours:
            continue
        try:
            if json.loads(path.read_text()).get("name") == settings.network:
                found.append(path)
        except (OSError, ValueError):
            continue
    return found


def _bridges(conf: dict) -> list[dict]:  # type: ignore[type-arg]
    return [p for p in conf.get("plugins", [conf]) if p.get("type") == "bridge"]


def sharing_networks(settings: BridgeSettings) -> list[tuple[Path, str]]:
    """Other networks in the folder (Apptainer's default among them) on the same bridge or
    an overlapping subnet: their address pools are separate and can collide."""
    folder = config_dir(settings)
    found = []
    for path in sorted(folder.glob("*.conf*")) if folder.is_dir() else []:
        if path == conflist_path(settings):
            continue
        try:
            conf = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for plugin in _bridges(conf):
            subnet = plugin.get("ipam", {}).get("subnet", "")
            try:
                overlaps = bool(subnet) and ipaddress.IPv4Network(subnet, strict=False) \
                    .overlaps(settings.subnet)
            except ValueError:
                overlaps = False
            if plugin.get("bridge") == settings.bridge:
                found.append((path, f"uses the same bridge {settings.bridge}"))
            elif overlaps:
                found.append((path, f"uses the overlapping subnet {subnet}"))
    return found
