"""``[coldfront] scheduler = false`` with the real Apptainer and ColdFront (issue 29,
item 3): django-q2's cluster has no unit and never runs, systemd inside is `running`
(not degraded), ColdFront serves, and stop leaves the sandbox as it was."""

from __future__ import annotations

import json

import pytest

from tests.host.harness import Sandbox, TestHost, network_snapshot
from tests.integration.conftest import instance_config

pytestmark = pytest.mark.integration

UNIT = "coldfront-qcluster.service"


def test_scheduler_false_masks_the_cluster(testhost: TestHost, coldfront_image: str,
                                           sandbox: Sandbox) -> None:
    config = instance_config(testhost, "cfnosched", coldfront_image,
                             "[coldfront]\nscheduler = false\n")
    before = network_snapshot(sandbox.host, testhost)
    try:
        started = json.loads(testhost.cf(["start", "--json"], config, sandbox.host).stdout)
        assert started["ready"] is True and started["system_state"] == "running", started
        shown = testhost.run(["apptainer", "exec", "instance://cfnosched", "systemctl",
                              "show", UNIT, "-p", "LoadState", "-p", "ActiveState"],
                             netns=sandbox.host, check=False).stdout
        # /dev/null bound over the unit file: systemd finds no unit there, never starts it
        assert sorted(shown.split()) == ["ActiveState=inactive", "LoadState=not-found"], shown
        processes = testhost.run(["apptainer", "exec", "instance://cfnosched", "sh", "-c",
                                  "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"],
                                 netns=sandbox.host, check=False).stdout
        assert "qcluster" not in processes
        assert "gunicorn" in processes
        status = testhost.cf(["status", "--json"], config, sandbox.host)
        assert json.loads(status.stdout)["health"]["healthy"] is True
    finally:
        testhost.cf(["stop"], config, sandbox.host, check=False)
    assert network_snapshot(sandbox.host, testhost) == before
