"""``status`` and ``status --all`` with the fake apptainer, the security report kept per
instance start, and the import set of the commands that must start fast (``--help``,
``--version``, ``status``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from coldfront_launch import apptainer
from coldfront_launch.apptainer import Probe
from coldfront_launch.changes import journal
from coldfront_launch.cli.table import COLUMNS, table
from coldfront_launch.coldfront import hardening
from coldfront_launch.lifecycle import status
from coldfront_launch.types import InstanceInfo

ROOT = Path(__file__).resolve().parents[3]
#: Never imported by `--help`, `--version` or `status`: the libraries that made the CLI slow.
HEAVY = ("pyroute2", "jinja2", "spython")
#: Above the kernel's largest pid_max: no process has these (probes fall back to exec).
NO_PID = 2**22 + 1


def cf(args: list[str], tmp_path: Path, modules: Path | None = None
       ) -> subprocess.CompletedProcess[str]:
    """Run cf-launch in a child process; with ``modules``, under ``python -X importtime``
    and writing the names in ``sys.modules`` at exit there (what the command imported)."""
    code = ("import atexit, json, sys\n"
            "out = sys.argv.pop(1)\n"
            "if out:\n"
            "    atexit.register(lambda: open(out, 'w').write(json.dumps(sorted(sys.modules))))\n"
            "from coldfront_launch.cli import main\n"
            "sys.argv[0] = 'cf-launch'\n"
            "main()\n")
    env = {**os.environ, "CF_LAUNCH_SYSTEM_CONFIG": str(tmp_path / "none"),
           "PYTHONPATH": str(ROOT)}
    importtime = ["-X", "importtime"] if modules else []
    return subprocess.run([sys.executable, *importtime, "-c", code, str(modules or ""), *args],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)


def imported(args: list[str], tmp_path: Path) -> set[str]:
    """What the command imported (or tried to): the modules ``-X importtime`` reports,
    and those in ``sys.modules`` at exit."""
    out = tmp_path / "modules.json"
    result = cf(args, tmp_path, out)
    assert result.returncode in (0, 8, 9, 15), result.stderr
    timed = {m.group(1) for m in re.finditer(r"^import time:\s+\d+ \|\s+\d+ \| +(\S+)$",
                                              result.stderr, re.M)}
    at_exit = set(json.loads(out.read_text()))
    assert "coldfront_launch.cli" in timed and "coldfront_launch.cli" in at_exit
    return timed | at_exit


def fake_running(names: list[str], state_root: Path, url: str,
                 recorded: bool = True) -> None:
    """Instances the fake apptainer lists, with cf-launch state folders (launch records)."""
    found = {n: {"instance": n, "pid": NO_PID + i, "img": "/x.sif", "ip": f"10.22.0.{i + 2}"}
             for i, n in enumerate(names)}
    Path(os.environ["FAKE_APPTAINER_STATE"]).write_text(json.dumps(found))
    for name in names:
        (state_root / name).mkdir(parents=True, exist_ok=True)
        launched = {"hooks": ["bridge"], "image": "/x.sif", "pid": 1, "mode": "started"}
        if recorded:
            launched["url"] = url
        (state_root / name / "launch.json").write_text(json.dumps(launched))


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["status", "--help"]])
def test_help_and_version_import_no_heavy_library(args: list[str], tmp_path: Path) -> None:
    mods = imported(args, tmp_path)
    assert not {m for m in mods if m.split(".")[0] in HEAVY}
    assert "pluggy" not in mods, "no plugin is loaded"
    assert "coldfront_launch.plugins" not in mods
    assert "coldfront_launch.lifecycle.launcher" not in mods
    if args != ["--version"]:
        assert "importlib.metadata" not in mods, "no entry-point scan"


def test_status_imports_no_heavy_library(tmp_path: Path, fake_apptainer: Path,
                                         http_server: tuple[str, int]) -> None:
    root = tmp_path / "state"
    url = f"http://{http_server[0]}:{http_server[1]}/user/login"
    fake_running(["coldfront"], root, url)
    mods = imported(["--state-root", str(root), "status", "--json"], tmp_path)
    assert not {m for m in mods if m.split(".")[0] in HEAVY}, "pyroute2, jinja2, spython"
    assert "pluggy" not in mods, "the URL comes from the launch record"
    assert "concurrent.futures" not in mods
    assert "coldfront_launch.changes.base" in mods, "drift reads the typed changes"
    stopped = imported(["--state-root", str(root), "--name", "other", "status"], tmp_path)
    assert not {m for m in stopped if m.split(".")[0] in (*HEAVY, "pluggy")}
    assert "coldfront_launch.changes.base" not in stopped, "a stopped instance: records counted"


def test_the_import_pin_sees_an_import(tmp_path: Path, fake_apptainer: Path) -> None:
    """An instance started by an older cf-launch (no URL recorded): the plugins are asked,
    and the same check sees pluggy and the bridge plugin imported (still no jinja2)."""
    root = tmp_path / "state"
    fake_running(["coldfront"], root, "", recorded=False)
    mods = imported(["--state-root", str(root), "status", "--json"], tmp_path)
    assert {"pluggy", "coldfront_launch.hooks.bridge"} <= mods
    assert not {m for m in mods if m.split(".")[0] in HEAVY}


def test_status_one_instance(tmp_path: Path, fake_apptainer: Path,
                             http_server: tuple[str, int]) -> None:
    root = tmp_path / "state"
    url = f"http://{http_server[0]}:{http_server[1]}/user/login"
    fake_running(["coldfront"], root, url)
    data = json.loads(cf(["--state-root", str(root), "status", "--json"], tmp_path).stdout)
    assert data["running"] and data["url"] == url
    assert (data["system_state"], data["http_status"]) == ("running", 200)
    assert data["hooks"] == ["bridge"] and data["instance"]["ip"] == "10.22.0.2"
    assert data["drift"] == [] and set(data["security"]) == {
        "exposure", "gunicorn_users", "gunicorn_as_root"}
    lists = [c for c in map(json.loads, fake_apptainer.read_text().splitlines())
             if c[1:4] == ["--quiet", "instance", "list"]]
    assert len(lists) == 1, "one instance list"
    assert not any("--version" in c for c in map(json.loads,
                                                 fake_apptainer.read_text().splitlines()))


def test_status_all_lists_known_and_running(tmp_path: Path, fake_apptainer: Path,
                                            http_server: tuple[str, int]) -> None:
    root = tmp_path / "state"
    url = f"http://{http_server[0]}:{http_server[1]}/user/login"
    fake_running([f"cf{i:02d}" for i in range(20)], root, url)
    state = json.loads(Path(os.environ["FAKE_APPTAINER_STATE"]).read_text())
    state["foreign"] = {"instance": "foreign", "pid": NO_PID, "img": "/y.sif", "ip": ""}
    Path(os.environ["FAKE_APPTAINER_STATE"]).write_text(json.dumps(state))
    (root / "stopped1").mkdir()
    (root / "stopped1" / "journal.jsonl").write_text('{"type": "file", "path": "/x"}\n')
    (root / "claims.json").write_text("{}")  # not an instance
    (root / "foreign").mkdir()  # what a stop asked of a raw instance once left: a lock
    (root / "foreign" / "lock").write_text("")

    result = cf(["--state-root", str(root), "status", "--all", "--json"], tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert sorted(rows) == sorted([f"cf{i:02d}" for i in range(20)] + ["stopped1"]), \
        "only what cf-launch started: not the raw Apptainer instance"
    assert all(rows[f"cf{i:02d}"]["http_status"] == 200 for i in range(20))
    assert all(rows[f"cf{i:02d}"]["system_state"] == "running" for i in range(20))
    assert rows["cf05"]["instance"]["ip"] == "10.22.0.7" and rows["cf05"]["managed"]
    assert rows["cf05"]["instance"]["pid"] == NO_PID + 5
    assert rows["stopped1"] == {**rows["stopped1"], "running": False, "host_changes": 1,
                                "managed": True}
    assert all(rows[f"cf{i:02d}"]["drift"] == [] for i in range(20))
    lines = [c for c in map(json.loads, fake_apptainer.read_text().splitlines())
             if c[2:4] == ["instance", "list"]]
    assert len(lines) == 1, "one instance list for all"

    text = cf(["--state-root", str(root), "status", "--all"], tmp_path)
    assert text.returncode == 0
    header, *body = text.stdout.splitlines()
    assert header.split() == list(COLUMNS) and len(body) == 21
    assert any(line.startswith("stopped1") and "changes to undo" in line for line in body)


def test_status_all_with_nothing_exits_0(tmp_path: Path, fake_apptainer: Path) -> None:
    result = cf(["--state-root", str(tmp_path / "none"), "status", "--all", "--json"],
                tmp_path)
    assert result.returncode == 0 and json.loads(result.stdout) == []
    plain = cf(["--state-root", str(tmp_path / "none"), "status"], tmp_path)
    assert plain.returncode == 8, "plain status keeps its exit code for a stopped instance"


def test_probes_run_in_parallel_with_the_drift_check() -> None:
    import threading
    barrier = threading.Barrier(4, timeout=5)

    def meet(answer: object) -> object:
        barrier.wait()  # only returns once all four run at the same time
        return answer
    results, here = status.parallel([lambda: meet("running"), lambda: meet(200),
                                     lambda: meet({"exposure": {}})], lambda: meet(["d"]))
    assert results == ["running", 200, {"exposure": {}}] and here == ["d"]


def test_old_records_ask_the_plugins(tmp_path: Path, make_settings) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(name="old")
    settings.state_dir.mkdir(parents=True)
    (settings.state_dir / "launch.json").write_text('{"hooks": ["bridge"]}')
    asked: list[tuple[str, ...]] = []

    def endpoint(_s: object, _i: InstanceInfo, hooks: tuple[str, ...]) -> str:
        asked.append(hooks)
        return "http://10.0.0.9:80/user/login"
    info = InstanceInfo("old", 1, "/x.sif", "10.0.0.9")
    assert status.url_of(settings, info, endpoint) == "http://10.0.0.9:80/user/login"
    assert asked == [("bridge",)]


def test_table_of_nothing_is_a_header() -> None:
    assert table([]).split() == list(COLUMNS)


def test_the_fast_probe_asks_only_a_booted_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process is not a systemd in a mount namespace of its own: nsenter is never
    aimed at it (or at a pid that does not exist); apptainer exec answers instead."""
    asked: list[str] = []

    def exec_capture(name: str, argv: list[str], timeout: float = 30) -> Probe:
        asked.append(name)
        return Probe(0, "x", "")
    monkeypatch.setattr(apptainer, "exec_capture", exec_capture)
    assert status.readiness.system_state_of("a", os.getpid()) == "x"
    assert status.readiness.system_state_of("b", NO_PID) == "x"
    assert status.readiness.system_state_of("c", 0) == "x"
    assert asked == ["a", "b", "c"]


def test_count_equals_the_typed_entries(tmp_path: Path) -> None:
    """status counts journal records without importing the typed changes: same answer,
    for a 0.1 journal (its netns record is no change) and a current one."""
    from coldfront_launch.state.instance import InstanceState
    state = InstanceState(tmp_path / "cf1")
    state.ensure()
    state.journal_path.write_text(
        '{"kind": "netns", "id": "7"}\n{"kind": "remove_file", "path": "/x"}\n'
        '{"type": "sysctl", "name": "net.x", "value": "1", "netns": "7"}\n')
    assert state.count() == len(journal.entries(state)) == 2


def test_a_probe_error_is_raised() -> None:
    from coldfront_launch.errors import ApptainerNotFound

    def missing() -> str:
        raise ApptainerNotFound("Apptainer is not installed")
    with pytest.raises(ApptainerNotFound):
        status.parallel([missing], lambda: None)


REPORT = """\
→ Overall exposure level for coldfront-gunicorn.service: 1.4 OK 🙂
→ Overall exposure level for coldfront-setup.service: 1.4 OK 🙂
→ Overall exposure level for nginx.service: 2.4 OK 🙂
coldfront /srv/coldfront/venv/bin/python3 /srv/coldfront/venv/bin/gunicorn --workers 2
"""


def test_security_report_kept_per_instance_start(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Asked once per start of the instance (its pid and start time), never kept while
    systemd is still booting, and asked again after a restart."""
    asked: list[str] = []

    def probe(name: str, pid: int, argv: list[str], timeout: float = 30) -> Probe:
        asked.append(name)
        return Probe(0, REPORT, "")
    monkeypatch.setattr(apptainer, "probe_inside", probe)
    info = InstanceInfo("cf1", os.getpid(), "/x.sif", "")  # a process that exists
    booting = hardening.cached_report(tmp_path, info, booted=False)
    assert len(booting["exposure"]) == 3 and booting["gunicorn_users"] == ["coldfront"]
    assert not (tmp_path / hardening.CACHE).exists(), "booting: not kept"
    first = hardening.cached_report(tmp_path, info, booted=True)
    assert hardening.cached_report(tmp_path, info, booted=True) == first == booting
    assert asked == ["cf1", "cf1"], "the third call read the kept report"
    restarted = InstanceInfo("cf1", os.getppid(), "/x.sif", "")
    hardening.cached_report(tmp_path, restarted, booted=True)
    assert asked == ["cf1", "cf1", "cf1"], "another start: asked again"
    gone = InstanceInfo("cf1", NO_PID, "/x.sif", "")
    hardening.cached_report(tmp_path, gone, booted=True)
    hardening.cached_report(tmp_path, gone, booted=True)
    assert len(asked) == 5, "no such process: never taken from the file"


def test_status_keeps_the_report_once_booted(  # type: ignore[no-untyped-def]
        tmp_path: Path, fake_apptainer: Path, http_server: tuple[str, int],
        monkeypatch: pytest.MonkeyPatch, make_settings) -> None:
    """Plain status: the report is computed beside the other probes, and kept once
    systemd says running; the next status reads it."""
    root = tmp_path / "state"
    url = f"http://{http_server[0]}:{http_server[1]}/user/login"
    fake_running(["coldfront"], root, url)
    monkeypatch.setattr(hardening, "_started_as", lambda pid: f"{pid}:1")
    settings = make_settings(name="coldfront")
    monkeypatch.setenv("FAKE_APPTAINER_SYSTEM_STATE", "starting")
    status.of(settings)
    assert not (root / "coldfront" / hardening.CACHE).exists()
    monkeypatch.setenv("FAKE_APPTAINER_SYSTEM_STATE", "running")
    first = status.of(settings)
    assert (root / "coldfront" / hardening.CACHE).exists()
    execs = len([line for line in fake_apptainer.read_text().splitlines() if '"sh"' in line])
    assert status.of(settings)["security"] == first["security"]
    assert len([line for line in fake_apptainer.read_text().splitlines()
                if '"sh"' in line]) == execs, "read from the state folder"


def test_status_all_exits_9_when_one_drifted(tmp_path: Path, fake_apptainer: Path,
                                            http_server: tuple[str, int]) -> None:
    """A running instance whose journaled file is gone: its row lists the drift, the
    table says so, and the exit code is DRIFTED (9)."""
    root = tmp_path / "state"
    url = f"http://{http_server[0]}:{http_server[1]}/user/login"
    fake_running(["cf1", "cf2"], root, url)
    (root / "cf2" / "journal.jsonl").write_text(
        json.dumps({"type": "file", "path": str(tmp_path / "gone.conf"), "mode": 420,
                    "created": []}) + "\n")
    result = cf(["--state-root", str(root), "status", "--all", "--json"], tmp_path)
    assert result.returncode == 9, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["cf1"]["drift"] == [] and rows["cf2"]["drift"] == [
        f"{tmp_path / 'gone.conf'} is gone"]
    text = cf(["--state-root", str(root), "status", "--all"], tmp_path)
    assert text.returncode == 9
    assert any(line.startswith("cf2") and "1 missing or changed" in line
               for line in text.stdout.splitlines())
