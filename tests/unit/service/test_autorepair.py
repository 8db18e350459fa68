"""Automatic repair under `cf-launch run`: a periodic drift check, and firewalld's D-Bus
signals on a real (private) message bus, with this test standing in for firewalld. The
repaired change is the recorder plugin's sysctl, in a private stand-in for /proc/sys."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from coldfront_launch.changes import journal
from coldfront_launch.linux import firewalld_bus
from coldfront_launch.state.instance import InstanceState
from tests.unit.lifecycle.test_launcher import _cli, _cli_argv, _config, recorder  # noqa: F401
from tests.unit.service.test_supervisor import Systemd, coldfront  # noqa: F401

FIREWALLD = firewalld_bus.FIREWALLD
#: coldfront_launch/service/autorepair.py's RETRY (1 s) in the supervisor under test: a repair the
#: lock deferred is retried this often, so a window of a few RETRYs sees several retries.
RETRY = 0.1


def wait_status(systemd: Systemd, text: str, timeout: float) -> float:
    """When a STATUS= line containing ``text`` came (fails after ``timeout``)."""
    return systemd.wait_until(lambda fields: text in fields.get("STATUS", ""),
                              f"STATUS with {text!r}", timeout)


def supervise(tmp_path: Path, extra: str, env: dict[str, str] | None = None
              ) -> tuple[subprocess.Popen[str], Systemd]:
    systemd = Systemd(tmp_path / "notify")
    environ = {**os.environ, "CF_LAUNCH_SYSTEM_CONFIG": str(tmp_path / "none"),
               "NOTIFY_SOCKET": str(tmp_path / "notify"),
               "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={tmp_path / 'no-bus'}",
               "TEST_AUTOREPAIR_RETRY": str(RETRY), **(env or {})}
    run = subprocess.Popen(_cli_argv(["--config", str(_config(tmp_path, extra)), "run",
                                      "--interval", "0.2"]),
                           env=environ, text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    return run, systemd


def stop(run: subprocess.Popen[str]) -> str:
    """SIGTERM, a clean exit, and what it logged."""
    run.send_signal(signal.SIGTERM)
    code = run.wait(timeout=30)
    log = run.stderr.read() if run.stderr else ""
    assert code == 0, log
    return log


def forwarding(sysctl_root: Path) -> str:
    return (sysctl_root / "net/ipv4/ip_forward").read_text().strip()


def test_periodic_check_repairs(fake_apptainer, recorder, coldfront,  # noqa: F811
                                sysctl_root: Path, tmp_path: Path) -> None:
    run, systemd = supervise(tmp_path, "drift_check_interval = 0.5\n")
    try:
        systemd.wait_for("READY")
        assert forwarding(sysctl_root) == "1"
        (sysctl_root / "net/ipv4/ip_forward").write_text("0\n")  # a tuning script
        broke = time.monotonic()
        repaired = wait_status(systemd, "repaired after a drift check: restored", 5)
        assert forwarding(sysctl_root) == "1" and repaired - broke < 3
        log = stop(run)
    finally:
        run.kill()
    assert "sysctl net.ipv4.ip_forward" in log
    assert journal.entries(InstanceState(tmp_path / "state" / "coldfront")) == []


def test_no_check_when_off(fake_apptainer, recorder, coldfront,  # noqa: F811
                           sysctl_root: Path, tmp_path: Path) -> None:
    run, systemd = supervise(tmp_path, "drift_check_interval = 0\n")
    try:
        systemd.wait_for("READY")
        (sysctl_root / "net/ipv4/ip_forward").write_text("0\n")
        time.sleep(0.8)  # four turns of the loop (run --interval 0.2)
        assert forwarding(sysctl_root) == "0", "0 turns the periodic check off"
        stop(run)
    finally:
        run.kill()


class Bus:
    """A private dbus-daemon, and a connection on it that plays firewalld."""

    def __init__(self, tmp: Path) -> None:
        self.address = f"unix:path={tmp / 'bus'}"
        self.daemon = subprocess.Popen(
            ["dbus-daemon", "--session", "--nofork", "--nopidfile", f"--address={self.address}",
             "--print-address"], stdout=subprocess.PIPE, text=True)
        assert self.daemon.stdout is not None and self.daemon.stdout.readline()
        self.connect()

    def connect(self) -> None:
        """Connect and take firewalld's name, as firewalld does when it starts."""
        from jeepney import message_bus
        from jeepney.io.blocking import open_dbus_connection

        os.environ["DBUS_SESSION_BUS_ADDRESS"] = self.address
        self.conn = open_dbus_connection(bus="SESSION")
        del os.environ["DBUS_SESSION_BUS_ADDRESS"]
        reply = self.conn.send_and_get_reply(message_bus.RequestName(FIREWALLD), timeout=5)
        assert reply.body == (1,), "the stand-in owns firewalld's name"

    def listeners(self) -> int:
        """How many other connections the bus has (the supervisor's, once it listens)."""
        from jeepney import message_bus
        return len([n for n in self.conn.send_and_get_reply(message_bus.ListNames(),
                                                           timeout=5).body[0]
                    if n.startswith(":")]) - 1

    def reloaded(self) -> None:
        from jeepney import DBusAddress, new_signal
        self.conn.send(new_signal(DBusAddress(firewalld_bus.FIREWALLD_PATH, interface=FIREWALLD),
                                  "Reloaded"))

    def close(self) -> None:
        self.conn.close()
        self.daemon.terminate()
        self.daemon.wait(timeout=10)


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[Bus]:
    if shutil.which("dbus-daemon") is None or not firewalld_bus.available():
        pytest.skip("needs dbus-daemon and jeepney (tests/run.sh installs both)")
    private = Bus(tmp_path)
    yield private
    private.close()


def test_firewalld_reload_signal_repairs(fake_apptainer, recorder, coldfront,  # noqa: F811
                                         sysctl_root: Path, tmp_path: Path, bus: Bus) -> None:
    """drift_check_interval = 0: only the signals can have caused the repairs. While
    another process holds the instance lock, the supervisor defers, then repairs. firewalld
    stopping repairs at once; firewalld starting, once it answers (its rules are loaded)."""
    from jeepney import HeaderFields, new_method_return

    run, systemd = supervise(tmp_path, "drift_check_interval = 0\n",
                             {"DBUS_SYSTEM_BUS_ADDRESS": bus.address})
    state = InstanceState(tmp_path / "state" / "coldfront")
    try:
        systemd.wait_for("READY")
        end = time.monotonic() + 10
        while bus.listeners() < 1 and time.monotonic() < end:
            time.sleep(0.1)
        time.sleep(0.5)  # its match rules follow its connection
        (sysctl_root / "net/ipv4/ip_forward").write_text("0\n")
        time.sleep(0.6)  # three turns of the loop (run --interval 0.2)
        assert forwarding(sysctl_root) == "0", "nothing repairs without the signal"
        with state.locked():  # an administrator's `cf-launch repair`, say
            bus.reloaded()
            time.sleep(6 * RETRY)
            assert forwarding(sysctl_root) == "0", "the lock holder goes first"
        sent = time.monotonic()
        wait_status(systemd, "repaired after firewalld reloaded: restored", 5)
        assert forwarding(sysctl_root) == "1" and time.monotonic() - sent < 5

        (sysctl_root / "net/ipv4/ip_forward").write_text("0\n")
        bus.conn.close()  # firewalld stops: its name leaves the bus
        wait_status(systemd, "repaired after firewalld stopped: restored", 5)
        assert forwarding(sysctl_root) == "1"

        # firewalld starts: it takes its name first, loads its rules, and only then
        # answers calls. The repair waits for that answer.
        bus.connect()
        (sysctl_root / "net/ipv4/ip_forward").write_text("0\n")
        question = bus.conn.receive(timeout=5)
        assert question.header.fields[HeaderFields.member] == "Get"
        time.sleep(0.6)
        assert forwarding(sysctl_root) == "0", "no repair while firewalld loads its rules"
        answered = time.monotonic()
        bus.conn.send(new_method_return(question, "v", (("s", "RUNNING"),)))
        wait_status(systemd, "repaired after firewalld started: restored", 5)
        assert forwarding(sysctl_root) == "1" and time.monotonic() - answered < 5
        log = stop(run)
    finally:
        run.kill()
    assert "deferred: another cf-launch process" in log
    assert "listening for firewalld's reloads" in log
    assert journal.entries(state) == []


def test_repair_waits_for_a_busy_lock(fake_apptainer, recorder, coldfront,  # noqa: F811
                                      sysctl_root: Path, tmp_path: Path) -> None:
    """`cf-launch repair` while the supervisor repairs: it waits its turn, it does not fail."""
    env = {**os.environ, "CF_LAUNCH_SYSTEM_CONFIG": str(tmp_path / "none")}
    run, systemd = supervise(tmp_path, "drift_check_interval = 0\n")
    state = InstanceState(tmp_path / "state" / "coldfront")
    try:
        systemd.wait_for("READY")
        (sysctl_root / "net/ipv4/ip_forward").write_text("0\n")
        with state.locked():
            repair = subprocess.Popen(_cli_argv(["--config", str(_config(tmp_path, "")),
                                                 "repair", "--json"]),
                                      env=env, text=True, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE)
            time.sleep(1.5)
            assert repair.poll() is None, "it waits while the lock is held"
        out, err = repair.communicate(timeout=30)
        assert repair.returncode == 0, err
        assert json.loads(out) == [{"name": "coldfront", "running": True, "cannot": [],
                                    "restored": ["sysctl net.ipv4.ip_forward is 0, not 1"],
                                    "finished": []}]
        assert forwarding(sysctl_root) == "1"
        stop(run)
    finally:
        run.kill()


def test_repair_all_skips_stopped_instances(make_settings, fake_apptainer, recorder,  # noqa: F811
                                            sysctl_root: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """What a crash or a reboot left is not repaired (the next start cleans it up)."""
    from coldfront_launch.lifecycle.launcher import Launcher

    for name in ("coldfront", "ghost"):
        monkeypatch.setenv("RECORDER_FILE", str(tmp_path / "etc" / f"{name}.conf"))
        Launcher(make_settings(name=name, hooks=["recorder"])).start()
    state_file = Path(os.environ["FAKE_APPTAINER_STATE"])
    instances = json.loads(state_file.read_text())
    state_file.write_text(json.dumps({k: v for k, v in instances.items() if k != "ghost"}))
    (sysctl_root / "net/ipv4/ip_forward").write_text("0\n")
    env = {**os.environ, "CF_LAUNCH_SYSTEM_CONFIG": str(tmp_path / "none")}
    result = _cli(["--config", str(_config(tmp_path)), "repair", "--all", "--json"], env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        {"name": "coldfront", "running": True, "cannot": [],
         "restored": ["sysctl net.ipv4.ip_forward is 0, not 1"]},
        {"name": "ghost", "running": False, "cannot": [], "restored": []}]
    human = _cli(["--config", str(_config(tmp_path)), "repair", "--all"], env)
    assert "ghost: not running" in human.stdout and "coldfront: nothing missing" in human.stdout
    assert journal.entries(InstanceState(tmp_path / "state" / "ghost")), "left for the next start"


def test_stop_waits_for_a_repair_in_progress(fake_apptainer, recorder, coldfront,  # noqa: F811
                                             tmp_path: Path) -> None:
    """SIGTERM while another process (a repair) holds the lock: the stop waits its turn."""
    run, systemd = supervise(tmp_path, "drift_check_interval = 0\n")
    state = InstanceState(tmp_path / "state" / "coldfront")
    try:
        systemd.wait_for("READY")
        with state.locked():
            run.send_signal(signal.SIGTERM)
            time.sleep(0.6)  # _stop retries every 0.2 s (coldfront_launch/service/supervisor.py)
            assert run.poll() is None, "it waits for the lock"
        assert run.wait(timeout=30) == 0, run.stderr.read() if run.stderr else ""
    finally:
        run.kill()
    assert journal.entries(state) == []
