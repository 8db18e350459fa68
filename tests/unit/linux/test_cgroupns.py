"""The unit's cgroup namespace for the instance (linux/cgroupns.py), on fake cgroup trees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coldfront_launch.linux import cgroupns

UNIT = "/system.slice/system-cf\\x2dlaunch.slice/cf-launch@cf.service"


@pytest.fixture
def v2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cgroup v2 tree (root with controllers) holding the unit's folder."""
    root = tmp_path / "cgroup"
    unit = root / UNIT.lstrip("/")
    unit.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids\n")
    (unit / "cgroup.controllers").write_text("cpu memory pids hugetlb\n")
    (unit / "cgroup.procs").write_text("227\n301\n")
    (unit / "cgroup.subtree_control").write_text("")
    monkeypatch.setattr(cgroupns, "CGROUP_ROOT", root)
    monkeypatch.setenv("INVOCATION_ID", "96b49252b5b24372b64b1df4155c1b11")
    return unit


def proc_file(tmp_path: Path, path: str) -> Path:
    proc = tmp_path / "self-cgroup"
    proc.write_text(f"9:name=systemd:{path}\n4:memory:/\n0::{path}\n")
    return proc


def delegated(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    def getxattr(path: object, attr: str) -> bytes:
        if Path(str(path)) == folder and attr == "trusted.delegate":
            return b"1"
        raise OSError(61, "No data available")
    monkeypatch.setattr(os, "getxattr", getxattr)


def test_a_delegated_unit_is_found(v2: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    delegated(monkeypatch, v2)
    assert cgroupns.delegated_unit(proc_file(tmp_path, UNIT)) == v2


def test_no_delegation_no_unit_or_no_systemd_means_apptainers_own_cgroup(
        v2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cgroupns.delegated_unit(proc_file(tmp_path, UNIT)) is None  # no Delegate=yes
    delegated(monkeypatch, v2)
    session = "/user.slice/user-0.slice/session-3.scope"  # an admin's shell
    (cgroupns.CGROUP_ROOT / session.lstrip("/")).mkdir(parents=True)
    assert cgroupns.delegated_unit(proc_file(tmp_path, session)) is None
    runner = "/system.slice/ci-runner.service"  # delegated, but not cf-launch's unit
    (cgroupns.CGROUP_ROOT / runner.lstrip("/")).mkdir(parents=True)
    delegated(monkeypatch, cgroupns.CGROUP_ROOT / runner.lstrip("/"))
    assert cgroupns.delegated_unit(proc_file(tmp_path, runner)) is None
    delegated(monkeypatch, v2)
    monkeypatch.delenv("INVOCATION_ID")
    assert cgroupns.delegated_unit(proc_file(tmp_path, UNIT)) is None


def test_hybrid_hosts_use_the_name_systemd_or_unified_tracking(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "cgroup"  # a tmpfs: no cgroup.controllers at the top
    unified = root / "unified" / UNIT.lstrip("/")
    unified.mkdir(parents=True)
    (root / "unified" / "cgroup.controllers").write_text("")
    monkeypatch.setattr(cgroupns, "CGROUP_ROOT", root)
    monkeypatch.setenv("INVOCATION_ID", "x")
    delegated(monkeypatch, unified)
    assert cgroupns.delegated_unit(proc_file(tmp_path, UNIT)) == unified
    assert cgroupns.arrange(unified) == unified, "no controllers there: start from the unit"


def test_arrange_on_v2_empties_the_unit_and_enables_its_controllers(v2: Path) -> None:
    start_from = cgroupns.arrange(v2)
    assert start_from == v2 / "instance" and start_from.is_dir()
    assert (v2 / "supervisor" / "cgroup.procs").read_text() == "301", "each pid moved"
    assert (v2 / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"


def test_the_wrapper_joins_then_runs_the_command_in_new_namespaces(tmp_path: Path) -> None:
    argv = cgroupns.wrapped(["apptainer", "instance", "start", "x.sif", "cf"], tmp_path)
    assert argv[:2] == ["sh", "-c"] and argv[3:] == [
        "sh", str(tmp_path), "apptainer", "instance", "start", "x.sif", "cf"]
    assert "unshare --cgroup --mount --propagation slave" in argv[2]
    assert cgroupns.wrapped(["true"], None)[4] == "", "None: join nothing"


def test_doctor_names_a_unit_written_before_delegation(tmp_path: Path) -> None:
    from coldfront_launch.plugins import core
    unit = tmp_path / "cf-launch@.service"
    assert core.unit_problems(unit) == [], "no unit installed: nothing to say"
    unit.write_text("[Service]\nType=notify\nKillMode=mixed\n")
    [problem] = core.unit_problems(unit)
    assert "no Delegate=yes" in problem.message and not problem.fatal
    assert "service install" in problem.hint
    unit.write_text("[Service]\nType=notify\nDelegate=yes\n")
    assert core.unit_problems(unit) == []
