"""IPv6 beside IPv4 on the bridge network (issue 28), without Apptainer: the real CNI
bridge plugin gives the container an address of each family; a client reaches it over
IPv6 through cf-launch's ip6tables DNAT, its outbound IPv6 is masqueraded, the IPv6
metadata address is dropped, and stop leaves ip6tables and the sysctls as they were.
Documentation and unique local prefixes only (2001:db8::/32, fd42:cf:9::/64)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns.test_bridge_netns import FOREIGN, World, ns_run, ns_spawn, wait_port

pytestmark = pytest.mark.netns

HOST6, CLIENT6, METADATA6 = "2001:db8:9::1", "2001:db8:9::2", "fd00:ec2::254"
SUBNET6 = "fd42:cf:9::/64"
V6 = {"CF_TEST_SUBNET6": SUBNET6}
PEER6 = """
import http.server, socket
class S(http.server.HTTPServer):
    address_family = socket.AF_INET6
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers()
        self.wfile.write(self.client_address[0].encode())
    def log_message(self, *a): pass
S(("::", 8001), H).serve_forever()
"""
FOREIGN6 = [["ip6tables", "-A", "FORWARD", "-s", "2001:db8:dead::7", "-j", "DROP"],
            ["ip6tables", "-t", "nat", "-N", "V6-LIKE"]]


@pytest.fixture
def world6(tmp_path: Path) -> Iterator[World]:
    """The IPv4 world, with IPv6 on ext0 (host default route via the client), a peer
    server on the client and the metadata address there too (it would answer)."""
    w = World(tmp_path)
    box = w.box
    for ns, addr in ((box.host, HOST6), (box.client, CLIENT6)):
        ns_run(ns, ["ip", "-6", "addr", "add", f"{addr}/64", "dev", "ext0", "nodad"],
               check=True)
    ns_run(box.client, ["ip", "-6", "addr", "add", f"{METADATA6}/128", "dev", "ext0",
                        "nodad"], check=True)
    ns_run(box.host, ["ip", "-6", "route", "add", "default", "via", CLIENT6], check=True)
    ns_run(box.client, ["ip", "-6", "route", "add", "fd42:cf:9::/64", "via", HOST6],
           check=True)  # only for the metadata check: a reply path if the drop failed
    for rule in FOREIGN + FOREIGN6:
        ns_run(box.host, rule, check=True)
    w.procs.append(ns_spawn(box.client, [sys.executable, "-c", PEER6]))
    wait_port(box.client, 8001)
    yield w
    w.driver("stop", env=V6)
    w.close()


def curl(ns: str, url: str, seconds: int = 5) -> subprocess.CompletedProcess[str]:
    return ns_run(ns, ["curl", "-g", "-s", "-m", str(seconds), url])


def test_ipv6_dnat_masquerade_metadata_and_exact_teardown(world6: World) -> None:
    box = world6.box
    before = world6.snapshot()
    accept_ra = ns_run(box.host, ["sysctl", "-n", "net.ipv6.conf.ext0.accept_ra"]).stdout
    started = world6.driver("start", env=V6)
    assert started.returncode == 0, started.stderr
    changes = json.dumps(json.loads(started.stdout)["changes"])
    assert "net.ipv6.conf.all.forwarding" in changes and '"family": "ipv6"' in changes
    inside = ns_run(world6.container, ["ip", "-6", "-br", "addr", "show", "eth0"]).stdout
    assert "fd42:cf:9::" in inside, inside

    page = curl(box.client, f"http://[{HOST6}]/user/login")
    assert page.stdout == "container page\n", "client -> [host]:80 -> container (DNAT)"
    assert curl(box.client, f"http://[{HOST6}]:8443/user/login").stdout == "container page\n"
    local = curl(box.host, f"http://[{HOST6}]/user/login")
    assert local.stdout == "container page\n", "the host reaches its own forwarded port"
    out = curl(world6.container, f"http://[{CLIENT6}]:8001/")
    assert out.stdout == HOST6, "the client sees the host's IPv6 address (MASQUERADE)"
    metadata = curl(world6.container, f"http://[{METADATA6}]:8001/", seconds=3)
    assert metadata.stdout == "", "the IPv6 metadata address is dropped"
    assert ns_run(box.host, ["sysctl", "-n", "net.ipv6.conf.all.forwarding"]).stdout == "1\n"
    assert ns_run(box.host, ["sysctl", "-n", "net.ipv6.conf.ext0.accept_ra"]).stdout == \
        "2\n", "router advertisements still heard with forwarding on"
    saved = ns_run(box.host, ["ip6tables-save"]).stdout
    assert "V6-LIKE" in saved and "2001:db8:dead::7" in saved, "foreign rules kept"

    drift = json.loads(world6.driver("drift", env=V6).stdout)
    assert drift == [], drift
    ns_run(box.host, ["ip6tables", "-t", "nat", "-F"], check=True)
    drifted = json.loads(world6.driver("drift", env=V6).stdout)
    assert drifted, "a flushed ip6tables nat table is drift"
    repaired = world6.driver("repair", env=V6)
    assert repaired.returncode == 0, repaired.stderr
    assert curl(box.client, f"http://[{HOST6}]/user/login").stdout == "container page\n"

    stopped = world6.driver("stop", env=V6)
    assert stopped.returncode == 0, stopped.stderr
    after = world6.snapshot()
    assert {k: v for k, v in after.items() if k != "ip6tables"} == \
        {k: v for k, v in before.items() if k != "ip6tables"}
    # the flush above removed the foreign nat chain V6-LIKE too: everything else is as before
    assert [line for line in after["ip6tables"].splitlines() if "V6-LIKE" not in line] == \
        [line for line in before["ip6tables"].splitlines() if "V6-LIKE" not in line]
    assert ns_run(box.host, ["sysctl", "-n", "net.ipv6.conf.ext0.accept_ra"]).stdout == \
        accept_ra


def test_ipv4_only_by_default_leaves_ip6tables_alone(world6: World) -> None:
    before = world6.snapshot()
    started = world6.driver("start")
    assert started.returncode == 0, started.stderr
    assert world6.snapshot()["ip6tables"] == before["ip6tables"]
    assert "ipv6" not in json.dumps(json.loads(started.stdout)["changes"])
    assert world6.driver("stop").returncode == 0
    assert world6.snapshot() == before
