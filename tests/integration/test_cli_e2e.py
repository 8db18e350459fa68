"""The command line's conventions with the real Apptainer and ColdFront (issue 27): names
as arguments, idempotent start and stop, `status` as a health check that a stopped
gunicorn (nginx answering 502) fails, JSON errors, and `exec` in `/` without Apptainer's
warning about the caller's folder."""

from __future__ import annotations

import json
import shlex

import pytest

from tests.host.harness import VENV, WORK, Sandbox, TestHost, network_snapshot
from tests.integration.conftest import instance_config

pytestmark = pytest.mark.integration

NAME = "cfcli"


def _cf(host: TestHost, config: str, box: Sandbox, *args: str):  # type: ignore[no-untyped-def]
    """cf-launch run from a folder the image does not have (as an admin's home would be)."""
    line = shlex.join([f"{VENV}/bin/cf-launch", "--config", config, *args])
    return host.run(["sh", "-c", f"mkdir -p {WORK}/elsewhere && cd {WORK}/elsewhere && "
                     f"{line}"], netns=box.host, check=False)


def test_names_idempotence_and_health(testhost: TestHost, coldfront_image: str,
                                      sandbox: Sandbox) -> None:
    config = instance_config(testhost, "cli-settings", coldfront_image)  # name: the argument
    before = network_snapshot(sandbox.host, testhost)
    try:
        started = _cf(testhost, config, sandbox, "start", NAME, "--json")
        assert started.returncode == 0, started.stderr
        assert json.loads(started.stdout)["instance"]["name"] == NAME
        again = _cf(testhost, config, sandbox, "start", NAME, "--json")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["already_running"] is True
        assert _cf(testhost, config, sandbox, "start", NAME, "--strict").returncode == 10

        healthy = _cf(testhost, config, sandbox, "status", NAME, "--json")
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        assert json.loads(healthy.stdout)["health"]["healthy"] is True

        inside = _cf(testhost, config, sandbox, "exec", NAME, "--", "pwd")
        assert inside.returncode == 0 and inside.stdout.strip() == "/", inside.stderr
        assert "WARNING" not in inside.stderr, inside.stderr

        # the socket too: it would start gunicorn again at the next request
        stopped_gunicorn = _cf(testhost, config, sandbox, "exec", "--name", NAME, "--",
                               "systemctl", "stop", "coldfront-gunicorn.socket",
                               "coldfront-gunicorn.service")
        assert stopped_gunicorn.returncode == 0, stopped_gunicorn.stderr
        sick = _cf(testhost, config, sandbox, "status", NAME, "--json")
        assert sick.returncode == 15, sick.stdout + sick.stderr
        health = json.loads(sick.stdout)["health"]
        assert health["healthy"] is False and "ColdFront answers HTTP 502" in health["reason"]
        human = _cf(testhost, config, sandbox, "status", NAME)
        assert human.returncode == 15 and "unhealthy: ColdFront answers HTTP 502" in human.stdout

        stopped = _cf(testhost, config, sandbox, "stop", NAME, "--json")
        assert stopped.returncode == 0, stopped.stderr
        assert json.loads(stopped.stdout)["already_stopped"] is False
        twice = _cf(testhost, config, sandbox, "stop", NAME, "--json")
        assert twice.returncode == 0 and json.loads(twice.stdout)["already_stopped"] is True
        strict = _cf(testhost, config, sandbox, "stop", NAME, "--strict", "--json")
        assert strict.returncode == 8
        assert json.loads(strict.stdout)["code_name"] == "not_running"
        down = _cf(testhost, config, sandbox, "status", NAME, "--json")
        assert down.returncode == 8 and json.loads(down.stdout)["running"] is False
    finally:
        _cf(testhost, config, sandbox, "stop", NAME)
    assert network_snapshot(sandbox.host, testhost) == before
