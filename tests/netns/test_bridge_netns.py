"""The bridge hook without Apptainer: host, container and external-client namespaces,
the real CNI bridge plugin, real iptables and real HTTP."""

from __future__ import annotations

import json
import os
import shutil
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
            # --bind ::: IPv6 and IPv4 (IPv4-mapped), for the IPv6 tests too
            ns_spawn(self.container, [sys.executable, "-m", "http.server", "--bind", "::",
                                      "80"], cwd=www),
            ns_spawn(self.container, [sys.executable, "-m", "http.server", "--bind", "::",
                                      "443"], cwd=www),
            ns_spawn(self.box.client, [sys.executable, "-c", PEER_SERVER]),
        ]
        wait_port(self.container, 80)
        wait_port(self.box.client, 8000)
        self.pid = self.procs[0].pid

    def driver(self, verb: str, *extra: str, env: dict[str, str] | None = None
               ) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "tests.netns.bridge_driver", verb, str(self.state),
                self.container]
        if verb == "start":
            argv.append(str(self.pid))
        return ns_run(self.box.host, [*argv, *extra], cwd=ROOT, timeout=120,
                      env={**os.environ, **(env or {})})

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
    offloads = ns_run(world.box.host, ["ethtool", "-k", "cflaunch0"]).stdout
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


def test_the_default_subnet_avoids_the_host_and_is_kept(world: World) -> None:
    """The pool's first /24 is routed on this host: the pick skips it, is recorded, and
    kept; a route that later overlaps the recorded subnet refuses start, naming the record."""
    ns_run(world.box.host, ["ip", "route", "add", "10.223.0.0/24", "dev", "ext0"], check=True)
    before = world.snapshot()
    started = world.driver("start")
    assert started.returncode == 0, started.stderr
    ip = json.loads(started.stdout)["ip"]
    assert ip.startswith("10.223.1."), ip
    record = json.loads((world.state / "networks.json").read_text())
    assert record == {"cf-launch": {"subnet": "10.223.1.0/24"}}
    assert "10.223.1.1/24" in ns_run(world.box.host, ["ip", "-4", "addr", "show",
                                                      "cflaunch0"]).stdout
    assert world.driver("stop").returncode == 0
    assert world.snapshot() == before

    ns_run(world.box.host, ["ip", "route", "add", "10.223.1.128/25", "dev", "ext0"],
           check=True)
    before = world.snapshot()
    refused = world.driver("start")
    assert refused.returncode != 0
    assert "10.223.1.0/24 overlaps route 10.223.1.128/25 via ext0" in refused.stderr
    assert "networks.json" in refused.stderr, "the hint names the record"
    assert world.snapshot() == before


RELEASE_0_1 = "b8f967c"  # the last commit of cf-launch 0.1 (untyped journal, claims v1)


def test_instance_started_by_0_1_stops_cleanly_after_upgrade(world: World,
                                                             tmp_path: Path) -> None:
    """0.1 journaled untyped undo actions and keyed claims by strings; this release
    migrates both on first read, so an upgrade in the middle of a run loses nothing."""
    old = tmp_path / "release-0.1"
    old.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", RELEASE_0_1],
                             capture_output=True, check=False)
    if archive.returncode != 0:
        pytest.skip(f"this clone lacks {RELEASE_0_1} (shallow?)")
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
    site = tmp_path / "site-0.1"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--target", str(site), str(old)],
                   check=True, capture_output=True)
    driver = tmp_path / "driver-0.1"  # 0.1's test driver, without 0.1's source tree
    shutil.copytree(old / "tests", driver / "tests")
    before = world.snapshot()
    env = {**os.environ, "PYTHONPATH": str(site)}
    started = ns_run(world.box.host, [sys.executable, "-m", "tests.netns.bridge_driver",
                                      "start", str(world.state), world.container,
                                      str(world.pid)], cwd=driver, env=env, timeout=120)
    assert started.returncode == 0, started.stderr
    journal = (world.state / "netnstest" / "journal.jsonl").read_text()
    assert '"kind": "netns"' in journal and "@" in (world.state / "claims.json").read_text(), \
        "0.1's formats were written"
    code, _body = world.box.client_get(f"http://{world.box.host_addr}/user/login")
    assert code == 200

    stopped = world.driver("stop")  # this release
    assert stopped.returncode == 0, stopped.stderr
    assert world.snapshot() == before
    assert not (world.state / "claims.json").exists()
    assert not (world.state / "netnstest" / "journal.jsonl").exists()


BREAKAGES = {
    "nat flushed": ["iptables", "-t", "nat", "-F"],
    "FORWARD flushed": ["iptables", "-F", "FORWARD"],
    "nft flush ruleset": ["nft", "flush", "ruleset"],
    "offloads on": ["ethtool", "-K", "cflaunch0", "tso", "on", "tx", "on"],
    "ip_forward off": ["sysctl", "-qw", "net.ipv4.ip_forward=0"],
}


@pytest.mark.parametrize("breakage", list(BREAKAGES), ids=list(BREAKAGES))
def test_drift_is_reported_and_repaired(world: World, breakage: str) -> None:
    """Others touch the firewall (a reload, an admin's flush): drift lists it, repair puts
    back only cf-launch's own chains, jumps and settings, from the journal."""
    before = world.snapshot()
    assert world.driver("start").returncode == 0
    url = f"http://{world.box.host_addr}/user/login"
    assert world.box.client_get(url)[0] == 200
    assert json.loads(world.driver("drift").stdout) == []

    ns_run(world.box.host, BREAKAGES[breakage], check=True)
    broken = world.snapshot()
    drift = json.loads(world.driver("drift").stdout)
    assert drift, f"{breakage} is reported"
    repaired = json.loads(world.driver("repair").stdout)
    assert repaired["restored"] == drift and repaired["cannot"] == []
    assert json.loads(world.driver("drift").stdout) == []
    assert world.box.client_get(url)[0] == 200, "ColdFront is reachable again"
    assert foreign_rules(world.snapshot()) == foreign_rules(broken), \
        "repair touched only cf-launch's own chains and jumps"
    assert json.loads(world.driver("repair").stdout)["restored"] == [], "idempotent"

    assert world.driver("stop").returncode == 0
    after = world.snapshot()
    assert "CF-LAUNCH-" not in after["iptables"] and after["sysctl"] == before["sysctl"]
    assert foreign_rules(after) == foreign_rules(broken)


def foreign_rules(snapshot: dict[str, str]) -> list[str]:
    """Others' rules and chain policies (table headers aside: iptables-nft brings a flushed
    table back with cf-launch's first rule in it)."""
    return [line for line in foreign_lines(snapshot["iptables"]) if not line.startswith("*")]
