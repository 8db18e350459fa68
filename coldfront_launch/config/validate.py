"""Validators shared by the core and the plugins. Each raises ConfigError naming the setting.

Every setting is checked before anything on the host changes: what ``start`` would only
find out later (a folder that is a file, a bridge name that is the host's NIC) is found
here.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coldfront_launch.errors import ConfigError

INSTANCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
# RFC 3986 path characters (pchar and "/"), then an optional query.
URL_PATH = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*(\?[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]*)?")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _root_hint() -> str:
    return "run cf-launch as root" if os.geteuid() != 0 else "check the path's permissions"


def port(setting: str, value: Any) -> int:
    """A TCP port, 1–65535: a whole number, or a string of ASCII digits."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(setting, f"{value!r} is not a port number", "use a whole number 1-65535")
    if not 1 <= value <= 65535:
        raise ConfigError(setting, f"port {value} is outside 1-65535",
                          "use a whole number 1-65535")
    return int(value)


@dataclass(frozen=True)
class PortMap:
    """A host port and the container port it reaches."""

    host: int
    container: int


def port_map(setting: str, value: Any) -> PortMap:
    """``80`` (the same port on both sides) or ``"8080:80"`` (host:container)."""
    if isinstance(value, str) and ":" in value:
        host, _, container = value.partition(":")
        if not all(p.isascii() and p.isdigit() for p in (host, container)):
            raise ConfigError(setting, f"{value!r} is not HOST:CONTAINER", 'e.g. "8080:80"')
        return PortMap(port(setting, host), port(setting, container))
    number = port(setting, value)
    return PortMap(number, number)


def port_maps(setting: str, value: Any) -> tuple[PortMap, ...]:
    """A non-empty list of port maps, each host port once."""
    if not isinstance(value, list) or not value:
        raise ConfigError(setting, f"{value!r} is not a non-empty list of ports",
                          'e.g. [80, 443] or [80, "8443:443"]')
    maps = tuple(port_map(f"{setting}[{i}]", v) for i, v in enumerate(value))
    hosts = [m.host for m in maps]
    if len(set(hosts)) != len(hosts):
        raise ConfigError(setting, f"a host port is listed twice in {hosts}")
    return maps


def ports(setting: str, value: Any) -> list[int]:
    """A non-empty list of distinct ports (no mapping)."""
    maps = port_maps(setting, value)
    for i, m in enumerate(maps):
        if m.host != m.container:
            raise ConfigError(f"{setting}[{i}]", f"{m.host}:{m.container} maps a port, "
                              "which needs NAT", "give the same port on both sides, e.g. 80")
    return [m.host for m in maps]


def cidr(setting: str, value: Any) -> ipaddress.IPv4Network:
    """A unicast IPv4 network in CIDR form, with no host bits set."""
    if not isinstance(value, str):
        raise ConfigError(setting, f"{value!r} is not a CIDR", "e.g. 10.22.0.0/16")
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except ValueError as err:
        raise ConfigError(setting, f"{value!r} is not a valid IPv4 CIDR ({err})",
                          "e.g. 10.22.0.0/16") from None
    for flag, what in (("is_loopback", "loopback"), ("is_link_local", "link-local"),
                       ("is_multicast", "multicast"), ("is_unspecified", "unspecified"),
                       ("is_reserved", "reserved")):
        if getattr(network, flag) or getattr(network.network_address, flag):
            raise ConfigError(setting, f"{network} is a {what} network",
                              "use a private unicast range, e.g. 10.22.0.0/16")
    if network.broadcast_address == ipaddress.IPv4Address("255.255.255.255"):
        raise ConfigError(setting, f"{network} includes the broadcast address",
                          "use a private unicast range, e.g. 10.22.0.0/16")
    return network


def ipv4(setting: str, value: Any) -> ipaddress.IPv4Address:
    """An IPv4 address."""
    if not isinstance(value, str):
        raise ConfigError(setting, f"{value!r} is not an IPv4 address", "e.g. 10.22.0.10")
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        raise ConfigError(setting, f"{value!r} is not an IPv4 address", "e.g. 10.22.0.10"
                          ) from None


def instance_name(setting: str, value: Any) -> str:
    """An Apptainer instance name: a letter or digit, then up to 62 letters, digits,
    ``_``, ``.`` and ``-``."""
    if not isinstance(value, str) or not INSTANCE_NAME.fullmatch(value):
        raise ConfigError(setting, f"{value!r} is not a valid instance name",
                          "start with a letter or digit; then use only letters, digits, "
                          "'_', '.' and '-' (at most 63 characters)")
    return value


def interface_name(setting: str, value: Any) -> str:
    """A Linux interface name: 1–15 bytes, no '/', ':', white space or control
    characters, and not '.' or '..'."""
    if not isinstance(value, str) or not value:
        raise ConfigError(setting, f"{value!r} is not an interface name", "e.g. sbr0")
    if len(value.encode()) > 15:
        raise ConfigError(setting, f"{value!r} is {len(value.encode())} bytes; Linux allows 15",
                          "use a shorter name, e.g. sbr0")
    if value in (".", "..") or re.search(r"[\s/:]", value) or CONTROL.search(value):
        raise ConfigError(setting, f"{value!r} contains a character Linux forbids in names",
                          "use letters, digits, '-' and '_'")
    return value


def boolean(setting: str, value: Any) -> bool:
    """true or false."""
    if not isinstance(value, bool):
        raise ConfigError(setting, f"{value!r} is not true or false", "write true or false")
    return value


def positive_number(setting: str, value: Any) -> float:
    """A finite number above zero."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or value <= 0:
        raise ConfigError(setting, f"{value!r} is not a number above zero", "e.g. 300")
    return float(value)


def interval(setting: str, value: Any, high: float = 86400) -> float:
    """Seconds between periodic checks: 0 (off), or a finite number up to ``high``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or not 0 <= value <= high:
        raise ConfigError(setting, f"{value!r} is not a number of seconds from 0 to {high:g}",
                          "e.g. 30; 0 turns it off")
    return float(value)


def whole_number(setting: str, value: Any, low: int, high: int) -> int:
    """A whole number from ``low`` to ``high``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(setting, f"{value!r} is not a whole number from {low} to {high}")
    return int(value)


def url_path(setting: str, value: Any) -> str:
    """An absolute URL path (and optional query), as sent in an HTTP request line."""
    if not isinstance(value, str) or not URL_PATH.fullmatch(value):
        raise ConfigError(setting, f"{value!r} is not a URL path",
                          "e.g. /user/login (spaces and other characters percent-encoded)")
    return value


def path(setting: str, value: Any, *, must_exist: bool = False, kind: str = "") -> Path:
    """A file-system path, made absolute. ``kind``: 'file', 'dir' or 'netns' (a network
    namespace file), checked when the path exists (or must)."""
    if not isinstance(value, (str, Path)) or not str(value) or CONTROL.search(str(value)):
        raise ConfigError(setting, f"{value!r} is not a path", "e.g. /var/lib/cf-launch")
    result = Path(os.path.abspath(Path(value).expanduser()))
    try:
        result.stat()
    except PermissionError:
        raise ConfigError(setting, f"{result} cannot be accessed (permission denied)",
                          _root_hint()) from None
    except NotADirectoryError:
        raise ConfigError(setting, f"{result}: a folder on the way is a file",
                          "fix the path") from None
    except OSError:
        if must_exist:
            raise ConfigError(setting, f"{result} does not exist", "fix the path") from None
        return result
    if kind == "file" and not result.is_file():
        raise ConfigError(setting, f"{result} is not a file", "give the path of a file")
    if kind == "dir" and not result.is_dir():
        raise ConfigError(setting, f"{result} is not a directory", "give a folder's path")
    if kind == "netns" and not _is_netns(result):
        raise ConfigError(setting, f"{result} is not a network namespace",
                          "e.g. /proc/1/ns/net or /run/netns/NAME")
    return result


def _is_netns(candidate: Path) -> bool:
    """Namespace files live on nsfs; all of them share one device number."""
    try:
        return candidate.stat().st_dev == Path("/proc/self/ns/net").stat().st_dev
    except OSError:
        return False


def bindable_path(setting: str, value: Any, **checks: Any) -> Path:
    """A path that goes into a ``--bind`` spec: no ':' or ',' (Apptainer's separators)."""
    result = path(setting, value, **checks)
    if re.search(r"[:,]", str(result)):
        raise ConfigError(setting, f"{result} contains ':' or ',', which --bind cannot carry",
                          "use a path without them (a symbolic link works)")
    return result


def string_list(setting: str, value: Any) -> list[str]:
    """A list of strings."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(setting, f"{value!r} is not a list of strings", 'e.g. ["a", "b"]')
    return list(value)


def bind_spec(setting: str, value: Any) -> str:
    """An Apptainer bind spec ``SRC[:DST[:ro|rw]]`` whose source exists."""
    if not isinstance(value, str) or not value or "," in value or CONTROL.search(value):
        raise ConfigError(setting, f"{value!r} is not a bind spec", "use SRC[:DST[:ro]]")
    parts = value.split(":")
    if len(parts) > 3 or any(not p for p in parts) or \
            (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise ConfigError(setting, f"{value!r} is not a bind spec", "use SRC[:DST[:ro]]")
    source = path(setting, parts[0], must_exist=True)
    if len(parts) > 1 and not parts[1].startswith("/"):
        raise ConfigError(setting, f"bind destination {parts[1]!r} is not absolute",
                          "use SRC:/absolute/destination")
    return ":".join([str(source), *parts[1:]])


def table(setting: str, value: Any, known: set[str] | None = None) -> dict[str, Any]:
    """``value`` if it is a table of settings (with no key outside ``known``, if given)."""
    if not isinstance(value, dict):
        raise ConfigError(setting, "must be a table of settings")
    if known is not None:
        no_unknown_keys(setting, value, known)
    return value


def no_unknown_keys(section: str, data: dict[str, Any], known: set[str]) -> None:
    """Reject keys a section does not define (usually typos)."""
    for key in data:
        if key not in known:
            where = f"{section}.{key}" if section else key
            raise ConfigError(where, "unknown setting",
                              f"known settings here: {', '.join(sorted(known))}")


def one_network_hook(hooks: tuple[str, ...], name: str, others: tuple[str, ...]) -> None:
    """Refuse two plugins that would both decide the container's network."""
    for other in others:
        if other in hooks:
            raise ConfigError("hooks", f"{name} and {other} both set up the network",
                              "choose one of them")
