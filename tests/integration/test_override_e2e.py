"""The override hook with the real Apptainer: ColdFront shares a sandbox namespace that
stands in for the host's own network (issue: override hook)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.host.harness import Sandbox, TestHost, network_snapshot
from tests.integration.conftest import STATE_ROOT, instance_config

pytestmark = pytest.mark.integration

CAP_NET_ADMIN, CAP_NET_RAW = 12, 13
MANAGERS = ("systemd-networkd.service", "systemd-networkd.socket", "systemd-resolved.service",
            "NetworkManager.service")


@pytest.fixture
def override_box() -> Sandbox:
    box = Sandbox.create(net=8)
    yield box
    box.destroy()


def config_for(host: TestHost, name: str, image: str, box: Sandbox) -> str:
    return instance_config(host, name, image, f'hooks = ["override"]\n[hook.override]\n'
                           f'netns_path = "/run/netns/{box.host}"\n')


def inside(host: TestHost, name: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return host.run(["apptainer", "exec", f"instance://{name}", *argv], check=False)


def test_override_shares_network_safely(testhost: TestHost, managers_image: str,
                                        override_box: Sandbox) -> None:
    config = config_for(testhost, "cfover", managers_image, override_box)
    before = network_snapshot(override_box.host, testhost)
    resolv = testhost.path("/etc/resolv.conf").read_bytes()

    started = json.loads(testhost.cf(["start", "--json"], config, override_box.host).stdout)
    try:
        assert started["ready"] is True
        assert started["system_state"] == "running", started["failed_units"]
        assert started["instance"]["ip"] == "", "no CNI network: the host's own"
        code, body = override_box.client_get(f"http://{override_box.host_addr}/user/login")
        assert code == 200 and "ColdFront" in body

        for unit in MANAGERS:
            active = inside(testhost, "cfover", "systemctl", "is-active", unit).stdout.strip()
            failed = inside(testhost, "cfover", "systemctl", "is-failed", unit).stdout.strip()
            assert active == "inactive" and failed != "failed", f"{unit}: {active}/{failed}"
        state = inside(testhost, "cfover", "systemctl", "is-system-running").stdout.strip()
        assert state == "running"

        capbnd = inside(testhost, "cfover", "grep", "CapBnd", "/proc/1/status").stdout
        bits = int(capbnd.split()[1], 16)
        assert not bits & (1 << CAP_NET_ADMIN) and not bits & (1 << CAP_NET_RAW), capbnd
        refused = inside(testhost, "cfover", "systemd-run", "--wait", "--quiet", "ip", "link",
                         "set", "lo", "mtu", "1300")
        assert refused.returncode != 0, "a service inside must not change the host's links"
        assert "mtu 65536" in testhost.run(["ip", "link", "show", "lo"],
                                           netns=override_box.host).stdout
    finally:
        testhost.cf(["stop"], config, override_box.host)

    assert network_snapshot(override_box.host, testhost) == before
    assert testhost.path("/etc/resolv.conf").read_bytes() == resolv
    listed = json.loads(testhost.run(["apptainer", "instance", "list", "--json"]).stdout)
    assert all(i["instance"] != "cfover" for i in listed["instances"])
    state_dir = testhost.path(f"{STATE_ROOT}/cfover")
    assert not (state_dir / "binds").exists() and not (state_dir / "journal.jsonl").exists()


def test_busy_port_named_and_nothing_changed(testhost: TestHost, coldfront_image: str,
                                             override_box: Sandbox) -> None:
    config = config_for(testhost, "cfbusy", coldfront_image, override_box)
    squatter = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{override_box.host}", sys.executable, "-m",
         "http.server", "80"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            if ":80 " in testhost.run(["ss", "-Hltn"], netns=override_box.host).stdout:
                break
            time.sleep(0.1)
        before = network_snapshot(override_box.host, testhost)
        result = testhost.cf(["start"], config, override_box.host, check=False)
        assert result.returncode == 3
        assert "port 80 is already in use by python" in result.stderr
        assert f"(pid {squatter.pid})" in result.stderr
        assert "Traceback" not in result.stderr
        assert network_snapshot(override_box.host, testhost) == before
        listed = json.loads(testhost.run(["apptainer", "instance", "list", "--json"]).stdout)
        assert all(i["instance"] != "cfbusy" for i in listed["instances"])
        assert not testhost.path(f"{STATE_ROOT}/cfbusy/journal.jsonl").exists()
    finally:
        squatter.terminate()
        squatter.wait()
