"""Wait until systemd inside the instance is up and ColdFront answers HTTP."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from . import apptainer
from .errors import NotReadyError
from .types import Endpoint


@dataclass
class Readiness:
    """What the wait found."""

    system_state: str = ""
    failed_units: list[str] = field(default_factory=list)
    http_status: int = 0
    url: str = ""
    seconds: float = 0.0


def system_state(name: str) -> str:
    """``systemctl is-system-running`` inside the instance."""
    out = apptainer.exec_capture(name, ["systemctl", "is-system-running"], timeout=15).out
    return out.splitlines()[-1].strip() if out else "unknown"


def failed_units(name: str) -> list[str]:
    probe = apptainer.exec_capture(
        name, ["systemctl", "list-units", "--state=failed", "--no-legend", "--plain"], 15)
    if probe.code != 0:
        return []
    return [line.split()[0] for line in probe.out.splitlines() if line.strip()]


def journal_tail(name: str, lines: int = 30) -> str:
    probe = apptainer.exec_capture(
        name, ["journalctl", "--no-pager", "-n", str(lines)], timeout=15)
    return "\n".join(part for part in (probe.out, probe.err) if part)


def http_status(url: str, timeout: float = 5) -> int:
    """The HTTP status of a GET, or 0 when nothing answered."""
    request = urllib.request.Request(url, headers={"User-Agent": "cf-launch"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except (urllib.error.URLError, OSError):
        return 0


def wait_ready(name: str, endpoint: Endpoint, path: str, timeout: float,
               report: Callable[[str], None] = lambda _m: None, interval: float = 1.0
               ) -> Readiness:
    """Poll systemd, then HTTP, until both are ready or ``timeout`` runs out."""
    started = time.monotonic()
    found = Readiness(url=endpoint.url(path))
    last = ""
    while time.monotonic() - started < timeout:
        if found.system_state not in ("running", "degraded"):
            found.system_state = system_state(name)
            if found.system_state == "degraded":
                found.failed_units = failed_units(name)
        if found.system_state in ("running", "degraded"):
            found.http_status = http_status(found.url)
            if 200 <= found.http_status < 400:
                found.seconds = time.monotonic() - started
                return found
        message = f"systemd: {found.system_state}; {found.url}: {found.http_status or 'no answer'}"
        if message != last:
            report(message)
            last = message
        time.sleep(interval)
    units = failed_units(name)
    details = (f"failed units: {', '.join(units) or 'none'}\n"
               f"--- last lines of the journal inside {name} ---\n{journal_tail(name)}")
    raise NotReadyError(
        f"{name} not ready after {timeout:.0f}s (systemd: {found.system_state}, "
        f"HTTP {found.url}: {found.http_status or 'no answer'})",
        "it is still running: inspect with `cf-launch logs`, `cf-launch shell`; "
        "stop it with `cf-launch stop`", details=details)
