"""``cf-launch run``: a foreground supervisor, made for a systemd ``Type=notify`` unit.

It starts the instance as ``start`` does, tells systemd ``READY=1`` only once systemd
inside is up and ColdFront answers HTTP, then watches the instance. If the instance dies,
it undoes the host changes and exits non-zero (``Restart=on-failure`` brings it back
through a clean start); on SIGTERM or SIGINT it stops the instance, undoes everything and
exits 0. ``cf-launch stop`` and ``restart`` ask it (SIGTERM to the pid in the state folder).
While it watches, it repairs what firewall reloads remove (:mod:`.autorepair`).
Outside systemd it works the same in a terminal: Ctrl-C stops ColdFront cleanly.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from functools import partial

from coldfront_launch import apptainer, atomic
from coldfront_launch.errors import LockedError, NotReadyError
from coldfront_launch.exitcodes import ExitCode
from coldfront_launch.lifecycle.launcher import Launcher
from coldfront_launch.linux import cgroupns
from coldfront_launch.service.autorepair import AutoRepair


class Notifier:
    """sd_notify(3) over ``$NOTIFY_SOCKET``; a no-op when systemd did not ask for it."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path if path is not None else os.environ.get("NOTIFY_SOCKET", "")

    def send(self, **fields: str) -> None:
        if not self.path:
            return
        address = "\0" + self.path[1:] if self.path.startswith("@") else self.path
        message = "\n".join(f"{k.upper()}={v}" for k, v in fields.items()).encode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, \
                contextlib.suppress(OSError):  # systemd gone: nothing to tell
            sock.sendto(message, address)


def watchdog_interval() -> float:
    """Half of ``$WATCHDOG_USEC`` in seconds (0: no watchdog), as sd_watchdog_enabled says."""
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", "0"))
        owner = int(os.environ.get("WATCHDOG_PID", str(os.getpid())))
    except ValueError:
        return 0.0
    return usec / 2e6 if usec > 0 and owner == os.getpid() else 0.0


def run(launcher: Launcher, interval: float = 2.0,
        notifier: Notifier | None = None) -> int:
    """Start, report ready, watch; return the exit code."""
    notify = notifier or Notifier()
    report = launcher.report

    def status(message: str) -> None:
        report(message)
        notify.send(status=message[:200])

    launcher.report = status
    pid_file = launcher.state.supervisor_path
    _in_this_unit(launcher)
    started = launcher.start(wait=False)
    launcher.state.ensure()
    atomic.write_text(pid_file, str(os.getpid()), sync=False)
    stopping, wake = threading.Event(), threading.Event()

    def on_signal(*_args: object) -> None:
        stopping.set()
        wake.set()
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    repairs = AutoRepair(launcher, status, report, wake)
    try:
        return _serve(launcher, started.instance.name, stopping, interval, notify, status,
                      repairs)
    finally:
        repairs.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        pid_file.unlink(missing_ok=True)


def _in_this_unit(launcher: Launcher) -> None:
    """Under a unit with ``Delegate=yes``: start the instance inside the unit's cgroup."""
    unit = cgroupns.delegated_unit()
    if unit is None:
        return
    try:
        start_from = cgroupns.arrange(unit)
    except OSError as err:
        launcher.report(f"warning: the instance gets Apptainer's own cgroup, outside this "
                        f"unit ({unit}: {err.strerror or err})")
        return
    launcher.wrapper = partial(cgroupns.wrapped, start_from=start_from)
    launcher.report(f"the instance starts in this unit's cgroup ({start_from})")


def _serve(launcher: Launcher, name: str, stopping: threading.Event, interval: float,
           notify: Notifier, status: Callable[[str], None], repairs: AutoRepair) -> int:
    info = apptainer.find(name)
    if info is None:
        return _died(launcher, notify, status)
    repairs.start()  # a reload while ColdFront boots is repaired once it is ready
    try:
        ready = launcher.wait_ready(info)
    except NotReadyError:
        status(f"{name} did not become ready: stopping it, so a restart starts afresh")
        _stop(launcher)
        raise
    notify.send(ready="1", status=f"ColdFront answers at {ready.url}")
    watchdog = watchdog_interval()
    pause = min(interval, watchdog) if watchdog else interval
    last_check = 0.0
    while not stopping.is_set():
        repairs.wake.wait(repairs.pause(pause))
        repairs.wake.clear()
        if stopping.is_set():
            break
        now = time.monotonic()
        if watchdog:
            notify.send(watchdog="1")
        if now - last_check >= interval:
            last_check = now
            if apptainer.find(name) is None:
                return _died(launcher, notify, status)
        repairs.turn()
    notify.send(stopping="1", status="stopping ColdFront")
    _stop(launcher)
    return ExitCode.OK


def _stop(launcher: Launcher, patience: float = 60) -> None:
    """Stop and undo; wait for a repair another process is making (it holds the lock)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            launcher.stop()
            return
        except LockedError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def _died(launcher: Launcher, notify: Notifier, status: Callable[[str], None]) -> int:
    status(f"instance {launcher.settings.name} died: undoing its host changes")
    _stop(launcher)
    return ExitCode.FAILURE
