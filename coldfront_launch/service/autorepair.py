"""Automatic repair under ``cf-launch run``: when firewalld says it reloaded, started or
stopped (D-Bus, :mod:`coldfront_launch.linux.firewalld_bus`), and on a periodic drift check
(``drift_check_interval``), put back what the journal says cf-launch applied.

Repairs run on the supervisor's own thread (the D-Bus thread only asks), under the
instance lock like ``cf-launch repair``: when another cf-launch process holds the lock
(an administrator's ``repair``, the repair unit), the repair waits for the next turn of the
supervisor's loop, about a second later, instead of failing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from coldfront_launch.errors import LaunchError, LockedError
from coldfront_launch.lifecycle.launcher import Launcher
from coldfront_launch.linux import firewalld, firewalld_bus

RETRY = 1.0  # seconds before a repair the lock deferred is tried again


class AutoRepair:
    """What the supervisor's loop asks at each turn: is a repair due, and do it."""

    def __init__(self, launcher: Launcher, status: Callable[[str], None],
                 report: Callable[[str], None], wake: threading.Event) -> None:
        self.launcher = launcher
        self.status = status      # STATUS= and the log: what was restored
        self.report = report      # the log only
        self.wake = wake
        self.interval = launcher.settings.drift_check_interval
        self.next_check = time.monotonic() + self.interval
        self.pending = ""         # why a repair is wanted ("" for none)
        self.retry_at = 0.0
        self.cannot: list[str] = []
        self.guard = threading.Lock()
        self.watch: firewalld_bus.FirewalldWatch | None = None

    def start(self) -> None:
        """Listen to firewalld when jeepney is here; say what automatic repair covers."""
        checks = (f"a drift check every {self.interval:g}s" if self.interval
                  else "no periodic drift check (drift_check_interval = 0)")
        if firewalld_bus.available():
            self.watch = firewalld_bus.FirewalldWatch(self.request, self.report).start()
            self.report(f"automatic repair: on firewalld's signals; {checks}")
        elif firewalld.present():
            self.status("jeepney is not installed, so firewalld's reloads are not heard "
                        f"(pip install 'coldfront-launch[dbus]'); automatic repair: {checks}")
        else:
            self.report(f"automatic repair: {checks}")

    def close(self) -> None:
        if self.watch is not None:
            self.watch.close()

    def request(self, reason: str) -> None:
        """Ask for a repair (from any thread)."""
        with self.guard:
            self.pending = self.pending or reason
        self.wake.set()

    def pause(self, longest: float) -> float:
        """How long the loop may sleep before this needs a turn."""
        now = time.monotonic()
        due = [longest]
        if self.interval:
            due.append(self.next_check - now)
        if self.pending:
            due.append(self.retry_at - now)
        return max(0.05, min(due))

    def turn(self) -> None:
        """Repair if asked to, or if the periodic check finds drift."""
        now = time.monotonic()
        if self.interval and now >= self.next_check:
            self.next_check = now + self.interval
            try:
                found = self.launcher.drift()
            except LaunchError as err:
                self.report(f"drift check failed: {err}")
                found = []
            if found:
                self.request("a drift check")
        with self.guard:
            reason = self.pending
        if reason and now >= self.retry_at:
            self.repair(reason)

    def repair(self, reason: str) -> None:
        try:
            result = self.launcher.repair()
        except LockedError as err:
            if not self.retry_at:  # said once per wait, not every second
                self.report(f"repair after {reason} deferred: {err}")
            self.retry_at = time.monotonic() + RETRY
            return
        except LaunchError as err:
            self.status(f"automatic repair after {reason} failed: {err}")
            result = {"restored": [], "cannot": []}
        with self.guard:
            self.pending = ""
        self.retry_at = 0.0
        restored, cannot = result["restored"], result["cannot"]
        if restored:
            self.status(f"repaired after {reason}: restored " + "; ".join(restored))
        elif not cannot:
            self.report(f"{reason}: nothing of cf-launch's was missing")
        if cannot and cannot != self.cannot:
            self.status("cannot repair " + "; ".join(cannot) +
                        f" (restart: systemctl restart cf-launch@{self.launcher.settings.name})")
        self.cannot = cannot
