"""Embedding with the real Apptainer: `prepare`, a site's own `apptainer instance start`,
`attach`, the site's own stop, `detach` (issue: embedding in existing workflows)."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import time

import pytest

from tests.host.harness import HERE, ROOT, VENV, Sandbox, TestHost, network_snapshot
from tests.integration.conftest import instance_config, recorded_subnet
from tests.integration.test_bridge_e2e import FOREIGN_RULES
from tests.integration.test_override_e2e import CAP_NET_ADMIN, config_for
from tests.jsonschemas import valid

pytestmark = pytest.mark.integration

OWN_START = 'exec apptainer instance start --boot --writable-tmpfs "$@"'


def own_start(host: TestHost, netns: str, image: str, name: str, *options: str) -> None:
    """The site's own start line, with whatever options it was given."""
    host.run(["sh", "-c", OWN_START, "sh", *options, image, name], netns=netns)


def own_start_with_prepare(host: TestHost, netns: str, config: str, image: str, name: str,
                           *prepare: str) -> None:
    """A site's script: eval "set -- $(cf-launch prepare ...)", then its own start line."""
    script = (f'eval "set -- $({VENV}/bin/cf-launch --config {config} prepare '
              f'{" ".join(prepare)})"; {OWN_START} {image} {name}')
    host.run(["sh", "-c", script], netns=netns)


def own_stop(host: TestHost, netns: str, name: str) -> None:
    host.run(["apptainer", "instance", "stop", name], netns=netns)


def test_bridge_embedded(testhost: TestHost, coldfront_image: str, sandbox: Sandbox) -> None:
    config = instance_config(testhost, "cfembed", coldfront_image)
    testhost.run(["sh", "-c", FOREIGN_RULES], netns=sandbox.host)
    before = network_snapshot(sandbox.host, testhost)
    try:
        # prepare, the site's own start, attach: ColdFront answers through DNAT.
        own_start_with_prepare(testhost, sandbox.host, config, coldfront_image, "cfembed",
                               "--hook", "bridge")
        attached = valid(json.loads(testhost.cf(["attach", "--json"], config,
                                                sandbox.host).stdout), "start")
        assert attached["ready"] is True and attached["system_state"] == "running"
        ip = ipaddress.IPv4Address(attached["instance"]["ip"].split("/")[0])
        assert ip in recorded_subnet(testhost), "an address of cf-launch's own subnet"
        code, body = sandbox.client_get(f"http://{sandbox.host_addr}/user/login")
        assert code == 200 and "ColdFront" in body
        status = json.loads(testhost.cf(["status", "--json"], config, sandbox.host).stdout)
        assert status["running"] and status["http_status"] == 200
        assert status["hooks"] == ["bridge"]
        own_stop(testhost, sandbox.host, "cfembed")
        detached = json.loads(testhost.cf(["detach", "--json"], config, sandbox.host).stdout)
        assert detached["still_running"] is False
        assert network_snapshot(sandbox.host, testhost) == before, "detach undoes exactly"

        # A start without the prepared options: attach refuses and changes nothing. (A
        # network of its own, `none`: Apptainer's default one would leave the CNI firewall
        # plugin's chains behind, which are not cf-launch's to remove.)
        testhost.cf(["prepare", "--hook", "bridge"], config, sandbox.host)
        own_start(testhost, sandbox.host, coldfront_image, "cfembed", "--net", "--network",
                  "none")
        prepared_only = network_snapshot(sandbox.host, testhost)
        refused = testhost.cf(["attach"], config, sandbox.host, check=False)
        assert refused.returncode == 3, refused.stderr
        assert "was not started the way `cf-launch prepare` said" in refused.stderr
        assert "--net --network cf-launch" in refused.stderr, "the hint names the options"
        assert network_snapshot(sandbox.host, testhost) == prepared_only
        own_stop(testhost, sandbox.host, "cfembed")
        testhost.cf(["detach"], config, sandbox.host)
        assert network_snapshot(sandbox.host, testhost) == before

        # attach killed (SIGKILL) once its rules are in: detach restores everything.
        own_start_with_prepare(testhost, sandbox.host, config, coldfront_image, "cfembed",
                               "--hook", "bridge")
        attach = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{sandbox.host}", str(HERE / "enter.sh"),
             f"{VENV}/bin/cf-launch", "--config", config, "attach"],
            env={**os.environ, "CF_TESTHOST_BINDS": f"{ROOT}:/src"},  # as TestHost.run
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):
            if "CF-LAUNCH-" in network_snapshot(sandbox.host, testhost)["iptables"]:
                break
            time.sleep(0.1)
        testhost.run(["pkill", "-9", "-f", f"cf-launch --config {config} attach"], check=False)
        attach.wait(timeout=30)
        assert "CF-LAUNCH-" in network_snapshot(sandbox.host, testhost)["iptables"]
        own_stop(testhost, sandbox.host, "cfembed")
        testhost.cf(["detach"], config, sandbox.host)
        assert network_snapshot(sandbox.host, testhost) == before, "recovered from the journal"
    finally:
        testhost.run(["apptainer", "instance", "stop", "cfembed"], netns=sandbox.host,
                     check=False)
        testhost.cf(["detach"], config, sandbox.host, check=False)
    assert "FOREIGN-NAT" in network_snapshot(sandbox.host, testhost)["iptables"]


def test_override_embedded(testhost: TestHost, managers_image: str) -> None:
    box = Sandbox.create(net=6)
    try:
        config = config_for(testhost, "cfembedov", managers_image, box)
        before = network_snapshot(box.host, testhost)
        prepared = json.loads(testhost.cf(["prepare", "--hook", "override", "--format",
                                           "json"], config, box.host).stdout)
        assert f"/run/netns/{box.host}" in prepared["options"]
        own_start(testhost, box.host, managers_image, "cfembedov", *prepared["options"])
        try:
            attached = json.loads(testhost.cf(["attach", "--json"], config, box.host).stdout)
            assert attached["ready"] is True and attached["system_state"] == "running"
            code, body = box.client_get(f"http://{box.host_addr}/user/login")
            assert code == 200 and "ColdFront" in body
            capbnd = testhost.run(["apptainer", "exec", "instance://cfembedov", "grep",
                                   "CapBnd", "/proc/1/status"]).stdout.split()[-1]
            assert not int(capbnd, 16) & (1 << CAP_NET_ADMIN)
        finally:
            own_stop(testhost, box.host, "cfembedov")
            testhost.cf(["detach"], config, box.host)
        assert network_snapshot(box.host, testhost) == before
    finally:
        testhost.run(["apptainer", "instance", "stop", "cfembedov"], check=False)
        box.destroy()
