"""Validators shared by the core and the hooks. Each raises ConfigError naming the setting."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

from .errors import ConfigError

INSTANCE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def port(setting: str, value: Any) -> int:
    """A TCP/UDP port, 1–65535."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(setting, f"{value!r} is not a port number", "use a whole number 1-65535")
    if not 1 <= value <= 65535:
        raise ConfigError(setting, f"port {value} is outside 1-65535",
                          "use a whole number 1-65535")
    return int(value)


def ports(setting: str, value: Any) -> list[int]:
    """A list of distinct ports."""
    if not isinstance(value, list):
        raise ConfigError(setting, f"{value!r} is not a list of ports", "e.g. [80, 443]")
    checked = [port(f"{setting}[{i}]", v) for i, v in enumerate(value)]
    if len(set(checked)) != len(checked):
        raise ConfigError(setting, f"ports repeat in {checked}")
    return checked


def cidr(setting: str, value: Any) -> ipaddress.IPv4Network:
    """An IPv4 network in CIDR form, with no host bits set."""
    if not isinstance(value, str):
        raise ConfigError(setting, f"{value!r} is not a CIDR", "e.g. 10.22.0.0/16")
    try:
        return ipaddress.IPv4Network(value, strict=True)
    except ValueError as err:
        raise ConfigError(setting, f"{value!r} is not a valid IPv4 CIDR ({err})",
                          "e.g. 10.22.0.0/16") from None


def ipv4(setting: str, value: Any) -> ipaddress.IPv4Address:
    """An IPv4 address."""
    try:
        return ipaddress.IPv4Address(str(value))
    except ValueError:
        raise ConfigError(setting, f"{value!r} is not an IPv4 address") from None


def instance_name(setting: str, value: Any) -> str:
    """An Apptainer instance name: letters, digits, ``_``, ``.`` and ``-``."""
    if not isinstance(value, str) or not INSTANCE_NAME.match(value):
        raise ConfigError(setting, f"{value!r} is not a valid instance name",
                          "use only letters, digits, '_', '.' and '-'")
    return value


def interface_name(setting: str, value: Any) -> str:
    """A Linux interface name: 1–15 characters, no '/', ':' or white space."""
    if not isinstance(value, str) or not value:
        raise ConfigError(setting, f"{value!r} is not an interface name")
    if len(value) > 15:
        raise ConfigError(setting, f"{value!r} is {len(value)} characters; Linux allows 15")
    if re.search(r"[\s/:]", value):
        raise ConfigError(setting, f"{value!r} contains a character Linux forbids in names")
    return value


def boolean(setting: str, value: Any) -> bool:
    """true or false."""
    if not isinstance(value, bool):
        raise ConfigError(setting, f"{value!r} is not true or false")
    return value


def positive_number(setting: str, value: Any) -> float:
    """A number above zero."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(setting, f"{value!r} is not a number above zero")
    return float(value)


def path(setting: str, value: Any, *, must_exist: bool = False, kind: str = "") -> Path:
    """A file-system path; optionally one that exists (``kind`` 'file' or 'dir')."""
    if not isinstance(value, (str, Path)) or not str(value):
        raise ConfigError(setting, f"{value!r} is not a path")
    result = Path(value).expanduser()
    if must_exist:
        try:
            result.stat()
        except PermissionError:
            raise ConfigError(setting, f"{result} cannot be accessed (permission denied)",
                              "run cf-launch as root") from None
        except OSError:
            raise ConfigError(setting, f"{result} does not exist") from None
        if kind == "file" and not result.is_file():
            raise ConfigError(setting, f"{result} is not a file")
        if kind == "dir" and not result.is_dir():
            raise ConfigError(setting, f"{result} is not a directory")
    return result


def string_list(setting: str, value: Any) -> list[str]:
    """A list of strings."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(setting, f"{value!r} is not a list of strings")
    return list(value)


def bind_spec(setting: str, value: Any) -> str:
    """An Apptainer bind spec ``src[:dst[:opts]]`` whose source exists."""
    if not isinstance(value, str) or not value:
        raise ConfigError(setting, f"{value!r} is not a bind spec", "use SRC[:DST[:ro]]")
    src = value.split(":", 1)[0]
    if not Path(src).exists():
        raise ConfigError(setting, f"bind source {src} does not exist")
    return value


def no_unknown_keys(section: str, data: dict[str, Any], known: set[str]) -> None:
    """Reject keys a section does not define (usually typos)."""
    for key in data:
        if key not in known:
            where = f"{section}.{key}" if section else key
            raise ConfigError(where, "unknown setting",
                              f"known settings here: {', '.join(sorted(known))}")


def one_network_hook(hooks: tuple[str, ...], name: str, others: tuple[str, ...]) -> None:
    """Refuse two hooks that would both decide the container's network."""
    for other in others:
        if other in hooks:
            raise ConfigError("hooks", f"{name} and {other} both set up the network",
                              "choose one of them")
