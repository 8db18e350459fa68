"""ColdFront over IPv6 with the real Apptainer, CNI plugins and ip6tables (issue 28), in
sandbox namespaces with documentation prefixes only (2001:db8::/32, never routed):
bridge mode with ``subnet6`` (the login page over IPv6 and IPv4 through DNAT, teardown
identical), override mode over the host's own IPv6 (no 400 for the bracketed address),
and bridge mode in a namespace with IPv6 turned off (IPv4 only, no error)."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.host.harness import Sandbox, TestHost, network_snapshot
from tests.integration.conftest import instance_config
from tests.integration.test_override_e2e import config_for
from tests.netns.test_bridge_ipv6_netns import PEER6  # answers with the address it sees

pytestmark = pytest.mark.integration

SUBNET6 = "fd42:cf:7::/64"


def host6(box: Sandbox) -> str:
    return f"2001:db8:{box.net}::1"


METADATA6 = "fd00:ec2::254"
FETCH = ("import sys, urllib.request as u\n"
         "print(u.urlopen(sys.argv[1], timeout=4).read().decode())")
PYTHON = "/srv/coldfront/venv/bin/python"


def client6(box: Sandbox) -> str:
    return f"2001:db8:{box.net}::2"


@pytest.fixture
def box6() -> Iterator[Sandbox]:
    """A sandbox whose ext0 has IPv6 too (the host's default route via the client), and
    on the client a server at its own address and at the IPv6 metadata address."""
    box = Sandbox.create(net=61)
    for ns, addr in ((box.host, host6(box)), (box.client, client6(box))):
        _ns(ns, "ip", "-6", "addr", "add", f"{addr}/64", "dev", "ext0", "nodad")
    _ns(box.client, "ip", "-6", "addr", "add", f"{METADATA6}/128", "dev", "ext0", "nodad")
    _ns(box.host, "ip", "-6", "route", "add", "default", "via", client6(box))
    peer = subprocess.Popen(["nsenter", f"--net=/run/netns/{box.client}", sys.executable,
                             "-c", PEER6])
    yield box
    peer.terminate()
    peer.wait()
    box.destroy()


def inside(host: TestHost, name: str, box: Sandbox, url: str
           ) -> subprocess.CompletedProcess[str]:
    """A GET from inside the instance (its own Python)."""
    return host.run(["apptainer", "exec", f"instance://{name}", PYTHON, "-c", FETCH, url],
                    netns=box.host, check=False)


def _ns(ns: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", f"--net=/run/netns/{ns}", *argv], capture_output=True,
                          text=True, check=True)


def get6(box: Sandbox, url: str) -> tuple[str, str]:
    """An HTTP GET over IPv6 from the client: (status, body)."""
    out = subprocess.run(["nsenter", f"--net=/run/netns/{box.client}", "curl", "-g", "-s",
                          "-m", "15", "-o", "-", "-w", "\n%{http_code}", url],
                         capture_output=True, text=True, check=False).stdout
    body, _, code = out.rpartition("\n")
    return code, body


def test_bridge_serves_over_ipv6_and_ipv4(testhost: TestHost, coldfront_image: str,
                                          box6: Sandbox) -> None:
    config = instance_config(testhost, "cfsix", coldfront_image,
                             f'[hook.bridge]\nnetwork = "cf-six"\nbridge = "cflaunch6"\n'
                             f'subnet = "10.96.6.0/24"\nsubnet6 = "{SUBNET6}"\n')
    plain = instance_config(testhost, "cfsix-plain", coldfront_image)
    doctor = json.loads(testhost.cf(["doctor", "--json"], plain, box6.host, check=False).stdout)
    suggested = [p for p in doctor["problems"] if p["check"] == "ipv6"]
    assert suggested and not suggested[0]["fatal"] and "subnet6" in suggested[0]["hint"]
    before = network_snapshot(box6.host, testhost)
    try:
        plan = json.loads(testhost.cf(["plan", "--json"], config, box6.host).stdout)
        assert "<instance-ip6>" in json.dumps(plan["changes"])
        started = json.loads(testhost.cf(["start", "--json"], config, box6.host).stdout)
        assert started["ready"] is True, started
        addresses = testhost.run(["nsenter", "-t", str(started["instance"]["pid"]), "-n",
                                  "ip", "-6", "-br", "addr", "show", "scope", "global"],
                                 netns=box6.host).stdout
        assert any(ipaddress.IPv6Address(word.split("/")[0]) in ipaddress.IPv6Network(SUBNET6)
                   for word in addresses.split() if "/" in word and ":" in word), addresses
        code, body = get6(box6, f"http://[{host6(box6)}]/user/login")
        assert code == "200" and "ColdFront" in body, (code, body[:300])
        code4, body4 = box6.client_get(f"http://{box6.host_addr}/user/login")
        assert code4 == 200 and "ColdFront" in body4, "IPv4 as before"
        out = inside(testhost, "cfsix", box6, f"http://[{client6(box6)}]:8001/")
        assert out.stdout.strip() == host6(box6), "outbound IPv6, masqueraded: " + out.stderr
        refused = inside(testhost, "cfsix", box6, f"http://[{METADATA6}]:8001/")
        assert refused.returncode != 0 and refused.stdout.strip() == "", "metadata dropped"
        saved = testhost.run(["ip6tables-save"], netns=box6.host).stdout
        assert "fd00:ec2::254/128" in saved and "-j DNAT --to-destination [fd42:cf:7::" in saved
        status = json.loads(testhost.cf(["status", "--json"], config, box6.host).stdout)
        assert status["drift"] == [] and status["health"]["healthy"] is True
        assert ipaddress.IPv6Address(status["ip6"]) in ipaddress.IPv6Network(SUBNET6)
        shown = testhost.cf(["status"], config, box6.host).stdout
        assert f"ip6 {status['ip6']}" in shown
    finally:
        testhost.cf(["stop"], config, box6.host, check=False)
    assert network_snapshot(box6.host, testhost) == before, "ip6tables, sysctls: as before"


def test_override_answers_the_host_s_ipv6_address(testhost: TestHost, managers_image: str,
                                                  box6: Sandbox) -> None:
    config = config_for(testhost, "cfover6", managers_image, box6)
    try:
        started = json.loads(testhost.cf(["start", "--json"], config, box6.host).stdout)
        assert started["ready"] is True, started
        code, body = get6(box6, f"http://[{host6(box6)}]/user/login")
        assert code == "200" and "ColdFront" in body, "not 400: [address] is an allowed host"
    finally:
        testhost.cf(["stop"], config, box6.host, check=False)


def test_bridge_without_ipv6_in_the_namespace(testhost: TestHost, coldfront_image: str) -> None:
    box = Sandbox.create(net=62)
    try:
        _ns(box.host, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1")
        config = instance_config(testhost, "cfnosix", coldfront_image)
        before = network_snapshot(box.host, testhost)
        doctor = json.loads(testhost.cf(["doctor", "--json"], config, box.host,
                                        check=False).stdout)
        assert not [p for p in doctor["problems"] if p["check"] == "ipv6"], doctor
        started = json.loads(testhost.cf(["start", "--json"], config, box.host).stdout)
        assert started["ready"] is True
        assert box.client_get(f"http://{box.host_addr}/user/login")[0] == 200
        refused = testhost.cf(["plan"], instance_config(
            testhost, "cfnosix2", coldfront_image, f'[hook.bridge]\nsubnet6 = "{SUBNET6}"\n'
            'network = "cf-nosix"\nbridge = "cflaunch7"\n'), box.host, check=False)
        assert refused.returncode == 3 and "IPv6 is turned off" in refused.stdout + \
            refused.stderr
        testhost.cf(["stop"], config, box.host)
        assert network_snapshot(box.host, testhost) == before
    finally:
        box.destroy()


def test_prepare_attach_detach_carry_the_ipv6_rules(testhost: TestHost, coldfront_image: str,
                                                    box6: Sandbox) -> None:
    """A site's own `apptainer instance start` with the prepared options: attach adds the
    IPv6 rules too, detach removes them."""
    from tests.integration.test_embed_e2e import own_start_with_prepare, own_stop
    config = instance_config(testhost, "cfsixembed", coldfront_image,
                             f'[hook.bridge]\nnetwork = "cf-six"\nbridge = "cflaunch6"\n'
                             f'subnet = "10.96.6.0/24"\nsubnet6 = "{SUBNET6}"\n')
    before = network_snapshot(box6.host, testhost)
    try:
        own_start_with_prepare(testhost, box6.host, config, coldfront_image, "cfsixembed",
                               "--hook", "bridge")
        attached = json.loads(testhost.cf(["attach", "--json"], config, box6.host).stdout)
        assert attached["ready"] is True
        code, body = get6(box6, f"http://[{host6(box6)}]/user/login")
        assert code == "200" and "ColdFront" in body
        own_stop(testhost, box6.host, "cfsixembed")
        detached = json.loads(testhost.cf(["detach", "--json"], config, box6.host).stdout)
        assert detached["still_running"] is False
    finally:
        testhost.cf(["stop"], config, box6.host, check=False)
    assert network_snapshot(box6.host, testhost) == before
