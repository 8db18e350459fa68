"""netinfo reads links, addresses and routes with iproute2 and ``if_nametoindex`` (pyroute2's
import alone cost 0.13 s): in a sandbox namespace, its answers equal pyroute2's."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.host.harness import ROOT, Sandbox

pytestmark = pytest.mark.netns

PROBE = """
import json, socket, sys
from coldfront_launch import netinfo
from pyroute2.iproute import IPRoute

with IPRoute() as ipr:
    names = {l["index"]: l.get_attr("IFLA_IFNAME") for l in ipr.get_links()}
    best = None
    for r in ipr.get_routes(family=socket.AF_INET, table=254):
        if r["dst_len"] != 0 or r.get_attr("RTA_OIF") is None:
            continue
        m = r.get_attr("RTA_PRIORITY") or 0
        if best is None or m < best[0]:
            best = (m, names.get(r.get_attr("RTA_OIF"), ""))
    addrs = sorted(f"{names.get(a['index'], '')} {a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
                   for a in ipr.get_addr(family=socket.AF_INET))
    routes = sorted(f"{names.get(r.get_attr('RTA_OIF'), '')} {r.get_attr('RTA_DST')}/{r['dst_len']}"
                    for r in ipr.get_routes(family=socket.AF_INET, table=254) if r["dst_len"])
    kinds = {}
    for l in ipr.get_links():
        info = l.get_attr("IFLA_LINKINFO")
        kinds[l.get_attr("IFLA_IFNAME")] = (info.get_attr("IFLA_INFO_KIND") or "") if info else ""

print(json.dumps({
    "pyroute2": {"default": best[1] if best else None, "addrs": addrs, "routes": routes,
                 "kinds": kinds},
    "netinfo": {"default": netinfo.default_route_interface(),
                "addrs": sorted(f"{a.ifname} {a.network}" for a in netinfo.addresses()),
                "routes": sorted(f"{r.ifname} {r.dst}" for r in netinfo.routes()),
                "kinds": {n: netinfo.link_kind(n) for n in kinds}},
    "absent": [netinfo.link_kind("nope0"), netinfo.link_exists("nope0")],
}))
"""


@pytest.fixture
def box() -> Iterator[Sandbox]:
    sandbox = Sandbox.create(net=41)
    yield sandbox
    sandbox.destroy()


def ns(box: Sandbox, *argv: str) -> None:
    subprocess.run(["nsenter", f"--net=/run/netns/{box.host}", *argv], check=True,
                   capture_output=True)


def test_iproute2_answers_equal_pyroute2(box: Sandbox) -> None:
    ns(box, "ip", "link", "add", "cfltest0", "type", "bridge")
    ns(box, "ip", "link", "add", "cflv0", "type", "veth", "peer", "name", "cflv1")
    ns(box, "ip", "link", "set", "cflv0", "master", "cfltest0")
    ns(box, "ip", "addr", "add", "10.99.0.1/24", "dev", "cfltest0")
    ns(box, "ip", "link", "set", "cfltest0", "up")
    ns(box, "ip", "route", "add", "203.0.113.7", "via", box.client_addr)
    ns(box, "ip", "route", "del", "default")
    ns(box, "ip", "route", "add", "default", "via", box.client_addr, "metric", "100")
    ns(box, "ip", "route", "add", "default", "dev", "cfltest0", "metric", "50")
    result = subprocess.run(["nsenter", f"--net=/run/netns/{box.host}", sys.executable, "-c",
                             PROBE], capture_output=True, text=True, cwd=ROOT, check=False,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["netinfo"] == found["pyroute2"]
    assert found["netinfo"]["default"] == "cfltest0", "the lowest metric wins"
    assert found["netinfo"]["kinds"]["cfltest0"] == "bridge"
    assert found["absent"] == [None, False]

    delete = ("from coldfront_launch import netinfo\n"
              "netinfo.delete_link_if_unused('cfltest0')\n"
              "assert netinfo.link_exists('cfltest0'), 'a port is still attached'\n"
              "import subprocess; subprocess.run(['ip', 'link', 'del', 'cflv0'], check=True)\n"
              "netinfo.delete_link_if_unused('cfltest0')\n"
              "assert not netinfo.link_exists('cfltest0')\n")
    ns(box, sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r})\n" + delete)
