"""What cf-launch needs to know about firewalld: whether it is here, and its settings that
decide whether forwarded ports work. Read-only; nothing here talks to firewalld.

``CF_LAUNCH_FIREWALLD_CONF`` names another ``firewalld.conf`` (tests use sample files).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from coldfront_launch.config import seams

CONF = Path("/etc/firewalld/firewalld.conf")
CONF_ENV = "CF_LAUNCH_FIREWALLD_CONF"
YES = ("yes", "true")


def conf_path() -> Path:
    """The ``firewalld.conf`` to read."""
    return Path(seams.seam(CONF_ENV) or CONF)


def present() -> bool:
    """firewalld is installed here (its configuration or its daemon)."""
    return conf_path().is_file() or shutil.which("firewalld") is not None


def settings(path: Path | None = None) -> dict[str, str]:
    """``KEY=value`` lines of ``firewalld.conf`` (comments and blank lines skipped; the last
    of a key given twice wins, as firewalld reads it). Empty when the file is missing."""
    try:
        text = (path or conf_path()).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    found: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        found[key.strip()] = value.strip().strip('"')
    return found


def strict_forward_ports(path: Path | None = None) -> bool:
    """``StrictForwardPorts=yes`` (firewalld 2.3 and later): firewalld then rejects forwarded
    traffic that another program's DNAT rules sent, unless firewalld forwards the port."""
    return settings(path).get("StrictForwardPorts", "no").lower() in YES
