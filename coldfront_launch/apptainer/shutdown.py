"""Graceful shutdown: systemd inside powers off, then ``instance stop``, then force.

``apptainer instance stop`` sends SIGTERM, which systemd as PID 1 takes as "re-execute
yourself", so Apptainer kills it after its timeout: gunicorn, nginx and the database never
see a shutdown. Instead, systemd inside is asked to power off (SIGRTMIN+4, what
``systemctl poweroff`` sends), through a pidfd so that a recycled PID is never signalled.
It stops every unit in order and exits; the instance ends with it.

systemd can only exit at the end of a poweroff when it knows it runs in a container:
otherwise its ``reboot()`` fails (Apptainer drops CAP_SYS_BOOT) and it freezes. cf-launch
starts instances with ``container=apptainer`` in their environment (:data:`BOOT_ENV`) for
that reason; an instance started without it (a site's own script) is stopped the old way.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from coldfront_launch import apptainer

BOOT_ENV = {"container": "apptainer"}  # systemd then knows it may exit at poweroff
POWEROFF = signal.SIGRTMIN + 4  # systemd(1): start poweroff.target
STARTER_GRACE = 15.0  # after systemd exits, the starter tears down CNI and exits


@dataclass(frozen=True)
class Shutdown:
    """How an instance stopped: ``poweroff`` (clean), ``instance stop`` (Apptainer's
    SIGTERM, then its kill), ``forced`` (SIGKILL at once), or ``gone`` (already down)."""

    method: str
    seconds: float


def stop(name: str, timeout: float, report: Callable[[str], None] = lambda _m: None
         ) -> Shutdown:
    """Stop instance ``name``: poweroff inside and wait up to ``timeout`` seconds; only
    then ``apptainer instance stop``; then force."""
    began = time.monotonic()
    info = apptainer.find(name)
    if info is None:
        return Shutdown("gone", 0.0)
    if powers_off_cleanly(info.pid):
        report(f"asking systemd inside {name} to power off (waiting up to {timeout:.0f}s)")
        if _poweroff(info.pid, name, timeout):
            _wait_gone(name, STARTER_GRACE)
            if apptainer.find(name) is None:
                return Shutdown("poweroff", time.monotonic() - began)
        report(f"systemd inside {name} did not power off within {timeout:.0f}s: "
               "falling back to `apptainer instance stop`")
    else:
        report(f"systemd inside {name} does not know it runs in a container (started "
               "without container=apptainer): stopping it with `apptainer instance stop`")
    apptainer.stop(name)
    if apptainer.find(name) is None:
        return Shutdown("instance stop", time.monotonic() - began)
    apptainer.stop(name, force=True)
    return Shutdown("forced", time.monotonic() - began)


def powers_off_cleanly(pid: int) -> bool:
    """Whether the instance's init has ``container=`` set, so its poweroff ends in exit."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(item.startswith(b"container=") and len(item) > len(b"container=")
               for item in environ)


def is_instance_init(pid: int, name: str) -> bool:
    """Whether ``pid`` is the init of instance ``name``: its parent is that instance's
    Apptainer starter (named "Apptainer instance: USER [NAME]")."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        title = Path(f"/proc/{parent}/cmdline").read_bytes().split(b"\0")[0].decode()
    except (OSError, ValueError, IndexError):
        return False
    return title.startswith("Apptainer instance:") and title.endswith(f"[{name}]")


def _poweroff(pid: int, name: str, timeout: float) -> bool:
    """Signal ``pid`` to power off and wait for it to exit; False on timeout.

    The pidfd is opened first and the process checked after, so a PID recycled since
    ``instance list`` is never signalled."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except (OSError, AttributeError):  # kernel < 5.3: signal by PID, poll /proc
        if not is_instance_init(pid, name):
            return False
        os.kill(pid, POWEROFF)
        return _wait(lambda: not Path(f"/proc/{pid}").exists(), timeout)
    try:
        if not is_instance_init(pid, name):
            return False
        signal.pidfd_send_signal(fd, POWEROFF)
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(timeout * 1000))
    except ProcessLookupError:
        return True
    finally:
        os.close(fd)


def _wait_gone(name: str, timeout: float) -> None:
    _wait(lambda: apptainer.find(name) is None, timeout)


def _wait(done: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)
    return True
