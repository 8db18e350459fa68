"""ColdFront kept from the cloud's instance metadata service, with the real Apptainer, in
both network modes: a fake metadata server in a "cloud" namespace that the sandbox host
routes to (issue: cloud instance metadata). Three boots in all."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from coldfront_launch.config.security import DEFAULT_UID as DEFAULT_SERVICE_UID
from tests.host.cloud import (
    AWS_DNS,
    ECS_CREDENTIALS,
    IMDS,
    IMDS6,
    INTERNET,
    Cloud,
    answer,
    curl,
    http_get,
)
from tests.host.harness import Sandbox, TestHost, network_snapshot
from tests.integration.conftest import WORK, instance_config

pytestmark = pytest.mark.integration

REFUSED, TIMED_OUT = 7, 28  # curl's exit codes
IMDS_URL = f"http://{IMDS}/latest/meta-data/iam/security-credentials/"


@pytest.fixture
def cloud(sandbox: Sandbox) -> Iterator[Cloud]:
    made = Cloud.attach(sandbox)
    yield made
    made.destroy()


def inside(host: TestHost, name: str, url: str, *user: str,
           timeout: float = 3) -> tuple[int, str, int]:
    """curl from inside the instance (its network namespace), optionally as another uid."""
    argv = ["apptainer", "exec", f"instance://{name}", *user, *curl(url, timeout)]
    return answer(host.run(argv, check=False))


def test_bridge_blocks_metadata_unless_allowed(testhost: TestHost, coldfront_image: str,
                                               sandbox: Sandbox, cloud: Cloud) -> None:
    config = instance_config(testhost, "cfmeta", coldfront_image)
    masqueraded = f"metadata {IMDS} for {sandbox.host_addr}"
    before = network_snapshot(sandbox.host, testhost)
    try:
        plan = json.loads(testhost.cf(["plan", "--json"], config, sandbox.host).stdout)
        restore = "\n".join(c["restore"] for c in plan["changes"] if c["kind"] == "firewall")
        assert f"-d {IMDS}/32 -m comment --comment cf-launch:cfmeta -j DROP" in restore
        started = json.loads(testhost.cf(["start", "--json"], config, sandbox.host).stdout)
        assert started["ready"] is True

        for blocked in (IMDS, ECS_CREDENTIALS):
            assert inside(testhost, "cfmeta", f"http://{blocked}/", timeout=2) == \
                (0, "", TIMED_OUT), f"ColdFront gets no answer from {blocked}"
        assert inside(testhost, "cfmeta", f"http://[{IMDS6}]/")[2] == REFUSED, \
            "the bridge network is IPv4 only: no route to the IPv6 endpoint"
        assert inside(testhost, "cfmeta", f"http://{AWS_DNS}/")[0] == 200, \
            "the rest of 169.254.0.0/16 (AWS DNS, time) stays reachable"
        assert inside(testhost, "cfmeta", f"http://{INTERNET}/")[0] == 200, \
            "other outbound traffic still works"
        assert sandbox.client_get(f"http://{sandbox.host_addr}/user/login")[0] == 200

        testhost.write(config, testhost.path(config).read_text()
                       + "[hook.bridge]\nallow_metadata = true\n")
        dmi = testhost.write(f"{WORK}/dmi/sys_vendor", "Amazon EC2\n").rsplit("/", 1)[0]
        doctor = testhost.run(["/opt/cf-launch/bin/cf-launch", "--config", config, "doctor",
                               "--json"], netns=sandbox.host, check=False,
                              env={"CF_LAUNCH_DMI_DIR": dmi})
        [warning] = [p for p in json.loads(doctor.stdout)["problems"]
                     if p["check"] == "metadata"]
        assert warning["fatal"] is False and "EC2" in warning["message"]

        restarted = json.loads(testhost.cf(["restart", "--json"], config, sandbox.host).stdout)
        assert restarted["ready"] is True
        assert inside(testhost, "cfmeta", IMDS_URL) == (200, masqueraded, 0), \
            "allow_metadata = true: the fake metadata server answers"
    finally:
        testhost.cf(["stop"], config, sandbox.host, check=False)
    assert network_snapshot(sandbox.host, testhost) == before


def gunicorn_uids(host: TestHost, name: str) -> set[int]:
    ps = host.run(["apptainer", "exec", f"instance://{name}", "ps", "-eo", "uid=,args="])
    return {int(line.split()[0]) for line in ps.stdout.splitlines()
            if "gunicorn" in line and " ps " not in line}


def test_override_rejects_the_service_user(testhost: TestHost, coldfront_image: str,
                                           sandbox: Sandbox, cloud: Cloud) -> None:
    config = instance_config(testhost, "cfmetaover", coldfront_image,
                             f'hooks = ["override"]\n[hook.override]\n'
                             f'netns_path = "/run/netns/{sandbox.host}"\n')
    service = ["setpriv", f"--reuid={DEFAULT_SERVICE_UID}", f"--regid={DEFAULT_SERVICE_UID}",
               "--clear-groups"]
    before = network_snapshot(sandbox.host, testhost)
    try:
        started = json.loads(testhost.cf(["start", "--json"], config, sandbox.host).stdout)
        assert started["ready"] is True
        rules = [c for c in started["changes"] if c["kind"] == "firewall"]
        assert [r["family"] for r in rules] == ["ipv4", "ipv6"]
        assert all(f"--uid-owner {DEFAULT_SERVICE_UID} " in r["restore"] for r in rules)
        running_as = gunicorn_uids(testhost, "cfmetaover")
        assert running_as, "gunicorn runs"
        # ColdFront runs as its service account: the very uid the rule matches.
        assert running_as == {DEFAULT_SERVICE_UID}, \
            f"gunicorn runs as {running_as}; the metadata rule matches {DEFAULT_SERVICE_UID}"

        for blocked in (IMDS, ECS_CREDENTIALS, f"[{IMDS6}]"):
            assert inside(testhost, "cfmetaover", f"http://{blocked}/", *service) == \
                (0, "", REFUSED), f"the service user is rejected at once by {blocked}"
        assert inside(testhost, "cfmetaover", f"http://{AWS_DNS}/", *service)[0] == 200
        as_root = http_get(["nsenter", f"--net=/run/netns/{sandbox.host}"], IMDS_URL)
        assert as_root == (200, f"metadata {IMDS} for {sandbox.host_addr}", 0), \
            "the same request as root in the host namespace reaches the server"
        assert http_get(["nsenter", f"--net=/run/netns/{sandbox.host}"],
                        f"http://[{IMDS6}]/")[0] == 200, "over IPv6 too"
        assert sandbox.client_get(f"http://{sandbox.host_addr}/user/login")[0] == 200
    finally:
        testhost.cf(["stop"], config, sandbox.host, check=False)
    assert network_snapshot(sandbox.host, testhost) == before
