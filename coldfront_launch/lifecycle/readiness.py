"""Wait until systemd inside the instance is up and ColdFront answers HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from coldfront_launch import apptainer
from coldfront_launch.errors import NotReadyError
from coldfront_launch.types import Endpoint


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


def system_state_of(name: str, pid: int) -> str:
    """:func:`system_state`, asked through ``nsenter`` into a booted instance's systemd
    (``pid``) when possible (:func:`~coldfront_launch.apptainer.probe_inside`), else with
    ``apptainer exec``."""
    out = apptainer.probe_inside(name, pid, ["systemctl", "is-system-running"], 15).out
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


class _NoRedirect:
    """Built on first use (urllib is imported where HTTP is asked: 10–15 ms that ``stop``
    and ``plan`` do not need): a 3xx is an answer (an 80→443 redirect, a login redirect),
    never followed."""

    opener: Any = None

    @classmethod
    def open(cls, request: Any, timeout: float) -> Any:
        if cls.opener is None:
            import urllib.request

            class NoRedirect(urllib.request.HTTPRedirectHandler):
                def redirect_request(self, *_args: object, **_kwargs: object) -> None:
                    return None

            cls.opener = urllib.request.build_opener(NoRedirect)
        return cls.opener.open(request, timeout=timeout)


def http_status(url: str, timeout: float = 5, host: str | None = None) -> int:
    """The HTTP status of a GET, or 0 when nothing answered. ``host``: the ``Host:``
    header to send (one that ColdFront's ``allowed_hosts`` accepts); redirects are
    returned, not followed."""
    import urllib.error
    import urllib.request

    headers = {"User-Agent": "cf-launch"}
    if host:
        headers["Host"] = host
    request = urllib.request.Request(url, headers=headers)
    try:
        with _NoRedirect.open(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except (urllib.error.URLError, OSError):
        return 0


#: systemd states after which booting is over (``is-system-running --wait`` returns).
BOOTED = ("running", "degraded")
#: HTTP polling: the first retry after 50 ms, each next one 1.5 times later, at most 0.5 s.
HTTP_FIRST, HTTP_FACTOR, HTTP_MAX = 0.05, 1.5, 0.5
#: The longest single blocking ``systemctl --wait`` call (then it is asked again).
SYSTEMD_CALL_MAX = 60.0


def backoff(first: float = HTTP_FIRST, factor: float = HTTP_FACTOR,
            most: float = HTTP_MAX) -> Iterator[float]:
    """Delays between polls: ``first``, growing by ``factor``, capped at ``most``."""
    delay = first
    while True:
        yield delay
        delay = min(most, delay * factor)


def wait_system(name: str, timeout: float, pid: int = 0) -> str:
    """Block until systemd inside has finished booting: one ``systemctl
    is-system-running --wait`` under ``timeout`` (it returns as soon as the state
    leaves ``initializing``/``starting``; right after ``instance start`` it may also
    return early, e.g. ``offline`` before systemd listens: the caller asks again).
    With the instance's ``pid``, asked through ``nsenter`` when possible (it returns
    sooner after the state changes than ``apptainer exec``)."""
    probe = apptainer.probe_inside(name, pid, ["systemctl", "is-system-running", "--wait"],
                                   timeout=max(1.0, timeout))
    if probe.code == 124 and not probe.out:
        return "starting"
    return probe.out.splitlines()[-1].strip() if probe.out else "unknown"


def wait_ready(name: str, endpoint: Endpoint, path: str, timeout: float,
               report: Callable[[str], None] = lambda _m: None,
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep, pid: int = 0,
               host: str | None = None) -> Readiness:
    """Wait for systemd (blocking), then poll HTTP with a short backoff, until both are
    ready or ``timeout`` runs out. Any status below 400 is an answer; ``host`` is the
    ``Host:`` header sent (see :func:`http_status`)."""
    started = clock()
    found = Readiness(url=endpoint.url(path))
    last = ""

    def say() -> None:
        nonlocal last
        message = (f"systemd: {found.system_state}; "
                   f"{found.url}: {found.http_status or 'no answer'}")
        if message != last:
            report(message)
            last = message

    delays = backoff(0.2, 1.5, 1.0)  # systemd not reachable yet: ask again soon
    while found.system_state not in BOOTED and clock() - started < timeout:
        left = timeout - (clock() - started)
        found.system_state = wait_system(name, min(left, SYSTEMD_CALL_MAX), pid)
        say()
        if found.system_state not in BOOTED:
            sleep(min(next(delays), max(0.0, timeout - (clock() - started))))
    if found.system_state == "degraded":
        found.failed_units = failed_units(name)
    delays = backoff()
    checked = clock()
    while found.system_state in BOOTED and clock() - started < timeout:
        _give_up_if_serving_failed(name, found)
        left = timeout - (clock() - started)
        found.http_status = http_status(found.url, timeout=max(0.1, min(5.0, left)),
                                        host=host)
        other = endpoint.fallback_url(path)
        if not found.http_status and other:  # nothing answered: the other family may
            code = http_status(other, timeout=max(0.1, min(5.0, left)), host=host)
            if code:
                found.url, found.http_status = other, code
        if 200 <= found.http_status < 400:
            found.seconds = clock() - started
            return found
        say()
        sleep(min(next(delays), max(0.0, timeout - (clock() - started))))
        if clock() - checked >= FAILED_CHECK_EVERY:  # a unit that kept restarting, then gave up
            checked = clock()
            found.failed_units = failed_units(name)
    raise _not_ready(name, f"not ready after {timeout:.0f}s", found)


#: The units that serve ColdFront's HTTP in cf-launch's image: once one has failed (a
#: unit that restarts on failure only after its start limit), nothing will answer.
SERVING_UNITS = ("coldfront-account.service", "coldfront-setup.service",
                 "coldfront-gunicorn.service", "nginx.service")
#: How often failed units are asked again while HTTP is polled (seconds).
FAILED_CHECK_EVERY = 5.0


def _give_up_if_serving_failed(name: str, found: Readiness) -> None:
    """Raise at once when a unit that serves HTTP has failed: waiting would only run the
    timeout out."""
    failed = [unit for unit in found.failed_units if unit in SERVING_UNITS]
    if failed:
        raise _not_ready(name, f"not ready: {', '.join(failed)} failed", found)


def _not_ready(name: str, why: str, found: Readiness) -> NotReadyError:
    units = failed_units(name)
    details = (f"failed units: {', '.join(units) or 'none'}\n"
               f"--- last lines of the journal inside {name} ---\n{journal_tail(name)}")
    return NotReadyError(
        f"{name} {why} (systemd: {found.system_state}, "
        f"HTTP {found.url}: {found.http_status or 'no answer'})",
        "it is still running: inspect with `cf-launch logs`, `cf-launch shell`; "
        "stop it with `cf-launch stop`", details=details)
