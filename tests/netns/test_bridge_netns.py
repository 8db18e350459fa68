"""The bridge hook without Apptainer: host, container and external-client namespaces,
the real CNI bridge plugin, real iptables and real HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.host.harness import ROOT, Sandbox, network_snapshot

pytestmark = pytest.mark.netns

FOREIGN = [
    ["iptables", "-t", "nat", "-N", "DOCKER-LIKE"],
    ["iptables", "-t", "nat", "-A", "DOCKER-LIKE", "-d", "192.0.2.9", "-j", "RETURN"],
    ["iptables", "-t", "nat", "-A", "PREROUTING", "-j", "DOCKER-LIKE"],
    ["iptables", "-A", "FORWARD", "-s", "192.0.2.7", "-j", "DROP"],
    ["iptables", "-P", "FORWARD", "DROP"],
]
PEER_SERVER = """
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers()
        self.wfile.write(self.client_address[0].encode())
    def log_message(self, *a): pass
http.server.HTTPServer(("0.0.0.0", 8000), H).serve_forever()
"""


def ns_run(ns: str, argv: list[str], **kw) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run(["nsenter", f"--net=/run/netns/{ns}", *argv], capture_output=True,
                          text=True, **kw)


def ns_spawn(ns: str, argv: list[str], cwd: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(["nsenter", f"--net=/run/netns/{ns}", *argv], cwd=cwd, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_port(ns: str, port: int) -> None:
    for _ in range(50):
        if f":{port} " in ns_run(ns, ["ss", "-Hltn"]).stdout:
            return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port} in {ns}")


class World:
    """host + client (a Sandbox) and a container namespace serving HTTP on 80 and 443."""

    def __init__(self, tmp: Path) -> None:
        if os.geteuid() != 0:
            pytest.skip("needs root")
        self.box = Sandbox.create(net=9)
        self.container = self.box.host.replace("h", "k", 1)
        subprocess.run(["ip", "netns", "add", self.container], check=True)
        subprocess.run(["ip", "-n", self.container, "link", "set", "lo", "up"], check=True)
        self.state = tmp / "state"
        self.state.mkdir()
        www = tmp / "www"
        (www / "user").mkdir(parents=True)
        (www / "user" / "login").write_text("container page\n")
        self.procs = [
            ns_spawn(self.container, [sys.executable, "-m", "http.server", "80"], cwd=www),
            ns_spawn(self.container, [sys.executable, "-m", "http.server", "443"], cwd=www),
            ns_spawn(self.box.client, [sys.executable, "-c", PEER_SERVER]),
        ]
        wait_port(self.container, 80)
        wait_port(self.box.client, 8000)
        self.pid = self.procs[0].pid

    def driver(self, verb: str, *extra: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "tests.netns.bridge_driver", verb, str(self.state),
                self.container]
        if verb == "start":
            argv.append(str(self.pid))
        return ns_run(self.box.host, [*argv, *extra], cwd=ROOT, timeout=120)

    def snapshot(self) -> dict[str, str]:
        return network_snapshot(self.box.host)

    def close(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
            proc.wait()
        subprocess.run(["ip", "netns", "del", self.container], check=False)
        self.box.destroy()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    for rule in FOREIGN:
        ns_run(w.box.host, rule, check=True)
    yield w
    w.driver("stop")
    w.close()


def foreign_lines(saved: str) -> list[str]:
    """Every line of the rulesets except those of cf-launch's own chains and jumps."""
    return [line for line in saved.splitlines() if "CF-LAUNCH-" not in line
            and "cf-launch:" not in line and not line.startswith(("*mangle", ":", "COMMIT"))
            or line.startswith(":FORWARD DROP")]


def test_forwarding_masquerade_and_exact_teardown(world: World) -> None:
    before = world.snapshot()
    started = world.driver("start")
    assert started.returncode == 0, started.stderr + started.stdout
    ip = json.loads(started.stdout)["ip"]

    code, body = world.box.client_get(f"http://{world.box.host_addr}/user/login")
    assert (code, body) == (200, "container page\n"), "client -> host:80 -> container (DNAT)"
    code, body = world.box.client_get(f"http://{world.box.host_addr}:8443/user/login")
    assert (code, body) == (200, "container page\n"), "host port 8443 -> container port 443"
    out = ns_run(world.container, ["curl", "-s", "-m", "5",
                                   f"http://{world.box.client_addr}:8000/"])
    assert out.stdout == world.box.host_addr, "the client sees the host's address (MASQUERADE)"
    local = ns_run(world.box.host, ["curl", "-s", "-m", "5",
                                    f"http://{world.box.host_addr}/user/login"])
    assert local.stdout == "container page\n", "the host reaches its own forwarded port"

    during = world.snapshot()
    assert foreign_lines(during["iptables"]) == foreign_lines(before["iptables"])
    assert ip in during["iptables"]
    offloads = ns_run(world.box.host, ["ethtool", "-k", "sbr0"]).stdout
    assert "tcp-segmentation-offload: off" in offloads
    assert "tx-checksumming: off" in offloads

    again = world.driver("start")
    assert again.returncode == 0, again.stderr
    assert world.snapshot()["iptables"] == during["iptables"], "starting twice is idempotent"

    stopped = world.driver("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert world.snapshot() == before, "stop restores the namespace exactly"


def test_kill_mid_start_then_stop_restores(world: World) -> None:
    before = world.snapshot()
    killed = world.driver("start", "--kill")
    assert killed.returncode == -signal.SIGKILL or killed.returncode == 128 + 9, killed.stderr
    assert "CF-LAUNCH-" in world.snapshot()["iptables"], "the kill came after rules went in"
    stopped = world.driver("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert world.snapshot() == before


def test_subnet_overlap_rejected_before_change(world: World) -> None:
    ns_run(world.box.host, ["ip", "route", "add", "10.22.5.0/24", "dev", "ext0"], check=True)
    before = world.snapshot()
    refused = world.driver("start")
    assert refused.returncode != 0
    assert "10.22.0.0/16 overlaps route 10.22.5.0/24 via ext0" in refused.stderr
    assert world.snapshot() == before
