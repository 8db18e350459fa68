"""Automatic repair under `cf-launch run`, with the real Apptainer, ColdFront, iptables and
(for the D-Bus part) the real firewalld on a private system bus, all in a sandbox
namespace: a `firewall-cmd --reload` deletes cf-launch's chains, and the supervisor puts
them back on firewalld's `Reloaded` signal; a flush is caught by the periodic check."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.host.firewalld import Firewalld, installed
from tests.host.harness import WORK, Sandbox, TestHost
from tests.integration.conftest import instance_config
from tests.unit.service.test_autorepair import wait_status
from tests.unit.service.test_supervisor import Systemd

pytestmark = pytest.mark.integration

NAME = "autorep"
BUS_DIR = f"{WORK}/autorep-bus"        # inside the test host; the socket is in there
NOTIFY = f"{WORK}/autorep.notify"      # cf-launch run's NOTIFY_SOCKET
LOGIN_PATH = "/user/login"


@pytest.fixture
def notify(testhost: TestHost) -> Iterator[Systemd]:
    path = testhost.path(NOTIFY)
    path.unlink(missing_ok=True)
    socket_end = Systemd(path)
    socket_end.sock.settimeout(0.2)
    yield socket_end
    socket_end.sock.close()
    path.unlink(missing_ok=True)


def login_within(box: Sandbox, seconds: float) -> float:
    """Seconds until the login page answers through DNAT from the client (fails after)."""
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        code, body = box.client_get(f"http://{box.host_addr}{LOGIN_PATH}", timeout=1)
        if code == 200 and "ColdFront" in body:
            return time.monotonic() - began
        time.sleep(0.2)
    raise AssertionError(f"the login page did not answer through DNAT within {seconds}s")


def supervise(testhost: TestHost, config: str, box: Sandbox, bus: str
              ) -> subprocess.Popen[str]:
    return testhost.spawn(["run"], config, box.host,
                          {"NOTIFY_SOCKET": NOTIFY, "DBUS_SYSTEM_BUS_ADDRESS": bus})


def finish(testhost: TestHost, config: str, box: Sandbox, run: subprocess.Popen[str]) -> str:
    """`cf-launch stop` asks the supervisor; it exits 0; its log."""
    testhost.cf(["stop"], config, box.host, check=False)
    try:
        code = run.wait(timeout=180)
    except subprocess.TimeoutExpired:
        run.kill()
        code = run.wait()
    log = run.stderr.read() if run.stderr else ""
    assert code == 0, log[-3000:]
    return log


def own_chains(testhost: TestHost, box: Sandbox) -> list[str]:
    saved = testhost.run(["iptables-save"], netns=box.host).stdout
    return [line for line in saved.splitlines() if line.startswith(":CF-LAUNCH-")]


def test_firewalld_reload_is_repaired_by_its_signal(testhost: TestHost, coldfront_image: str,
                                                    sandbox: Sandbox, notify: Systemd) -> None:
    if not installed():
        pytest.skip("needs firewalld and dbus-daemon (tests/run.sh installs them)")
    config = instance_config(testhost, NAME, coldfront_image, "drift_check_interval = 0\n")
    firewall = Firewalld(sandbox.host, testhost.path(BUS_DIR)).start()
    run = None
    try:
        run = supervise(testhost, config, sandbox, f"unix:path={BUS_DIR}/socket")
        notify.wait_for("READY", timeout=400)
        login_within(sandbox, 10)
        chains = own_chains(testhost, sandbox)
        assert len(chains) == 5, chains
        # firewalld's iptables (the machine's) and the test host's see the same tables.
        machine = subprocess.run(["nsenter", f"--net=/run/netns/{sandbox.host}",
                                  "iptables-save"], capture_output=True, text=True,
                                 check=True).stdout
        assert all(c.split()[0] in machine for c in chains)
        time.sleep(1)  # its watch connected long before READY; a margin all the same

        reloaded = time.monotonic()
        firewall.cmd("--reload")
        status = wait_status(notify, "repaired after firewalld reloaded: restored", 5)
        assert "chain nat/CF-LAUNCH-" in next(
            f["STATUS"] for _w, f in notify.messages if "repaired after" in f.get("STATUS", ""))
        login_within(sandbox, max(0.5, 5 - (time.monotonic() - reloaded)))
        assert status - reloaded < 5
        print(f"reload -> repaired (STATUS) {status - reloaded:.2f}s, -> login page through "
              f"DNAT {time.monotonic() - reloaded:.2f}s")
        assert own_chains(testhost, sandbox) == chains
        drift = json.loads(testhost.cf(["status", "--json"], config, sandbox.host).stdout)
        assert drift["drift"] == [] and drift["http_status"] == 200

        # A Docker host's FORWARD policy DROP, and firewalld 2.3's StrictForwardPorts (a
        # sample file: Debian's firewalld 1.3.3 has no such option): doctor names both.
        testhost.run(["sh", "-c", "iptables -N DOCKER-USER && iptables -P FORWARD DROP"],
                     netns=sandbox.host)
        testhost.write(f"{WORK}/autorep-firewalld.conf",
                       "DefaultZone=public\nStrictForwardPorts=yes\n")
        doctor = testhost.run(["/opt/cf-launch/bin/cf-launch", "--config", config, "doctor",
                               "--json"], netns=sandbox.host, check=False,
                              env={"CF_LAUNCH_FIREWALLD_CONF": f"{WORK}/autorep-firewalld.conf"})
        checks = {p["check"]: p for p in json.loads(doctor.stdout)["problems"]}
        assert "StrictForwardPorts=no" in checks["firewalld"]["hint"]
        assert "DOCKER-USER" in checks["docker"]["message"]
        # With that DROP policy, only cf-launch's own FORWARD chain lets ColdFront through:
        # a second reload (which keeps the policy) is repaired as well.
        firewall.cmd("--reload")
        login_within(sandbox, 5)
        assert testhost.run(["iptables", "-S", "FORWARD"], netns=sandbox.host).stdout \
            .startswith("-P FORWARD DROP")

        log = finish(testhost, config, sandbox, run)
        run = None
        assert "listening for firewalld's reloads on the system D-Bus" in log
        assert own_chains(testhost, sandbox) == [], "stop removed its chains"
    finally:
        if run is not None:
            testhost.cf(["stop"], config, sandbox.host, check=False)
            run.kill()
        firewall.stop()


def test_periodic_check_repairs_a_flush(testhost: TestHost, coldfront_image: str,
                                        sandbox: Sandbox, notify: Systemd) -> None:
    """No D-Bus at all (a socket that is not there): the 1 s drift check repairs a flush."""
    config = instance_config(testhost, NAME, coldfront_image, "drift_check_interval = 1\n")
    run = supervise(testhost, config, sandbox, f"unix:path={BUS_DIR}/none")
    try:
        notify.wait_for("READY", timeout=400)
        login_within(sandbox, 10)
        flushed = time.monotonic()
        testhost.run(["iptables", "-t", "nat", "-F"], netns=sandbox.host)
        repaired = wait_status(notify, "repaired after a drift check: restored", 5)
        login_within(sandbox, max(0.5, 5 - (time.monotonic() - flushed)))
        print(f"flush -> repaired (STATUS) {repaired - flushed:.2f}s, -> login page through "
              f"DNAT {time.monotonic() - flushed:.2f}s")
        log = finish(testhost, config, sandbox, run)
        run = None
        assert "the system D-Bus is not reachable" in log
    finally:
        if run is not None:
            testhost.cf(["stop"], config, sandbox.host, check=False)
            run.kill()
