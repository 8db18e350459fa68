"""`cf-launch run` under a stand-in for systemd's notify socket: READY only once ColdFront
answers, restart-worthy exit when the instance dies, a clean stop on SIGTERM and through
`cf-launch stop`. The unit it is made for passes `systemd-analyze verify`."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from coldfront_launch.changes import journal
from coldfront_launch.config.settings import settings_from_mapping
from coldfront_launch.service import units as service
from coldfront_launch.state.instance import InstanceState
from tests.conftest import SERVE_POLL
from tests.unit.lifecycle.test_launcher import _cli, _cli_argv, _config, recorder  # noqa: F401


class Systemd:
    """The notify socket end: every datagram, with when it came."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []

    def wait_for(self, key: str, timeout: float = 30) -> float:
        return self.wait_until(lambda fields: key in fields, key, timeout)

    def wait_until(self, match: Callable[[dict[str, str]], bool], what: str,
                   timeout: float = 30) -> float:
        """When the first message that ``match``es came (fails after ``timeout``)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for when, fields in self.messages:
                if match(fields):
                    return when
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                continue
            fields = dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
            self.messages.append((time.monotonic(), fields))
        raise AssertionError(f"no {what} in {self.messages}")


@pytest.fixture
def coldfront(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """ColdFront's login page, answering 503 for a moment after the first request (so the
    supervisor sees "not yet" at least once), then 200; records when it first did."""
    answered: list[float] = []
    asked: list[float] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            asked.append(time.monotonic())
            ok = len(asked) > 1 and asked[-1] >= asked[0] + 0.3
            if ok and not answered:  # noted before the answer leaves: no race with READY
                answered.append(time.monotonic())
            self.send_response(200 if ok else 503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(SERVE_POLL,), daemon=True).start()
    monkeypatch.setenv("RECORDER_ENDPOINT", json.dumps(["127.0.0.1", server.server_port]))
    yield answered
    server.shutdown()
    server.server_close()


def supervise(tmp_path: Path, systemd_socket: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "CF_LAUNCH_SYSTEM_CONFIG": str(tmp_path / "none"),
           "NOTIFY_SOCKET": str(systemd_socket)}
    return subprocess.Popen(_cli_argv(["--config", str(_config(tmp_path)), "run",
                                       "--interval", "0.2"]),
                            env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def test_ready_after_http_then_sigterm_stops_cleanly(fake_apptainer, recorder, coldfront,  # noqa: F811
                                                    tmp_path: Path) -> None:
    systemd = Systemd(tmp_path / "notify")
    run = supervise(tmp_path, tmp_path / "notify")
    try:
        ready = systemd.wait_for("READY")
        assert coldfront and ready >= coldfront[0], "READY=1 only once ColdFront answered"
        assert any("STATUS" in f for _w, f in systemd.messages if _w < ready), "STATUS first"
        assert (tmp_path / "etc" / "made-by-recorder.conf").exists()
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=30) == 0, run.stderr.read() if run.stderr else ""
    finally:
        run.kill()
    systemd.wait_for("STOPPING")
    assert not (tmp_path / "etc" / "made-by-recorder.conf").exists()
    assert journal.entries(InstanceState(tmp_path / "state" / "coldfront")) == []
    assert json.loads(Path(os.environ["FAKE_APPTAINER_STATE"]).read_text()) == {}


def test_instance_death_undoes_and_exits_non_zero(fake_apptainer, recorder, coldfront,  # noqa: F811
                                                 tmp_path: Path) -> None:
    systemd = Systemd(tmp_path / "notify")
    run = supervise(tmp_path, tmp_path / "notify")
    try:
        systemd.wait_for("READY")
        Path(os.environ["FAKE_APPTAINER_STATE"]).write_text("{}")  # the instance dies
        assert run.wait(timeout=30) == 1, "Restart=on-failure restarts it"
    finally:
        run.kill()
    assert not (tmp_path / "etc" / "made-by-recorder.conf").exists()
    assert journal.entries(InstanceState(tmp_path / "state" / "coldfront")) == []


def test_stop_asks_the_supervisor(fake_apptainer, recorder, coldfront, tmp_path: Path  # noqa: F811
                                  ) -> None:
    systemd = Systemd(tmp_path / "notify")
    run = supervise(tmp_path, tmp_path / "notify")
    env = {**os.environ, "CF_LAUNCH_SYSTEM_CONFIG": str(tmp_path / "none")}
    try:
        systemd.wait_for("READY")
        restart = _cli(["--config", str(_config(tmp_path)), "restart"], env)
        assert restart.returncode == 7 and "systemctl restart cf-launch@coldfront" in \
            restart.stderr
        stopped = _cli(["--config", str(_config(tmp_path)), "stop"], env)
        assert stopped.returncode == 0, stopped.stderr
        assert "asking the supervisor" in stopped.stderr
        assert run.wait(timeout=30) == 0, "a deliberate stop: systemd does not restart it"
    finally:
        run.kill()
    assert journal.entries(InstanceState(tmp_path / "state" / "coldfront")) == []


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_unit_verifies(tmp_path: Path) -> None:
    settings = settings_from_mapping({"state_root": str(tmp_path / "state"),
                                      "build": {"cache_dir": str(tmp_path / "cache")}})
    text = service.unit_text(["/usr/bin/env", "cf-launch", "--config", "/etc/cf.toml"],
                             settings)
    units = tmp_path / "units"
    units.mkdir()
    (units / service.TEMPLATE).write_text(text)
    assert "Type=notify" in text and "ExecStart=/usr/bin/env cf-launch --config " \
        "/etc/cf.toml run --name %i" in text
    assert f"RequiresMountsFor={tmp_path / 'state'} {tmp_path / 'cache'}" in text
    result = subprocess.run(["systemd-analyze", "verify", "--man=no",
                             str(units / "cf-launch@coldfront.service")],
                            capture_output=True, text=True, check=False,
                            env={"SYSTEMD_UNIT_PATH": f"{units}:", "PATH": "/usr/bin:/bin"})
    problems = [line for line in result.stderr.splitlines() if "cf-launch@" in line]
    assert result.returncode == 0 and not problems, result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_repair_unit_verifies(tmp_path: Path) -> None:
    text = service.repair_unit_text(["/usr/bin/env", "cf-launch", "--config", "/etc/cf.toml"])
    units = tmp_path / "units"
    units.mkdir()
    (units / service.REPAIR_UNIT).write_text(text)
    firewalls = "nftables.service iptables.service firewalld.service"
    for line in (f"PartOf={firewalls}", f"After={firewalls}", f"WantedBy={firewalls}",
                 "Type=oneshot", "RemainAfterExit=yes",
                 "ExecStart=/usr/bin/env cf-launch --config /etc/cf.toml repair --all"):
        assert line in text.splitlines(), line
    result = subprocess.run(["systemd-analyze", "verify", "--man=no",
                             str(units / service.REPAIR_UNIT)],
                            capture_output=True, text=True, check=False,
                            env={"SYSTEMD_UNIT_PATH": f"{units}:", "PATH": "/usr/bin:/bin"})
    problems = [line for line in result.stderr.splitlines() if service.REPAIR_UNIT in line]
    assert result.returncode == 0 and not problems, result.stderr


def test_service_install_repair_unit(tmp_path: Path) -> None:
    """--print shows it with the config fixed; --unit-dir writes it; remove deletes it."""
    config = tmp_path / "cf.toml"
    config.write_text(f'state_root = "{tmp_path / "state"}"\n')
    env = {**os.environ, "CF_LAUNCH_SYSTEM_CONFIG": str(tmp_path / "none"),
           "TEST_SYSCTL_ROOT": str(tmp_path / "sys")}
    base = ["--config", str(config), "service"]
    shown = _cli([*base, "install", "--repair-unit", "--print"], env)
    assert shown.returncode == 0, shown.stderr
    assert f"--config {config} repair --all" in shown.stdout
    assert "WantedBy=nftables.service iptables.service firewalld.service" in shown.stdout
    units = tmp_path / "units"
    wrote = _cli([*base, "install", "--repair-unit", "--unit-dir", str(units)], env)
    assert wrote.returncode == 0, wrote.stderr
    assert (units / service.REPAIR_UNIT).read_text() == shown.stdout
    assert not (units / service.TEMPLATE).exists(), "only the repair unit"
    removed = _cli([*base, "remove", "--repair-unit", "--unit-dir", str(units)], env)
    assert removed.returncode == 0 and not (units / service.REPAIR_UNIT).exists()
    again = _cli([*base, "remove", "--repair-unit", "--unit-dir", str(units)], env)
    assert again.returncode != 0 and "does not exist" in again.stderr
