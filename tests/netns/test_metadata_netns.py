"""The metadata rules without Apptainer: a fake metadata server in a "cloud" namespace the
sandbox host routes to, real iptables, real HTTP (issue: cloud instance metadata)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from coldfront_launch.config.security import DEFAULT_UID as DEFAULT_SERVICE_UID
from tests.host.cloud import AWS_DNS, ECS_CREDENTIALS, IMDS, IMDS6, Cloud, http_get
from tests.host.harness import ROOT, Sandbox, network_snapshot
from tests.netns.test_bridge_netns import FOREIGN, World, ns_run

pytestmark = pytest.mark.netns

REFUSED, TIMED_OUT = 7, 28  # curl's exit codes


@pytest.fixture
def cloud_world(tmp_path: Path) -> Iterator[tuple[World, Cloud]]:
    world = World(tmp_path)
    cloud = Cloud.attach(world.box)
    for rule in FOREIGN:
        ns_run(world.box.host, rule, check=True)
    yield world, cloud
    world.driver("stop")
    cloud.destroy()
    world.close()


def test_bridge_drops_metadata_and_nothing_else(cloud_world: tuple[World, Cloud]) -> None:
    world, _cloud = cloud_world
    host = ["nsenter", f"--net=/run/netns/{world.box.host}"]
    container = ["nsenter", f"--net=/run/netns/{world.container}"]
    masqueraded = world.box.host_addr
    before = world.snapshot()
    assert http_get(host, f"http://{IMDS}/")[0] == 200, "the host reaches the fake cloud"

    started = world.driver("start")
    assert started.returncode == 0, started.stderr + started.stdout
    for blocked in (IMDS, ECS_CREDENTIALS):
        assert http_get(container, f"http://{blocked}/", timeout=2) == (0, "", TIMED_OUT), \
            f"the container gets no answer from {blocked}"
    assert http_get(host, f"http://[{IMDS6}]/")[0] == 200, "the host has IPv6 to the cloud"
    assert http_get(container, f"http://[{IMDS6}]/")[2] == REFUSED, \
        "the bridge network is IPv4 only: no route to the IPv6 endpoint"
    assert http_get(container, f"http://{AWS_DNS}/") == \
        (200, f"metadata {AWS_DNS} for {masqueraded}", 0), "169.254.0.0/16 is not blocked"
    assert http_get(container, f"http://{world.box.client_addr}:8000/")[0] == 200, \
        "other outbound traffic still works"
    assert http_get(host, f"http://{IMDS}/")[0] == 200, "the host itself is untouched"
    rules = json.loads(started.stdout)["changes"]
    fwd = next(c for r in rules if r["kind"] == "firewall" for c in r["chains"]
               if c["name"].endswith("-FWD"))
    assert sum(rule.endswith("-j DROP") for rule in fwd["rules"]) == 2

    assert world.driver("stop").returncode == 0
    assert world.snapshot() == before, "stop removes the drops with the rest"

    for leftover in ("conflist.json", "ip"):  # the driver's record of the CNI attachment
        (world.state / leftover).unlink()
    allowed = world.driver("start", "--allow-metadata")
    assert allowed.returncode == 0, allowed.stderr + allowed.stdout
    assert http_get(container, f"http://{IMDS}/") == (200, f"metadata {IMDS} for {masqueraded}", 0)
    assert world.driver("stop").returncode == 0
    assert world.snapshot() == before


@pytest.fixture
def cloud_box() -> Iterator[Sandbox]:
    box = Sandbox.create(net=10)
    cloud = Cloud.attach(box)
    yield box
    cloud.destroy()
    box.destroy()


def test_override_rejects_the_service_uid_only(cloud_box: Sandbox, tmp_path: Path) -> None:
    box = cloud_box
    state = tmp_path / "state"

    def driver(verb: str, *extra: str, ns: str = box.host):  # type: ignore[no-untyped-def]
        return ns_run(box.host, [sys.executable, "-m", "tests.netns.override_driver", verb,
                                 str(state), f"/run/netns/{ns}", *extra], cwd=ROOT, timeout=120)

    root = ["nsenter", f"--net=/run/netns/{box.host}"]

    def as_uid(uid: int) -> list[str]:
        return [*root, "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]

    service = as_uid(DEFAULT_SERVICE_UID)
    imds = f"http://{IMDS}/latest/meta-data/"
    before = network_snapshot(box.host)
    assert http_get(service, imds)[0] == 200, "without the rule the service user gets through"
    assert http_get(service, f"http://[{IMDS6}]/")[0] == 200, "IPv6 too"

    started = driver("start")
    assert started.returncode == 0, started.stderr + started.stdout
    v4, v6 = json.loads(started.stdout)
    assert (v4["kind"], v4["family"], v6["family"]) == ("firewall", "ipv4", "ipv6")
    assert v4["jumps"][0]["chain"] == v6["jumps"][0]["chain"] == "OUTPUT"
    for blocked in (IMDS, ECS_CREDENTIALS, f"[{IMDS6}]"):
        assert http_get(service, f"http://{blocked}/") == (0, "", REFUSED), \
            f"the service uid is rejected at once from {blocked}"
    assert http_get(service, f"http://{AWS_DNS}/")[0] == 200, "169.254.0.0/16 is not blocked"
    assert http_get(root, imds) == (200, f"metadata {IMDS} for {box.host_addr}", 0), \
        "root in the host namespace still reaches it"
    assert http_get(root, f"http://[{IMDS6}]/")[0] == 200, "over IPv6 too"
    assert http_get(as_uid(DEFAULT_SERVICE_UID + 1), imds)[0] == 200, "only that uid"

    assert driver("stop").returncode == 0
    assert network_snapshot(box.host) == before, "stop removes the chain and jump exactly"

    allowed = driver("start", "--allow-metadata")
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout) == []
    assert http_get(service, imds)[0] == 200
    assert driver("stop").returncode == 0

    elsewhere = driver("start", ns=box.client)
    assert elsewhere.returncode != 0
    assert f"cf-launch runs outside /run/netns/{box.client}" in elsewhere.stderr
    assert network_snapshot(box.host) == before

