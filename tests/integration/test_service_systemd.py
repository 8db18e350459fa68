"""cf-launch's unit under a real systemd as PID 1 (issue 13).

The test host's root file system is booted with ``systemd-nspawn -b`` (an overlay copy) in the
sandbox host namespace, with Apptainer inside; ``cf-launch service install`` writes the unit and
systemd runs it. The external client reaches ColdFront through the sandbox's ``ext0``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.host.harness import VENV, Sandbox, TestHost, network_snapshot
from tests.host.nspawn import BootedHost, booted
from tests.integration.conftest import instance_config

pytestmark = pytest.mark.integration

NAME = "cfsvc"
UNIT = f"cf-launch@{NAME}.service"


@dataclass
class Sample:
    """What systemd said about the unit, then what the external client got, at one moment."""

    at: float
    state: str
    restarts: int
    http: int


def watch(box: BootedHost, sandbox: Sandbox, url: str,
          done: Callable[[Sample], bool], timeout: float) -> list[Sample]:
    """Sample the unit's state and the client's HTTP status until ``done``."""
    samples: list[Sample] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        props = box.show(UNIT, "ActiveState", "NRestarts")
        code, _ = sandbox.client_get(url, timeout=2)
        samples.append(Sample(time.monotonic(), props["ActiveState"],
                              int(props["NRestarts"]), code))
        if samples[-1].state == "failed":
            break
        if done(samples[-1]):
            return samples
        time.sleep(0.2)
    journal = box.run(["journalctl", "-u", UNIT, "--no-pager", "-n", "40"], check=False)
    raise AssertionError(f"{UNIT}: last samples {samples[-5:]}\n{journal.stdout}")


def active_after(restarts: int) -> Callable[[Sample], bool]:
    return lambda s: s.state == "active" and s.restarts == restarts


def instances(box: BootedHost) -> list[dict[str, object]]:
    listed = json.loads(box.run(["apptainer", "instance", "list", "--json"]).stdout)
    return list(listed["instances"])


def cgroup_mounts(box: BootedHost) -> str:
    return box.run(["grep", "cgroup", "/proc/1/mountinfo"]).stdout


def in_the_unit(box: BootedHost, pid: int, mounts: str) -> None:
    """The instance's processes are the unit's (Delegate=yes, a cgroup namespace rooted in
    the unit): systemd's tracking hierarchy places init below the unit's cgroup, and
    ``systemctl status`` lists ColdFront's processes; the host's mounts are unchanged."""
    unit_cgroup = box.show(UNIT, "ControlGroup", "Delegate")
    assert unit_cgroup["Delegate"] == "yes"
    tracked = box.run(["cat", f"/proc/{pid}/cgroup"]).stdout
    assert f"::{unit_cgroup['ControlGroup']}/apptainer/{pid}/init.scope\n" in tracked, tracked
    status = box.run(["systemctl", "status", UNIT, "--no-pager", "-l", "--lines=0"]).stdout
    assert "/sbin/init" in status and "gunicorn" in status and "nginx" in status, status
    assert cgroup_mounts(box) == mounts, "the cgroup mounts outside Apptainer are as they were"
    # [resources] under the unit: Apptainer's limits on the instance's own cgroup (v1 here).
    memory = next(line.split(":", 2)[2] for line in tracked.splitlines()
                  if line.split(":")[1] == "memory").removesuffix("/init.scope")
    limit = box.run(["cat", f"/sys/fs/cgroup/memory{memory}/memory.limit_in_bytes"]).stdout
    assert int(limit) == 2 * 1024 ** 3, (memory, limit)


def test_unit_under_systemd_as_pid1(testhost: TestHost, coldfront_image: str,
                                    sandbox: Sandbox) -> None:
    config = instance_config(testhost, NAME, coldfront_image,
                             '[resources]\nmemory = "2G"\npids = 2048\n')
    url = f"http://{sandbox.host_addr}/user/login"
    with booted(sandbox.host) as box:
        assert box.run(["cat", "/proc/1/comm"]).stdout.strip() == "systemd"
        box.run([f"{VENV}/bin/cf-launch", "--config", config, "service", "install",
                 "--name", NAME, "--enable"])
        assert box.run(["systemctl", "is-enabled", UNIT]).stdout.strip() == "enabled"
        box.run(["systemd-analyze", "verify", UNIT])
        before = network_snapshot(sandbox.host, testhost)
        mounts = cgroup_mounts(box)

        # systemctl start: active only once ColdFront answers the external client.
        box.run(["systemctl", "start", "--no-block", UNIT])
        start = watch(box, sandbox, url, lambda s: s.state == "active", timeout=360)
        assert start[-1].http == 200, f"active before ColdFront answered: {start[-1]}"
        assert [s for s in start if s.state == "activating" and s.http != 200], \
            "systemd was seen waiting (activating) while ColdFront did not answer"
        code, body = sandbox.client_get(url)
        assert code == 200 and "ColdFront" in body
        first = instances(box)
        assert [i["instance"] for i in first] == [NAME]
        old_main = box.show(UNIT, "MainPID")["MainPID"]
        in_the_unit(box, int(first[0]["pid"]), mounts)

        # The instance dies, by SIGKILL to its Apptainer starter, then to systemd inside it:
        # each time systemd restarts the unit, and ColdFront answers again.
        restarts: list[float] = []
        for victim in ("starter", "init"):
            if victim == "starter":
                pid = box.run(["pgrep", "-f", rf"^Apptainer instance: root \[{NAME}\]"]).stdout
                assert len(pid.split()) == 1, pid
            else:
                pid = str(first[0]["pid"])
            box.run(["kill", "-KILL", pid.strip()])
            again = watch(box, sandbox, url, active_after(len(restarts) + 1), timeout=360)
            restarts.append(again[-1].at - again[0].at)
            assert [s for s in again if s.state != "active"], "systemd noticed the death"
            assert again[-1].http == 200
            main = box.show(UNIT, "MainPID")["MainPID"]
            assert main != old_main
            second = instances(box)
            assert [i["instance"] for i in second] == [NAME]
            assert second[0]["pid"] != first[0]["pid"]
            assert box.run(["test", "-e", f"/proc/{first[0]['pid']}"],
                           check=False).returncode, "the old instance's init is gone"
            first, old_main = second, main

        # systemctl stop: a deliberate stop (no restart), and the network as it was.
        box.run(["systemctl", "stop", UNIT], timeout=240)
        assert box.show(UNIT, "ActiveState", "Result", "ExecMainStatus", "NRestarts") == {
            "ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0",
            "NRestarts": "2"}
        assert instances(box) == []
        assert network_snapshot(sandbox.host, testhost) == before
        print(f"start: active after {start[-1].at - start[0].at:.1f} s; active again after "
              f"the kills: {', '.join(f'{r:.1f} s' for r in restarts)}")
