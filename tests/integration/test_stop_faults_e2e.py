"""``stop`` and ``start`` under faults, with the real Apptainer, bridge and iptables
(issue 26, items 1 and 2): a start cut short after the instance started, a plugin that no
longer loads, a journal line that cannot be read, a full state disk. Each ends with the
sandbox's network exactly as before."""

from __future__ import annotations

import json
import textwrap

import pytest

from tests.host.harness import VENV, WORK, Sandbox, TestHost, network_snapshot
from tests.integration.conftest import instance_config

pytestmark = pytest.mark.integration

NAME = "faults"
FULL = f"{WORK}/faults-full-state"


def _cf(host: TestHost, config: str, box: Sandbox, *args: str,
        env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return host.run([f"{VENV}/bin/cf-launch", "--config", config, *args], netns=box.host,
                    check=False, env=env)


def test_a_start_cut_short_is_not_ready_then_finished(testhost: TestHost, coldfront_image: str,
                                                      sandbox: Sandbox) -> None:
    config = instance_config(testhost, NAME, coldfront_image)
    url = f"http://{sandbox.host_addr}/user/login"
    before = network_snapshot(sandbox.host, testhost)
    try:
        killed = _cf(testhost, config, sandbox, "start",
                     env={"CF_LAUNCH_TEST_DIE_AFTER": "apptainer_start"})
        assert killed.returncode == -9, killed.stderr  # SIGKILL, right after instance start
        status = _cf(testhost, config, sandbox, "status", "--json")
        assert status.returncode == 5, status.stdout + status.stderr
        assert "post_start never ran" in json.loads(status.stdout)["unfinished_start"]
        assert sandbox.client_get(url, timeout=3)[0] == 0, "nothing forwarded yet"
        finished = _cf(testhost, config, sandbox, "start", "--json")
        assert finished.returncode == 0, finished.stderr
        assert "finishing it (post_start)" in finished.stderr
        assert json.loads(finished.stdout)["ready"] is True
        code, body = sandbox.client_get(url)
        assert code == 200 and "ColdFront" in body
        assert _cf(testhost, config, sandbox, "status").returncode == 0
    finally:
        stopped = _cf(testhost, config, sandbox, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert network_snapshot(sandbox.host, testhost) == before


def test_stop_without_its_plugin_and_with_an_unreadable_journal_line(
        testhost: TestHost, coldfront_image: str, sandbox: Sandbox) -> None:
    config = instance_config(testhost, NAME, coldfront_image)
    journal = testhost.path(f"{WORK}/state/{NAME}/journal.jsonl")
    before = network_snapshot(sandbox.host, testhost)
    try:
        assert _cf(testhost, config, sandbox, "start", "--no-wait").returncode == 0
        assert network_snapshot(sandbox.host, testhost) != before
        blocked = _cf(testhost, config, sandbox, "stop",
                      env={"CF_LAUNCH_DISABLE_PLUGINS": "bridge"})
        assert blocked.returncode == 0, blocked.stderr
        assert "warning: plugin bridge blocked by CF_LAUNCH_DISABLE_PLUGINS" in blocked.stderr
        assert network_snapshot(sandbox.host, testhost) == before, "undone from the journal"

        assert _cf(testhost, config, sandbox, "start", "--no-wait").returncode == 0
        lines = journal.read_bytes().split(b"\n")
        lines.insert(3, b'{"type": "firewall", "owner": "\xff\xfe"}')
        journal.write_bytes(b"\n".join(lines))
        spoiled = _cf(testhost, config, sandbox, "stop")
        assert spoiled.returncode == 6, spoiled.stderr
        assert "journal line 4 of" in spoiled.stderr and "not UTF-8 at byte 32" in spoiled.stderr
        assert "host changes undone" not in spoiled.stdout + spoiled.stderr
        assert network_snapshot(sandbox.host, testhost) == before, "the rest is undone"
        assert _cf(testhost, config, sandbox, "stop").returncode == 6, "said again, each time"
        journal.unlink()  # the admin checked by hand, as the hint says
    finally:
        _cf(testhost, config, sandbox, "stop")
    assert network_snapshot(sandbox.host, testhost) == before


def test_stop_on_a_full_state_disk(testhost: TestHost, coldfront_image: str,
                                   sandbox: Sandbox) -> None:
    """state_root on a 96 MiB tmpfs, filled to the last block once ColdFront runs. (One
    command: the tmpfs lives in the test host's mount namespace of that command.)"""
    config = instance_config(testhost, NAME, coldfront_image).replace(".toml", "-full.toml")
    text = testhost.path(instance_config(testhost, NAME, coldfront_image)).read_text()
    testhost.write(config, text.replace(f'"{WORK}/state"', f'"{FULL}"'))
    cf = f"{VENV}/bin/cf-launch --config {config}"
    before = network_snapshot(sandbox.host, testhost)
    script = textwrap.dedent(f"""\
        mkdir -p {FULL} && mount -t tmpfs -o size=96m tmpfs {FULL}
        {cf} start --json >/dev/null || exit 90
        dd if=/dev/zero of={FULL}/filler bs=64k 2>/dev/null
        printf x >{FULL}/probe 2>/dev/null && exit 91
        {cf} stop; echo "stop exit $?"
        ls -a {FULL}/{NAME}; umount {FULL}
    """)
    done = testhost.run(["sh", "-c", script], netns=sandbox.host, check=False, timeout=600)
    assert "stop exit 0" in done.stdout, done.stdout + done.stderr
    assert "journal.jsonl" not in done.stdout and "internal error" not in done.stderr
    assert network_snapshot(sandbox.host, testhost) == before


def test_the_lease_of_an_instance_that_died_is_released(testhost: TestHost,
                                                        coldfront_image: str,
                                                        sandbox: Sandbox) -> None:
    config = instance_config(testhost, NAME, coldfront_image)
    before = network_snapshot(sandbox.host, testhost)
    leases = testhost.path("/var/lib/cni/networks/cf-launch")
    started = json.loads(_cf(testhost, config, sandbox, "start", "--no-wait",
                             "--json").stdout)
    ip = started["instance"]["ip"].split("/")[0]
    assert (leases / ip).is_file()
    pid = started["instance"]["pid"]
    testhost.run(["sh", "-c", f"kill -KILL $(ps -o ppid= -p {pid}) {pid}"], netns=sandbox.host)
    for _ in range(50):
        if '"instances":[]' in testhost.run(["apptainer", "instance", "list", "--json"],
                                             netns=sandbox.host).stdout.replace(" ", ""):
            break
    assert (leases / ip).is_file(), "the instance died: CNI never released its address"
    stopped = _cf(testhost, config, sandbox, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not (leases / ip).exists(), "stop released exactly that lease"
    assert network_snapshot(sandbox.host, testhost) == before
