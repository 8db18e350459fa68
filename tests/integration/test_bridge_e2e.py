"""cf-launch with the real Apptainer, ColdFront, CNI bridge and iptables, in a sandbox
namespace standing in for the host (issues: integration host, bridge hook)."""

from __future__ import annotations

import ipaddress
import json
import subprocess

import pytest

from tests.host.harness import Sandbox, TestHost, network_snapshot
from tests.integration.conftest import instance_config, recorded_subnet

pytestmark = pytest.mark.integration

FOREIGN_RULES = (
    "iptables -t nat -N FOREIGN-NAT && iptables -t nat -A FOREIGN-NAT -j RETURN && "
    "iptables -t nat -A POSTROUTING -s 192.0.2.0/24 -j FOREIGN-NAT && "
    "iptables -A FORWARD -s 192.0.2.7 -j DROP && "
    "iptables -t mangle -A FORWARD -s 192.0.2.8 -j ACCEPT"
)
PYSHELL = "/srv/coldfront/venv/bin/coldfront"


def coldfront_python(host: TestHost, name: str, code: str) -> str:
    return host.run(["/opt/cf-launch/bin/cf-launch", "exec", name, "--", PYSHELL, "shell",
                     "-c", code]).stdout.strip().splitlines()[-1]


def test_bridge_lifecycle(testhost: TestHost, coldfront_image: str, sandbox: Sandbox) -> None:
    config = instance_config(testhost, "cfbridge", coldfront_image)
    testhost.run(["sh", "-c", FOREIGN_RULES], netns=sandbox.host)
    before = network_snapshot(sandbox.host, testhost)
    assert "FOREIGN-NAT" in before["iptables"]

    try:
        plan = json.loads(testhost.cf(["plan", "--json"], config, sandbox.host).stdout)
        assert not [p for p in plan["problems"] if p["fatal"]]
        # Apptainer's own default network (sbr0, 10.22.0.0/16) is not cf-launch's: no
        # warning. (The core's own notes, e.g. cgroup v1 on this machine, are left out.)
        assert [p["message"] for p in plan["problems"] if p["check"] != "cgroup"] == []
        doctor = testhost.cf(["doctor", "--json"], config, sandbox.host, check=False)
        assert json.loads(doctor.stdout)["ok"] is True, doctor.stdout
        result = testhost.cf(["start", "--json"], config, sandbox.host)
        assert "start failed" not in result.stderr and "error" not in result.stderr, \
            "no copy of the process (e.g. a fork) may run the failure path"
        started = json.loads(result.stdout)
        assert started["ready"] is True
        assert started["system_state"] == "running", started["failed_units"]
        ip = started["instance"]["ip"]
        subnet = recorded_subnet(testhost)
        assert ipaddress.IPv4Address(ip.split("/")[0]) in subnet

        # plan printed exactly what start did, bar the address and veth known only after start.
        veth = next(c["target"] for c in started["changes"]
                    if c["kind"] == "offloads" and c["target"] != "cflaunch0")
        planned = json.dumps(plan["changes"]).replace("<instance-ip>", ip) \
            .replace("<instance-veth>", veth)
        assert json.loads(planned) == started["changes"]

        status = json.loads(testhost.cf(["status", "--json"], config, sandbox.host).stdout)
        assert status["running"] and status["instance"]["ip"] == ip
        assert status["http_status"] == 200 and status["system_state"] == "running"

        code, body = sandbox.client_get(f"http://{sandbox.host_addr}/user/login")
        assert code == 200 and "ColdFront" in body, "the external client reaches ColdFront (DNAT)"
        local = testhost.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                              f"http://{sandbox.host_addr}/user/login"], netns=sandbox.host)
        assert local.stdout == "200", "a client on the host itself reaches its forwarded port"

        coldfront_python(testhost, "cfbridge", "from django.contrib.auth.models import User; "
                         "User.objects.create_user('alice', password='e2e-only')")
        testhost.run(["/opt/cf-launch/bin/cf-launch", "exec", "cfbridge", "--", "sh", "-c",
                      "mkdir -p /etc/letsencrypt/live/site && openssl req -x509 -newkey "
                      "rsa:2048 -nodes -days 2 -subj /CN=test -keyout "
                      "/etc/letsencrypt/live/site/privkey.pem -out "
                      "/etc/letsencrypt/live/site/fullchain.pem 2>/dev/null"])
        restarted = json.loads(testhost.cf(["restart", "--json"], config, sandbox.host).stdout)
        assert restarted["ready"] is True
        assert recorded_subnet(testhost) == subnet, "the recorded subnet is kept"
        assert ipaddress.IPv4Address(restarted["instance"]["ip"].split("/")[0]) in subnet
        exists = coldfront_python(testhost, "cfbridge", "from django.contrib.auth.models "
                                  "import User; print(User.objects.filter(username='alice')"
                                  ".exists())")
        assert exists == "True"
        tls = subprocess.run(["nsenter", f"--net=/run/netns/{sandbox.client}", "curl", "-sk",
                              "-o", "/dev/null", "-w", "%{http_code}",
                              f"https://{sandbox.host_addr}/user/login"],
                             capture_output=True, text=True, check=False)
        assert tls.stdout == "200", "443 is served once a certificate is in /etc/letsencrypt"

    finally:
        testhost.cf(["stop"], config, sandbox.host, check=False)
    listed = json.loads(testhost.run(["apptainer", "instance", "list", "--json"]).stdout)
    assert all(i["instance"] != "cfbridge" for i in listed["instances"])
    after = network_snapshot(sandbox.host, testhost)
    assert after == before, "stop must restore links, routes, firewall and sysctls exactly"
    assert not testhost.path("/etc/apptainer/network/50_cf-launch.conflist").exists()


def test_two_instances_and_port_conflict(testhost: TestHost, coldfront_image: str,
                                         sandbox: Sandbox) -> None:
    before = network_snapshot(sandbox.host, testhost)
    first = instance_config(testhost, "cfone", coldfront_image)
    second = instance_config(testhost, "cftwo", coldfront_image,
                             '[hook.bridge]\nports = ["8080:80", "8443:443"]\n')
    clash = instance_config(testhost, "cfclash", coldfront_image,
                            '[hook.bridge]\nports = [80]\n')
    one = json.loads(testhost.cf(["start", "--json"], first, sandbox.host).stdout)
    try:
        two = json.loads(testhost.cf(["start", "--json"], second, sandbox.host).stdout)
        assert one["instance"]["ip"] != two["instance"]["ip"]
        assert sandbox.client_get(f"http://{sandbox.host_addr}/user/login")[0] == 200
        assert sandbox.client_get(f"http://{sandbox.host_addr}:8080/user/login")[0] == 200

        refused = testhost.cf(["start"], clash, sandbox.host, check=False)
        assert refused.returncode == 3
        assert "host port 80 is already forwarded to cf-launch instance cfone" in refused.stderr
        assert "Traceback" not in refused.stderr
        same_ip = instance_config(testhost, "cfsameip", coldfront_image,
                                  f'[hook.bridge]\nports = ["9090:80"]\n'
                                  f'subnet = "{recorded_subnet(testhost)}"\n'
                                  f'ip = "{one["instance"]["ip"]}"\n')
        taken = testhost.cf(["start"], same_ip, sandbox.host, check=False)
        assert taken.returncode == 3
        assert f"{one['instance']['ip']} is already used by instance cfone" in taken.stderr

        testhost.cf(["stop"], first, sandbox.host)
        assert sandbox.client_get(f"http://{sandbox.host_addr}/user/login", timeout=3)[0] == 0
        assert sandbox.client_get(f"http://{sandbox.host_addr}:8080/user/login")[0] == 200, \
            "stopping one instance leaves the other's rules alone"
    finally:
        for config in (first, second):
            testhost.cf(["stop"], config, sandbox.host, check=False)
    assert network_snapshot(sandbox.host, testhost) == before


def test_plain_apptainer_network_and_cf_launch_never_share(
        testhost: TestHost, coldfront_image: str, sandbox: Sandbox) -> None:
    """Issue 26: an instance on Apptainer's default network (`--net`: `bridge`, sbr0,
    10.22.0.0/16, its own address store) and a cf-launch instance once could get the same
    address on the same bridge. Now each has its own bridge and its own subnet."""
    config = instance_config(testhost, "cfapart", coldfront_image)
    plain = "plainnet"
    try:
        ours = json.loads(testhost.cf(["start", "--json"], config, sandbox.host).stdout)
        testhost.run(["apptainer", "instance", "start", "--net", coldfront_image, plain],
                     netns=sandbox.host)
        listed = json.loads(testhost.run(["apptainer", "instance", "list", "--json"],
                                         netns=sandbox.host).stdout)["instances"]
        theirs = next(i["ip"] for i in listed if i["instance"] == plain)
        mine = ipaddress.IPv4Address(ours["instance"]["ip"].split("/")[0])
        assert ipaddress.IPv4Address(theirs.split("/")[0]) in \
            ipaddress.IPv4Network("10.22.0.0/16"), theirs
        assert mine in recorded_subnet(testhost) and str(mine) != theirs.split("/")[0]
        links = {bridge: testhost.run(["ip", "-o", "link", "show", "master", bridge],
                                      netns=sandbox.host).stdout.count("\n")
                 for bridge in ("sbr0", "cflaunch0")}
        assert links == {"sbr0": 1, "cflaunch0": 1}, "one veth on each bridge"
        code, body = sandbox.client_get(f"http://{sandbox.host_addr}/user/login")
        assert code == 200 and "ColdFront" in body, "DNAT reaches cf-launch's instance"
    finally:
        testhost.run(["apptainer", "instance", "stop", plain], netns=sandbox.host,
                     check=False)
        testhost.cf(["stop"], config, sandbox.host, check=False)
    assert not testhost.path("/etc/apptainer/network/50_cf-launch.conflist").exists()
