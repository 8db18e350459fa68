"""The CLI: one-line errors with hints and documented exit codes, JSON for scripts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from coldfront_launch.testing.sif import write_minimal_sif

ROOT = Path(__file__).resolve().parents[3]


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "CF_LAUNCH_SYSTEM_CONFIG": str(tmp_path / "none"), **env}
    return subprocess.run([sys.executable, "-m", "coldfront_launch.cli", *args],
                          capture_output=True, text=True, env=environ, cwd=tmp_path,
                          timeout=60)


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("cf-launch: error: ")
    assert lines[-1].startswith("hint: ")


def test_invalid_name_exit_2(tmp_path: Path) -> None:
    result = run(["--name", "no spaces", "--state-root", str(tmp_path), "plan"], tmp_path)
    assert_one_line_error(result, 2)
    assert "name: 'no spaces' is not a valid instance name" in result.stderr


def test_unknown_hook_lists_known(tmp_path: Path) -> None:
    result = run(["--state-root", str(tmp_path), "plan", "--hook", "nat"], tmp_path)
    assert_one_line_error(result, 2)
    assert "known hooks: bridge, override" in result.stderr


def test_bad_port_in_config(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[hook.bridge]\nports = [80, 70000]\n')
    result = run(["--config", str(config), "--state-root", str(tmp_path), "plan"], tmp_path)
    assert_one_line_error(result, 2)
    assert "hook.bridge.ports[1]: port 70000 is outside 1-65535" in result.stderr


def test_missing_apptainer(tmp_path: Path) -> None:
    image = write_minimal_sif(tmp_path / "x.sif")
    config = tmp_path / "c.toml"
    config.write_text(f'image = "{image}"\n[hook.override]\nnetns_path = "/proc/self/ns/net"\n'
                      'ports = [65001]\n')
    result = run(["--config", str(config), "--state-root", str(tmp_path), "start",
                  "--hook", "override"], tmp_path, PATH=f"{Path(sys.executable).parent}:/bin")
    assert_one_line_error(result, 4)
    assert "Apptainer is not installed" in result.stderr


def test_missing_singularity_link(tmp_path: Path, fake_apptainer: Path) -> None:
    bindir = tmp_path / "only-apptainer"
    bindir.mkdir()
    (bindir / "apptainer").symlink_to(ROOT / "tests" / "fakes" / "apptainer")
    result = run(["--state-root", str(tmp_path), "status"], tmp_path,
                 PATH=f"{bindir}:{Path(sys.executable).parent}:/bin")
    assert_one_line_error(result, 4)
    assert "the `singularity` link that spython runs is missing" in result.stderr
    assert f"ln -s {bindir}/apptainer {bindir}/singularity" in result.stderr


def test_hooks_json_lists_builtins() -> None:
    result = subprocess.run([sys.executable, "-m", "coldfront_launch.cli", "hooks", "--json"],
                            capture_output=True, text=True, check=True)
    data = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    assert data["bridge"]["module"] == "coldfront_launch.hooks.bridge"
    assert "cf_launch_post_start" in data["bridge"]["hooks"]
    assert "cf_launch_binds" in data["override"]["hooks"]


def test_override_plan_json(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[hook.override]\nnetns_path = "/proc/self/ns/net"\nports = [65002]\n')
    result = run(["--config", str(config), "--state-root", str(tmp_path / "st"), "plan",
                  "--hook", "override", "--json"], tmp_path)
    plan = json.loads(result.stdout)
    fatal = {p["check"] for p in plan["problems"] if p["fatal"]}
    assert fatal <= {"apptainer", "image"}, "nothing else is missing for override here"
    assert result.returncode == (3 if fatal else 0), "plan exits 3 with a fatal problem"
    command = plan["command"]
    assert command[command.index("--netns-path") + 1] == "/proc/self/ns/net"
    assert "--net" not in command
    targets = [b.split(":")[1] for b in plan["binds"]]
    assert "/etc/systemd/system/systemd-networkd.service.d/cf-launch-host-network.conf" in targets
    assert "/etc/systemd/system" not in targets, "whole folders are never bound"
    caps = next(c for c in plan["changes"] if c["target"].endswith("cf-launch-capabilities.conf"))
    assert "CapabilityBoundingSet=~CAP_NET_ADMIN CAP_NET_RAW" in caps["content"]
    assert not (tmp_path / "st").exists(), "plan changes nothing"


def test_exec_runs_inside_instance(tmp_path: Path, fake_apptainer: Path) -> None:
    state = json.dumps({"cf1": {"instance": "cf1", "pid": 1, "img": "x", "ip": ""}})
    Path(os.environ["FAKE_APPTAINER_STATE"]).write_text(state)
    result = run(["exec", "cf1", "--", "echo", "hello", "--from-inside"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello --from-inside"
    missing = run(["exec", "nope", "--", "true"], tmp_path)
    assert_one_line_error(missing, 8)


def test_doctor_reports_missing_image(tmp_path: Path, fake_apptainer: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'image = "{tmp_path / "none.sif"}"\n')
    result = run(["--config", str(config), "doctor", "--json"], tmp_path)
    assert result.returncode == 3
    checks = {p["check"]: p for p in json.loads(result.stdout)["problems"]}
    assert "does not exist" in checks["image"]["message"]
    assert checks["image"]["hint"] == "run `cf-launch build`"


def test_build_progress_and_cache(tmp_path: Path, fake_apptainer: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[build]\ncache_dir = "{tmp_path / "cache"}"\n'
                      'layers = ["debian-base", "coldfront"]\n')
    first = run(["--config", str(config), "build", "--json"], tmp_path)
    assert first.returncode == 0, first.stderr
    assert "[1/2] debian-base: building" in first.stderr
    assert "[2/2] coldfront: built" in first.stderr
    second = run(["--config", str(config), "build", "--json"], tmp_path)
    built = json.loads(second.stdout)
    from tests.jsonschemas import valid
    events = [e["event"] for e in valid(built, "build")["layers"]]
    assert events == ["cached", "cached"]


@pytest.mark.parametrize("args", [["stop", "--strict"], ["status"], ["status", "--json"]])
def test_not_running_exit_8(tmp_path: Path, fake_apptainer: Path, args: list[str]) -> None:
    result = run(["--state-root", str(tmp_path), *args], tmp_path)
    assert result.returncode == 8
    assert "Traceback" not in result.stderr


def test_stop_of_a_stopped_instance_is_done(tmp_path: Path, fake_apptainer: Path) -> None:
    result = run(["--state-root", str(tmp_path), "stop", "coldfront"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "instance coldfront is not running; nothing to stop\n"


def test_logs_and_shell_enter_the_instance(tmp_path: Path, fake_apptainer: Path) -> None:
    state = json.dumps({"coldfront": {"instance": "coldfront", "pid": 1, "img": "x", "ip": ""}})
    Path(os.environ["FAKE_APPTAINER_STATE"]).write_text(state)
    logs = run(["logs", "-n", "5", "--follow"], tmp_path)
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.strip() == "journal of coldfront: --no-pager -n 5 -f"
    shell = run(["shell"], tmp_path)
    assert shell.returncode == 0 and shell.stdout.strip() == "shell in coldfront at /"
    logs = run(["logs", "coldfront", "-n", "5"], tmp_path)
    assert logs.stdout.strip() == "journal of coldfront: --no-pager -n 5", "NAME positional"
    assert_one_line_error(run(["--name", "other", "logs"], tmp_path), 8)


def test_failed_instance_list_is_an_error_not_none_running(tmp_path: Path,
                                                           fake_apptainer: Path) -> None:
    result = run(["--state-root", str(tmp_path), "status"], tmp_path,
                 FAKE_APPTAINER_FAIL_LIST="could not retrieve user info")
    assert_one_line_error(result, 4)
    assert "apptainer instance list failed" in result.stderr


def test_logs_of_a_stopped_instance_come_from_apptainer(tmp_path: Path, fake_apptainer: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import pwd
    import socket
    home = tmp_path / "home"
    folder = home / ".apptainer/instances/logs" / socket.gethostname() / \
        pwd.getpwuid(os.getuid()).pw_name
    folder.mkdir(parents=True)
    (folder / "coldfront.err").write_text("line 1\nFATAL: container exited: bad magic\n")
    result = run(["logs", "-n", "1"], tmp_path, HOME=str(home))
    assert result.returncode == 0, result.stderr
    assert "is not running" in result.stderr
    assert result.stdout.splitlines()[-1] == "FATAL: container exited: bad magic"
    assert "line 1" not in result.stdout


def test_name_after_the_subcommand(tmp_path: Path, fake_apptainer: Path) -> None:
    status = run(["--state-root", str(tmp_path), "status", "--name", "cf-two", "--json"],
                 tmp_path)
    assert json.loads(status.stdout)["name"] == "cf-two"
    bad = run(["--state-root", str(tmp_path), "plan", "--name", "bad name"], tmp_path)
    assert_one_line_error(bad, 2)
    assert "name: 'bad name' is not a valid instance name" in bad.stderr
