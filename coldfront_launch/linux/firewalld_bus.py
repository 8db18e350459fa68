"""firewalld's D-Bus signals, for automatic repair under ``cf-launch run``.

A ``firewall-cmd --reload`` flushes the iptables tables, cf-launch's chains with them, and
then firewalld says ``Reloaded`` on the system bus (interface
``org.fedoraproject.FirewallD1``). A firewalld that stops or starts flushes them as well;
the bus says so with ``NameOwnerChanged``. :class:`FirewalldWatch` listens on a daemon
thread and calls back with a one-line reason; the supervisor repairs on its own thread.

It uses jeepney (pure Python, blocking I/O, the optional ``dbus`` extra). Without it,
:func:`available` is False and nothing listens: the periodic drift check remains.
The bus is the system bus, or ``$DBUS_SYSTEM_BUS_ADDRESS``.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable
from typing import Any

FIREWALLD = "org.fedoraproject.FirewallD1"
FIREWALLD_PATH = "/org/fedoraproject/FirewallD1"
RETRY = 10.0        # seconds between attempts to reach the bus
STARTUP_WAIT = 120  # seconds a starting firewalld may take to answer (it answers when done)


def available() -> bool:
    """jeepney is installed (``pip install 'coldfront-launch[dbus]'``)."""
    return importlib.util.find_spec("jeepney") is not None


class FirewalldWatch:
    """Calls ``on_change(reason)`` whenever firewalld reloaded, started or stopped."""

    def __init__(self, on_change: Callable[[str], None],
                 report: Callable[[str], None]) -> None:
        self.on_change = on_change
        self.report = report
        self.stopping = threading.Event()
        self.listening = threading.Event()
        self.thread = threading.Thread(target=self._run, name="firewalld-watch", daemon=True)

    def start(self) -> FirewalldWatch:
        self.thread.start()
        return self

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=2)

    def _run(self) -> None:
        said = ""
        while not self.stopping.is_set():
            try:
                self._listen()
            except Exception as err:  # noqa: BLE001 - a thread must say why it stopped
                reason = f"{type(err).__name__}: {err}".rstrip(": ")
                if reason != said:
                    self.report(f"firewalld's signals: the system D-Bus is not reachable "
                                f"({reason}); retrying every {RETRY:.0f}s")
                    said = reason
            self.listening.clear()
            self.stopping.wait(RETRY)

    def _listen(self) -> None:
        from jeepney import MatchRule, message_bus
        from jeepney.io.blocking import open_dbus_connection
        from jeepney.wrappers import unwrap_msg

        # The bus resolves the well-known sender to firewalld's unique name; jeepney's own
        # filter compares names as written, so it matches without the sender.
        ours = {"type": "signal", "interface": FIREWALLD, "member": "Reloaded",
                "path": FIREWALLD_PATH}
        reloaded = MatchRule(**ours)
        owner = MatchRule(type="signal", sender="org.freedesktop.DBus",
                          interface="org.freedesktop.DBus", member="NameOwnerChanged")
        owner.add_arg_condition(0, FIREWALLD)
        with open_dbus_connection(bus="SYSTEM") as conn:
            for rule in (MatchRule(sender=FIREWALLD, **ours), owner):
                unwrap_msg(conn.send_and_get_reply(message_bus.AddMatch(rule), timeout=10))
            with conn.filter(reloaded, bufsize=16) as reloads, \
                    conn.filter(owner, bufsize=16) as owners:
                self.report("listening for firewalld's reloads on the system D-Bus")
                self.listening.set()
                while not self.stopping.is_set():
                    self._dispatch(conn, reloads, owners)

    def _dispatch(self, conn: Any, reloads: Any, owners: Any) -> None:
        if not reloads and not owners:
            # Wakes for any message; the filters sort out ours.
            try:
                conn.recv_messages(timeout=1.0)
            except TimeoutError:
                return
        while reloads:
            reloads.popleft()
            self.on_change("firewalld reloaded")
        while owners:
            _name, _old, new = owners.popleft().body
            if not new:
                self.on_change("firewalld stopped")
                continue
            self._wait_started(conn)
            self.on_change("firewalld started")

    def _wait_started(self, conn: Any) -> None:
        """firewalld takes its name on the bus before it loads its rules, and answers calls
        only once it is done: ask it something, and wait for the answer."""
        from jeepney import DBusAddress, Properties

        address = DBusAddress(FIREWALLD_PATH, bus_name=FIREWALLD, interface=FIREWALLD)
        try:
            conn.send_and_get_reply(Properties(address).get("state"), timeout=STARTUP_WAIT)
        except TimeoutError:
            self.report(f"firewalld did not answer within {STARTUP_WAIT}s of starting")
