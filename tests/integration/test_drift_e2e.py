"""Drift and repair with the real Apptainer, ColdFront, CNI bridge and iptables: five ways
others break the firewall, one boot (issue: stay reachable when others touch the firewall).
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.host.harness import Sandbox, TestHost, network_snapshot
from tests.integration.conftest import instance_config
from tests.integration.test_bridge_e2e import FOREIGN_RULES
from tests.netns.test_bridge_netns import BREAKAGES, foreign_lines

pytestmark = pytest.mark.integration

DRIFTED = 9  # the README's exit-code table: running, but drifted


def _foreign(snapshot: dict[str, str]) -> list[str]:
    return [line for line in foreign_lines(snapshot["iptables"]) if not line.startswith("*")]


def test_every_breakage_is_reported_and_repaired(testhost: TestHost, coldfront_image: str,
                                                 sandbox: Sandbox) -> None:
    config = instance_config(testhost, "cfdrift", coldfront_image)
    testhost.run(["sh", "-c", FOREIGN_RULES], netns=sandbox.host)
    before = network_snapshot(sandbox.host, testhost)
    url = f"http://{sandbox.host_addr}/user/login"
    last_broken = before
    try:
        started = json.loads(testhost.cf(["start", "--json"], config, sandbox.host).stdout)
        assert started["ready"] is True
        assert sandbox.client_get(url)[0] == 200
        for breakage, argv in BREAKAGES.items():
            subprocess.run(["nsenter", f"--net=/run/netns/{sandbox.host}", *argv], check=True)
            broken = network_snapshot(sandbox.host, testhost)
            status = testhost.cf(["status", "--json"], config, sandbox.host, check=False)
            assert status.returncode == DRIFTED, f"{breakage}: {status.stdout}"
            drift = json.loads(status.stdout)["drift"]
            assert drift, f"{breakage} is listed"
            repaired = json.loads(testhost.cf(["repair", "--json"], config,
                                              sandbox.host).stdout)
            assert repaired[0]["restored"], f"{breakage}: repair restored something"
            status = testhost.cf(["status", "--json"], config, sandbox.host, check=False)
            assert status.returncode == 0, f"{breakage}: still drifted: {status.stdout}"
            code, body = sandbox.client_get(url)
            assert code == 200 and "ColdFront" in body, f"{breakage}: reachable through DNAT"
            healed = network_snapshot(sandbox.host, testhost)
            assert _foreign(healed) == _foreign(broken), \
                f"{breakage}: others' rules left as the breakage left them"
            assert [line for line in healed["iptables"].splitlines()
                    if "-d 169.254.169.254/32" in line and "-j DROP" in line], \
                f"{breakage}: the metadata-blocking rule is back with the rest"
            last_broken = broken
    finally:
        testhost.cf(["stop"], config, sandbox.host, check=False)
    after = network_snapshot(sandbox.host, testhost)
    assert "CF-LAUNCH-" not in after["iptables"] + after["nft"]
    for key in ("links", "addresses", "routes", "sysctl"):
        assert after[key] == before[key], key
    assert _foreign(after) == _foreign(last_broken), "stop, too, left others' rules alone"
