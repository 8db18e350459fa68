"""The ``override`` hook: the container joins the host's network namespace.

``apptainer instance start --netns-path <path>`` (default ``/proc/1/ns/net``) shares the
host's network. Override files, bound one by one, keep systemd-networkd, systemd-resolved
and NetworkManager from running, keep udev from renaming interfaces, and take
CAP_NET_ADMIN (and CAP_NET_RAW) from PID 1's bounding set. A chain of cf-launch's own on
the shared namespace's OUTPUT path rejects the ColdFront service user's packets to the
cloud's instance metadata service (see :mod:`.metadata`).

Settings, ``[hook.override]``::

    netns_path = "/proc/1/ns/net"   # the namespace to join
    ports = [80, 443]               # must be free there before start
    keep_net_raw = false            # true keeps CAP_NET_RAW (ping from services)
    disable_units = [...]           # units skipped inside (default: the network managers)
    allow_metadata = false          # true lets ColdFront reach 169.254.169.254 / .170.2
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from typing import Any

from coldfront_launch import apptainer
from coldfront_launch.changes.host import HostChanges
from coldfront_launch.config import validate as v
from coldfront_launch.errors import ConfigError
from coldfront_launch.hooks import metadata
from coldfront_launch.linux import netinfo
from coldfront_launch.linux.listeners import busy
from coldfront_launch.plugins.spec import hookimpl
from coldfront_launch.resources import read, render
from coldfront_launch.types import Bind, Endpoint, InstanceInfo, LaunchContext, Problem

NAME = "override"
DATA = "coldfront_launch.overrides"
MARKER = "/etc/cf-launch/host-network"
DROPIN = "cf-launch-host-network.conf"
DEFAULT_UNITS = (
    "systemd-networkd.service", "systemd-networkd.socket", "systemd-networkd-wait-online.service",
    "systemd-resolved.service", "NetworkManager.service", "NetworkManager-wait-online.service",
    "NetworkManager-dispatcher.service",
)
CONFLICTS = ("bridge",)
CAP_NET_ADMIN = 12  # the bit in /proc/PID/status CapBnd
UNIT_NAME = re.compile(r"[A-Za-z0-9:_.@\\-]{1,200}\.(service|socket|target|mount|timer|path|"
                       r"device|swap|slice|scope|automount)")


@dataclass(frozen=True)
class OverrideSettings:
    netns_path: str = "/proc/1/ns/net"
    ports: tuple[int, ...] = (80, 443)
    keep_net_raw: bool = False
    disable_units: tuple[str, ...] = DEFAULT_UNITS
    allow_metadata: bool = False

    @property
    def dropped_caps(self) -> list[str]:
        return ["CAP_NET_ADMIN"] + ([] if self.keep_net_raw else ["CAP_NET_RAW"])


KEYS = {"netns_path", "ports", "keep_net_raw", "disable_units", "allow_metadata"}


def settings(ctx: LaunchContext) -> OverrideSettings:
    raw: dict[str, Any] = ctx.section(NAME)
    v.no_unknown_keys(f"hook.{NAME}", raw, KEYS)
    d = OverrideSettings()
    units = tuple(v.string_list(f"hook.{NAME}.disable_units",
                                raw.get("disable_units", list(d.disable_units))))
    for i, unit in enumerate(units):
        if not UNIT_NAME.fullmatch(unit):
            raise ConfigError(f"hook.{NAME}.disable_units[{i}]", f"{unit!r} is not a unit name",
                              'e.g. "systemd-networkd.service"')
    return OverrideSettings(
        netns_path=str(v.bindable_path(f"hook.{NAME}.netns_path",
                                       raw.get("netns_path", d.netns_path),
                                       must_exist=True, kind="netns")),
        ports=tuple(v.ports(f"hook.{NAME}.ports", raw.get("ports", list(d.ports)))),
        keep_net_raw=v.boolean(f"hook.{NAME}.keep_net_raw",
                               raw.get("keep_net_raw", d.keep_net_raw)),
        disable_units=units,
        allow_metadata=v.boolean(f"hook.{NAME}.allow_metadata",
                                 raw.get("allow_metadata", d.allow_metadata)),
    )


@hookimpl
def cf_launch_validate(ctx: LaunchContext) -> None:
    v.one_network_hook(ctx.hooks, NAME, CONFLICTS)
    settings(ctx)


def _metadata_problems(s: OverrideSettings) -> list[Problem]:
    """The metadata rule needs iptables, and must land in the namespace ColdFront joins."""
    if s.allow_metadata:
        return metadata.ec2_warning(NAME, True)
    hint = f"or set hook.{NAME}.allow_metadata = true"
    tools = ["iptables"] + (["ip6tables"] if metadata.ipv6_present() else [])
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        return [Problem("iptables", f"not installed: {', '.join(missing)}; cf-launch needs "
                        "it to keep ColdFront from the cloud's metadata service",
                        f"install iptables-nft, {hint}")]
    if str(os.stat(s.netns_path).st_ino) != netinfo.netns_id():
        return [Problem("metadata", f"cf-launch runs outside {s.netns_path}, so its metadata "
                        "rule would not apply to ColdFront", f"run cf-launch in that namespace "
                        f"(nsenter --net={s.netns_path} cf-launch ...), {hint}")]
    return []


@hookimpl
def cf_launch_preflight(ctx: LaunchContext) -> list[Problem]:
    s = settings(ctx)
    return [Problem("ports", listener.describe(),
                    "stop that service, or change the ports ColdFront should use")
            for listener in busy(s.netns_path, list(s.ports))] + _metadata_problems(s)


@hookimpl
def cf_launch_pre_start(ctx: LaunchContext, host: HostChanges) -> None:
    s = settings(ctx)
    if s.allow_metadata:
        return
    uid = ctx.settings.security.uid  # the image's service account ([security] uid)
    owner = f"{NAME}:{ctx.settings.name}"
    host.apply_firewall(owner, metadata.owner_ruleset(ctx.settings.name, uid))
    if metadata.ipv6_present():
        host.apply_firewall(f"{owner}:ipv6",
                            metadata.owner_ruleset(ctx.settings.name, uid, "ipv6"))


@hookimpl
def cf_launch_start_options(ctx: LaunchContext) -> list[str]:
    return ["--netns-path", settings(ctx).netns_path]


@hookimpl
def cf_launch_binds(ctx: LaunchContext) -> list[Bind]:
    s = settings(ctx)
    binds = [
        Bind(MARKER, content=render(DATA, "host-network.j2", netns_path=s.netns_path)),
        Bind("/etc/systemd/system.conf.d/cf-launch-capabilities.conf",
             content=render(DATA, "systemd/capabilities.conf.j2", dropped=s.dropped_caps)),
        Bind("/etc/NetworkManager/conf.d/cf-launch-unmanaged.conf",
             content=read(DATA, "NetworkManager/cf-launch-unmanaged.conf")),
    ]
    for rule in ("80-net-setup-link.rules", "75-persistent-net-generator.rules"):
        binds.append(Bind(f"/etc/udev/rules.d/{rule}", content=read(DATA, f"udev/{rule}")))
    for unit in s.disable_units:
        binds.append(Bind(f"/etc/systemd/system/{unit}.d/{DROPIN}",
                          content=render(DATA, "systemd/host-network-skip.conf.j2",
                                         unit=unit, marker=MARKER)))
    return binds


@hookimpl
def cf_launch_check_instance(ctx: LaunchContext, instance: InstanceInfo) -> list[Problem]:
    """``attach``: the instance shares ``netns_path`` and PID 1 lacks CAP_NET_ADMIN (so
    the capability drop-in was bound)."""
    s = settings(ctx)
    probe = apptainer.exec_capture(instance.name, [
        "sh", "-c", "readlink /proc/1/ns/net; grep '^CapBnd:' /proc/1/status"])
    words = probe.out.split()
    inode = words[0].strip("net:[]") if words else ""
    caps = int(words[-1], 16) if len(words) == 3 else None
    problems = []
    if not inode.isdigit() or int(inode) != os.stat(s.netns_path).st_ino:
        problems.append(Problem("netns", f"{instance.name} does not share the network "
                                f"namespace {s.netns_path}",
                                f"its start needs: --netns-path {s.netns_path}"))
    if caps is None or caps & (1 << CAP_NET_ADMIN):
        problems.append(Problem("capabilities", f"PID 1 of {instance.name} still holds "
                                "CAP_NET_ADMIN: the override files were not bound",
                                "its start needs the --bind options `cf-launch prepare` "
                                "printed"))
    return problems


@hookimpl
def cf_launch_readiness_endpoint(ctx: LaunchContext, instance: InstanceInfo) -> Endpoint | None:
    s = settings(ctx)
    port = 80 if 80 in s.ports else s.ports[0]
    return Endpoint("127.0.0.1", port, fallback="::1" if metadata.ipv6_present() else "")

