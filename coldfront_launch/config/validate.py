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
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coldfront_launch.errors import ConfigError

INSTANCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
# RFC 3986 path characters (pchar and "/"), then an optional query.
URL_PATH = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*(\?[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]*)?")
#: What no value may hold: every control (C0, DEL, C1), the Unicode line and paragraph
#: separators, and lone surrogates (bytes of a command-line argument that are not UTF-8).
#: Test with :func:`safe_text`.
UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
CONTROL = UNSAFE  # the former, narrower name (plugins may use it)
#: The characters some reader splits lines at (str.splitlines, env-file parsers).
LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")
#: Names of the controls, which the Unicode database leaves without one.
CONTROL_NAMES = {"\x00": "NUL", "\t": "TAB", "\n": "LINE FEED", "\v": "LINE TABULATION",
                 "\f": "FORM FEED", "\r": "CARRIAGE RETURN", "\x1b": "ESCAPE",
                 "\x1c": "FILE SEPARATOR", "\x1d": "GROUP SEPARATOR",
                 "\x1e": "RECORD SEPARATOR", "\x1f": "UNIT SEPARATOR", "\x7f": "DELETE",
                 "\x85": "NEXT LINE"}
#: The longest repr of a number an error message repeats.
SHOWN = 24


def unsafe_character(value: str) -> str:
    """The first character of ``value`` that some reader splits lines at or that is a
    control character (or a lone surrogate); "" when there is none."""
    found = UNSAFE.search(value)
    return found.group() if found else ""


def describe_character(char: str) -> str:
    """``U+2028 (LINE SEPARATOR)``: a character named without printing it."""
    name = CONTROL_NAMES.get(char) or unicodedata.name(char, "")
    return f"U+{ord(char):04X} ({name})" if name else f"U+{ord(char):04X}"


def safe_text(setting: str, value: str, where: str = "") -> str:
    """``value`` if it holds no :func:`unsafe_character`; ``where``: the files whose
    lines it would split (for the message). The error never repeats the value."""
    char = unsafe_character(value)
    if not char:
        return value
    if char in LINE_BREAKS:
        cause = (f"contains a line break, {describe_character(char)}, which splits lines "
                 + (f"in {where}" if where else "in files and logs"))
    elif "\udc80" <= char <= "\udcff":  # os.fsdecode's stand-in for a byte
        cause = f"contains the byte 0x{ord(char) - 0xDC00:02x}, which is not UTF-8"
    elif "\ud800" <= char <= "\udfff":
        cause = f"contains {describe_character(char)}, a lone surrogate, not text"
    else:
        cause = f"contains a control character, {describe_character(char)}"
    raise ConfigError(setting, cause, "give one line of printable text")


def key_name(key: object) -> str:
    """A key of a settings table as an error message shows it: itself, or its repr when
    it is not text or holds an unsafe character."""
    return key if isinstance(key, str) and not unsafe_character(key) else repr(key)


def shown(value: Any) -> str:
    """``value`` for an error message: a long whole number by its count of digits, any
    other long repr cut short."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10 ** SHOWN:
        return f"a whole number of {math.floor(math.log10(abs(value))) + 1} digits"
    try:
        text = repr(value)
    except ValueError:  # a whole number of more digits than Python converts, inside
        return "a value too long to show"
    return text if len(text) <= 4 * SHOWN else text[:4 * SHOWN] + "..."


def _finite(value: Any) -> float | None:
    """``value`` as a finite float; None for anything else (a bool, text, nan, inf, a
    whole number beyond a float's range)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _root_hint() -> str:
    return "run cf-launch as root" if os.geteuid() != 0 else "check the path's permissions"


def port(setting: str, value: Any) -> int:
    """A TCP port, 1–65535: a whole number, or a string of ASCII digits."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 9:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(setting, f"{shown(value)} is not a port number",
                          "use a whole number 1-65535")
    if not 1 <= value <= 65535:
        raise ConfigError(setting, f"port {shown(value)} is outside 1-65535",
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
            raise ConfigError(setting, f"{shown(value)} is not HOST:CONTAINER",
                              'e.g. "8080:80"')
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
        raise ConfigError(setting, f"{value!r} is not a CIDR", "e.g. 192.168.77.0/24")
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except ValueError as err:
        raise ConfigError(setting, f"{value!r} is not a valid IPv4 CIDR ({err})",
                          "e.g. 192.168.77.0/24") from None
    for flag, what in (("is_loopback", "loopback"), ("is_link_local", "link-local"),
                       ("is_multicast", "multicast"), ("is_unspecified", "unspecified"),
                       ("is_reserved", "reserved")):
        if getattr(network, flag) or getattr(network.network_address, flag):
            raise ConfigError(setting, f"{network} is a {what} network",
                              "use a private unicast range, e.g. 192.168.77.0/24")
    if network.broadcast_address == ipaddress.IPv4Address("255.255.255.255"):
        raise ConfigError(setting, f"{network} includes the broadcast address",
                          "use a private unicast range, e.g. 192.168.77.0/24")
    return network


def cidr6(setting: str, value: Any) -> ipaddress.IPv6Network:
    """A unicast IPv6 network from /64 to /120 (SLAAC-free host-local ranges), no host
    bits set: a ULA such as ``fd42:cf:1::/64``."""
    example = 'e.g. "fd42:cf:1::/64" (a unique local address range)'
    if not isinstance(value, str):
        raise ConfigError(setting, f"{value!r} is not an IPv6 CIDR", example)
    try:
        network = ipaddress.IPv6Network(value, strict=True)
    except ValueError as err:
        raise ConfigError(setting, f"{value!r} is not a valid IPv6 CIDR ({err})",
                          example) from None
    for flag, what in (("is_loopback", "loopback"), ("is_link_local", "link-local"),
                       ("is_multicast", "multicast"), ("is_unspecified", "unspecified"),
                       ("is_site_local", "site-local (deprecated)")):
        if getattr(network, flag) or getattr(network.network_address, flag):
            raise ConfigError(setting, f"{network} is a {what} network", example)
    if network.network_address.ipv4_mapped is not None:
        raise ConfigError(setting, f"{network} is IPv4-mapped", example)
    if not 64 <= network.prefixlen <= 120:
        raise ConfigError(setting, f"{network} is a /{network.prefixlen}",
                          "use a /64 to /120, " + example)
    return network


def ipv4(setting: str, value: Any) -> ipaddress.IPv4Address:
    """An IPv4 address."""
    if not isinstance(value, str):
        raise ConfigError(setting, f"{value!r} is not an IPv4 address", "e.g. 192.168.77.10")
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        raise ConfigError(setting, f"{value!r} is not an IPv4 address", "e.g. 192.168.77.10"
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
        raise ConfigError(setting, f"{value!r} is not an interface name", "e.g. cflaunch1")
    if len(value.encode()) > 15:
        raise ConfigError(setting, f"{value!r} is {len(value.encode())} bytes; Linux allows 15",
                          "use a shorter name, e.g. cflaunch1")
    safe_text(setting, value)
    if value in (".", "..") or re.search(r"[\s/:]", value):
        raise ConfigError(setting, f"{value!r} contains a character Linux forbids in names",
                          "use letters, digits, '-' and '_'")
    return value


def boolean(setting: str, value: Any) -> bool:
    """true or false."""
    if not isinstance(value, bool):
        raise ConfigError(setting, f"{value!r} is not true or false", "write true or false")
    return value


def positive_number(setting: str, value: Any, high: float = 1e9) -> float:
    """A finite number above zero, up to ``high`` (default: more than 31 years of
    seconds, which every timer and socket still takes)."""
    number = _finite(value)
    if number is None or number <= 0:
        raise ConfigError(setting, f"{shown(value)} is not a number above zero", "e.g. 300")
    if number > high:
        raise ConfigError(setting, f"{shown(value)} is more than {high:g}", "e.g. 300")
    return number


def interval(setting: str, value: Any, high: float = 86400) -> float:
    """Seconds between periodic checks: 0 (off), or a finite number up to ``high``."""
    number = _finite(value)
    if number is None or not 0 <= number <= high:
        raise ConfigError(setting, f"{shown(value)} is not a number of seconds from 0 to "
                          f"{high:g}", "e.g. 30; 0 turns it off")
    return number


def whole_number(setting: str, value: Any, low: int, high: int) -> int:
    """A whole number from ``low`` to ``high``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(setting, f"{shown(value)} is not a whole number from {low} to {high}")
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
    if not isinstance(value, (str, Path)) or not str(value):
        raise ConfigError(setting, f"{shown(value)} is not a path", "e.g. /var/lib/cf-launch")
    safe_text(setting, str(value))
    result = Path(os.path.abspath(Path(value).expanduser()))
    safe_text(setting, str(result))  # from $HOME
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
    found = re.search(r"[:,]", str(result))
    if found:
        raise ConfigError(setting, f"{result} contains {found.group()!r}, which Apptainer's "
                          "--bind reads as a separator",
                          "use a path without ':' and ',' (a symbolic link works)")
    return result


def string_list(setting: str, value: Any) -> list[str]:
    """A list of strings, each free of :func:`unsafe_character`."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(setting, f"{shown(value)} is not a list of strings",
                          'e.g. ["a", "b"]')
    return [safe_text(f"{setting}[{i}]", item) for i, item in enumerate(value)]


def bind_spec(setting: str, value: Any) -> str:
    """An Apptainer bind spec ``SRC[:DST[:ro|rw]]`` whose source exists."""
    if not isinstance(value, str) or not value:
        raise ConfigError(setting, f"{shown(value)} is not a bind spec", "use SRC[:DST[:ro]]")
    safe_text(setting, value)
    if "," in value:
        raise ConfigError(setting, f"{value!r} contains ',', which Apptainer's --bind reads "
                          "as a separator", "use SRC[:DST[:ro]], one bind a spec")
    parts = value.split(":")
    if len(parts) > 3 or any(not p for p in parts) or \
            (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise ConfigError(setting, f"{value!r} is not a bind spec", "use SRC[:DST[:ro]]")
    source = bindable_path(setting, parts[0], must_exist=True)
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
            where = f"{section}.{key_name(key)}" if section else key_name(key)
            raise ConfigError(where, "unknown setting",
                              f"known settings here: {', '.join(sorted(known))}")


def one_network_hook(hooks: tuple[str, ...], name: str, others: tuple[str, ...]) -> None:
    """Refuse two plugins that would both decide the container's network."""
    for other in others:
        if other in hooks:
            raise ConfigError("hooks", f"{name} and {other} both set up the network",
                              "choose one of them")
