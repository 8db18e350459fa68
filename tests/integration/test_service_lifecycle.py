"""Graceful shutdown and recovery after a reboot, with the real Apptainer and ColdFront
(issue: run as a host service)."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid

import pytest

from tests.host.harness import VENV, WORK, Sandbox, TestHost, network_snapshot
from tests.integration.conftest import STATE_ROOT, instance_config
from tests.integration.test_bridge_e2e import coldfront_python

pytestmark = pytest.mark.integration

CYCLES = 5  # CI; benchmarks/graceful_stop.py runs 20


def _journal(testhost: TestHost, name: str) -> list[dict[str, str]]:
    """Every entry of the instance's persistent journal, read after it stopped."""
    out = testhost.run(["journalctl", "-D", f"{STATE_ROOT}/{name}/journal", "-o", "json",
                        "--no-pager"]).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _messages_by_boot(entries: list[dict[str, str]]) -> list[list[str]]:
    """The messages of each boot of the instance. The kernel's boot id is the host's, the
    same for every start, so a boot begins where journald says "Journal started"."""
    boots: list[list[str]] = []
    for entry in entries:
        message = entry.get("MESSAGE")
        if not isinstance(message, str):
            continue
        if message == "Journal started" or not boots:
            boots.append([])
        boots[-1].append(message)
    return boots


def _first(messages: list[str], prefix: str) -> int:
    return next(i for i, m in enumerate(messages) if m.startswith(prefix))


def test_graceful_stop_cycles_keep_the_database_intact(
        testhost: TestHost, coldfront_image: str, sandbox: Sandbox) -> None:
    config = instance_config(testhost, "cfgrace", coldfront_image)
    before = network_snapshot(sandbox.host, testhost)
    methods = []
    try:
        for cycle in range(CYCLES):
            started = json.loads(testhost.cf(["start", "--json"], config, sandbox.host).stdout)
            assert started["ready"] is True
            coldfront_python(testhost, "cfgrace", "from django.contrib.auth.models import User; "
                             f"User.objects.create_user('cycle{cycle}', password='x'); print(1)")
            stopped = json.loads(testhost.cf(["stop", "--json"], config, sandbox.host).stdout)
            methods.append(stopped["shutdown"])
    finally:
        testhost.cf(["stop"], config, sandbox.host, check=False)
    assert methods == ["poweroff"] * CYCLES, "every stop was a clean poweroff, never a kill"
    assert network_snapshot(sandbox.host, testhost) == before

    boots = _messages_by_boot(_journal(testhost, "cfgrace"))
    assert len(boots) == CYCLES, "one persistent journal, one boot per start"
    for messages in boots:
        nginx = _first(messages, "Stopped nginx.service")
        gunicorn = _first(messages, "Stopped coldfront-gunicorn.service")
        poweroff = _first(messages, "Reached target poweroff.target")
        assert nginx < gunicorn < poweroff, "units stop in order: nginx, gunicorn, poweroff"
        assert messages[-1] == "Journal stopped"
        assert not [m for m in messages if "Killing process" in m or "timed out" in m], \
            "no unit needed SIGKILL at shutdown"

    database = testhost.path(f"{STATE_ROOT}/cfgrace/data/coldfront.db")
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        users = {row[0] for row in db.execute("SELECT username FROM auth_user")}
    assert {f"cycle{i}" for i in range(CYCLES)} <= users, "every write between cycles kept"


def _cf(testhost: TestHost, config: str, netns: str, boot_file: str, *args: str) -> dict:
    result = testhost.run([f"{VENV}/bin/cf-launch", "--config", config, *args, "--json"],
                          netns=netns, env={"CF_LAUNCH_BOOT_ID_FILE": boot_file})
    return dict(json.loads(result.stdout))


def _kill_instance(testhost: TestHost, name: str) -> None:
    """SIGKILL the instance's init and its Apptainer starter, as a power cut would."""
    listed = json.loads(testhost.run(["apptainer", "instance", "list", "--json"]).stdout)
    init = next(i["pid"] for i in listed["instances"] if i["instance"] == name)
    testhost.run(["sh", "-c", f"kill -9 $(ps -o ppid= -p {init}) {init}"])
    for _ in range(100):
        listed = json.loads(testhost.run(["apptainer", "instance", "list", "--json"]).stdout)
        if all(i["instance"] != name for i in listed["instances"]):
            return
        time.sleep(0.1)
    raise AssertionError(f"instance {name} outlived SIGKILL")


def test_simulated_reboot_comes_back_on_the_same_address(
        testhost: TestHost, coldfront_image: str) -> None:
    boot_file = testhost.write(f"{WORK}/boot_id", str(uuid.uuid4()) + "\n")
    config = instance_config(testhost, "cfreboot", coldfront_image,
                             '[hook.bridge]\nnetwork = "cf-reboot"\n'
                             'subnet = "10.77.0.0/24"\nip = "10.77.0.50"\n')
    leases = testhost.path("/var/lib/cni/networks/cf-reboot")
    first = Sandbox.create(net=8)
    try:
        started = _cf(testhost, config, first.host, boot_file, "start")
        assert started["instance"]["ip"] == "10.77.0.50"
        _kill_instance(testhost, "cfreboot")
    finally:
        first.destroy()  # the "host's" namespace, with its links and rules, is gone
    assert (leases / "10.77.0.50").exists(), "the killed instance left its lease behind"

    time.sleep(1.1)  # the lease predates the new boot (modification times in seconds)
    testhost.write(f"{WORK}/boot_id", str(uuid.uuid4()) + "\n")
    box = Sandbox.create(net=8)
    before = network_snapshot(box.host, testhost)
    try:
        again = _cf(testhost, config, box.host, boot_file, "start")
        assert again["ready"] is True and again["instance"]["ip"] == "10.77.0.50"
        code, body = box.client_get(f"http://{box.host_addr}/user/login")
        assert code == 200 and "ColdFront" in body, "the login page is served through DNAT"
        assert sorted(p.name for p in leases.iterdir() if p.name[0].isdigit()) == \
            ["10.77.0.50"], "no stale lease"
        state = testhost.path(f"{STATE_ROOT}/cfreboot")
        assert not (state / "unresolved.jsonl").exists(), "nothing was set aside"
    finally:
        stopped = testhost.run([f"{VENV}/bin/cf-launch", "--config", config, "stop", "--json"],
                               netns=box.host, env={"CF_LAUNCH_BOOT_ID_FILE": boot_file},
                               check=False)
        after = network_snapshot(box.host, testhost)
        box.destroy()
    assert stopped.returncode == 0, stopped.stderr
    assert after == before
    assert not [p for p in leases.iterdir() if p.name[0].isdigit()], "no lease left"
    assert not testhost.path("/etc/apptainer/network/50_cf-launch.conflist").exists()
