"""Kernel settings under ``/proc/sys`` (per network namespace for ``net.*``)."""

from __future__ import annotations

import os
from pathlib import Path

from coldfront_launch.errors import HostChangeError

# Tests point this at a private folder, so they never touch this machine's kernel.
SYSCTL_ROOT = Path("/proc/sys")


def _path(key: str) -> Path:
    return SYSCTL_ROOT / key.replace(".", "/")


def read(key: str) -> str:
    """The current value of ``key`` (e.g. ``net.ipv4.ip_forward``)."""
    try:
        return _path(key).read_text().strip()
    except OSError as err:
        raise HostChangeError(f"cannot read sysctl {key}: {err.strerror}") from None


def read_or_empty(key: str) -> str:
    """:func:`read`, or "" when the key cannot be read (no such interface, no IPv6)."""
    try:
        return read(key)
    except HostChangeError:
        return ""


def write(key: str, value: str) -> None:
    """Set ``key`` to ``value``."""
    try:
        _path(key).write_text(value + "\n")
    except OSError as err:
        raise HostChangeError(f"cannot set sysctl {key}={value}: {err.strerror}",
                              "cf-launch must run as root" if os.geteuid() != 0 else
                              "is /proc/sys read-only here (a container)?") from None
