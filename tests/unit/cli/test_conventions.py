"""The command line's conventions (issue 27): positional names, idempotent verbs, `status`
as a health check, JSON errors and one JSON shape per command (checked against the
schemas in docs/schemas), colour, quiet, examples in `--help`, completion, `--pwd`."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import click
import pytest

from coldfront_launch.cli import cli, names
from coldfront_launch.exitcodes import ExitCode
from coldfront_launch.state.instance import InstanceState
from tests.clirunner import split_runner
from tests.jsonschemas import valid
from tests.unit.cli.test_cli import run
from tests.unit.lifecycle.test_launcher import _config, recorder

__all__ = ["recorder"]  # the fixture, shared with test_launcher

@pytest.fixture
def cf(tmp_path: Path, fake_apptainer: Path, recorder: Path,  # type: ignore[no-untyped-def]
       monkeypatch: pytest.MonkeyPatch):
    """cf-launch in this process, with settings that use the recording plugin."""
    config = _config(tmp_path)
    monkeypatch.setenv("CF_LAUNCH_SYSTEM_CONFIG", str(tmp_path / "none"))
    monkeypatch.chdir(tmp_path)
    runner = split_runner()

    def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
        return runner.invoke(cli, ["--config", str(config), *args], env=env,
                             catch_exceptions=False)
    return invoke


def test_names_as_arguments_on_every_verb_and_name_as_a_synonym(cf) -> None:  # type: ignore[no-untyped-def]
    started = cf("start", "one", "--json")
    assert started.exit_code == 0, started.output
    assert valid(json.loads(started.stdout), "start")["instance"]["name"] == "one"
    status = cf("status", "one", "--json")
    assert status.exit_code == 0, status.output
    assert valid(json.loads(status.stdout), "status")["name"] == "one"
    assert json.loads(cf("status", "--name", "one", "--json").stdout)["running"]
    assert json.loads(cf("--name", "one", "status", "--json").stdout)["running"]
    plan = cf("plan", "two", "--json")
    assert valid(json.loads(plan.stdout), "plan")["command"][-1] == "two"
    doctor = cf("doctor", "two", "--json")
    valid(json.loads(doctor.stdout), "doctor")
    stopped = cf("stop", "one", "--json")
    assert stopped.exit_code == 0, stopped.output
    assert valid(json.loads(stopped.stdout), "stop")["already_stopped"] is False


def test_two_different_names_are_refused(cf) -> None:  # type: ignore[no-untyped-def]
    result = cf("--name", "a", "status", "b")
    assert result.exit_code == ExitCode.CONFIG
    assert "two instance names, 'a' (--name before the verb) and 'b' (NAME)" in result.stderr
    bad = cf("status", "no/such", "--json")
    assert bad.exit_code == ExitCode.CONFIG
    assert "not a valid instance name" in valid(json.loads(bad.stdout), "error")["error"]


def test_several_names_one_json_list_and_the_first_failure_s_code(cf, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # The recording plugin writes one fixed file: the second instance's start fails (and
    # undoes itself), the first's stands; the code is the failure's.
    both = cf("start", "a", "b")
    assert both.exit_code == ExitCode.HOST_CHANGE, both.output
    assert "instance a running" in both.stdout and "made-by-recorder.conf exists" in both.stderr
    other = {"RECORDER_FILE": str(tmp_path / "etc" / "b.conf")}
    assert cf("start", "b", env=other).exit_code == 0
    listed = cf("status", "a", "b", "--json")
    assert listed.exit_code == 0, listed.output
    assert [valid(row, "status")["name"] for row in json.loads(listed.stdout)] == ["a", "b"]
    stopped = cf("stop", "a", "nosuch", "b", "--strict", "--json")
    assert stopped.exit_code == ExitCode.NOT_RUNNING, "the first failure's code"
    rows = json.loads(stopped.stdout)
    assert [r.get("name") for r in rows] == ["a", "nosuch", "b"]
    assert valid(rows[1], "error")["code_name"] == "not_running"
    assert valid(rows[2], "stop")["stopped"], "a failure does not stop the others"
    assert json.loads(cf("status", "b", "--json").stdout)["running"] is False


def test_start_and_stop_are_idempotent_and_strict_gives_the_old_codes(cf) -> None:  # type: ignore[no-untyped-def]
    assert cf("start").exit_code == 0
    again = cf("start", "--json")
    assert again.exit_code == 0, again.output
    data = valid(json.loads(again.stdout), "start")
    assert data["already_running"] is True and data["changes"] == []
    assert cf("start", "--strict").exit_code == ExitCode.RUNNING
    human = cf("start")
    assert human.exit_code == 0 and "running" in human.stdout
    assert cf("stop").exit_code == 0
    twice = cf("stop", "--json")
    assert twice.exit_code == 0
    assert valid(json.loads(twice.stdout), "stop")["already_stopped"] is True
    strict = cf("stop", "--strict", "--json")
    assert strict.exit_code == ExitCode.NOT_RUNNING
    assert valid(json.loads(strict.stdout), "error")["exit_code"] == ExitCode.NOT_RUNNING


def test_stop_waits_for_another_cf_launch_then_finishes(cf, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert cf("start").exit_code == 0
    state = InstanceState(tmp_path / "state" / "coldfront")
    held = threading.Event()

    def hold() -> None:
        with state.locked():
            held.set()
            time.sleep(1.0)
    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    try:
        refused = cf("stop", "--wait", "0")
        assert refused.exit_code == ExitCode.LOCKED, refused.output
        began = time.monotonic()
        waited = cf("stop", "--wait", "20")
        assert waited.exit_code == 0, waited.output
        assert time.monotonic() - began >= 0.3, "it waited for the lock"
    finally:
        holder.join()
    assert "stopped" in waited.stdout


@pytest.mark.parametrize(("system", "code", "reason"), [
    ("running", ExitCode.OK, ""),
    ("degraded", ExitCode.UNHEALTHY, "systemd inside is degraded, not running"),
    ("starting", ExitCode.UNHEALTHY, "systemd inside is starting, not running"),
])
def test_status_exits_0_only_when_healthy(cf, system: str, code: int, reason: str) -> None:  # type: ignore[no-untyped-def]
    assert cf("start").exit_code == 0
    env = {"FAKE_APPTAINER_SYSTEM_STATE": system}
    result = cf("status", "--json", env=env)
    data = valid(json.loads(result.stdout), "status")
    assert result.exit_code == code
    assert data["health"] == {"healthy": code == 0, "exit_code": code, "reason": reason}
    human = cf("status", env=env)
    assert human.exit_code == code
    assert (f"unhealthy: {reason}" in human.stdout) is (code == ExitCode.UNHEALTHY)


def test_status_unhealthy_when_coldfront_does_not_answer(cf, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert cf("start").exit_code == 0
    from coldfront_launch.lifecycle import readiness
    monkeypatch.setattr(readiness, "http_status", lambda *a, **k: 502)
    result = cf("status", "--json")
    assert result.exit_code == ExitCode.UNHEALTHY
    assert json.loads(result.stdout)["health"]["reason"].startswith("ColdFront answers HTTP 502")


def test_status_json_has_the_same_keys_running_or_not(cf) -> None:  # type: ignore[no-untyped-def]
    stopped = cf("status", "--json")
    assert stopped.exit_code == ExitCode.NOT_RUNNING
    assert cf("start").exit_code == 0
    running = cf("status", "--json")
    assert set(json.loads(stopped.stdout)) == set(json.loads(running.stdout))
    off = valid(json.loads(stopped.stdout), "status")
    assert off["drift"] is None and off["url"] is None and off["http_status"] is None


def test_errors_are_json_on_stdout_with_the_exit_code_unchanged(cf) -> None:  # type: ignore[no-untyped-def]
    for args, code in [(("stop", "--bogus", "--json"), ExitCode.CONFIG),
                       (("logs", "-n", "-5", "--json"), ExitCode.CONFIG),
                       (("stop", "--wait", "nan", "--json"), ExitCode.CONFIG),
                       (("start", "--strict", "--json", "--image", "/no/such.sif"),
                        ExitCode.CONFIG),
                       (("restore", "/no/such.tar.gz", "--json"), ExitCode.BAD_ARCHIVE)]:
        result = cf(*args)
        assert result.exit_code == code, (args, result.output)
        data = json.loads(result.stdout)
        assert valid(data, "error")["exit_code"] == code, args
        assert data["code_name"] == ExitCode(code).name.lower()
        assert "cf-launch: error: " in result.stderr, "the human line stays on stderr"


def test_prepare_json_is_format_json(cf) -> None:  # type: ignore[no-untyped-def]
    result = cf("prepare", "--only-hooks", "--json")
    assert result.exit_code == 0, result.output
    assert valid(json.loads(result.stdout), "prepare")["name"] == "coldfront"
    clash = cf("prepare", "--json", "--format", "env")
    assert clash.exit_code == ExitCode.CONFIG and "--format env" in clash.stderr
    detached = cf("detach", "--json")
    assert detached.exit_code == 0, detached.output
    assert valid(json.loads(detached.stdout), "detach")["still_running"] is False


def test_repair_and_hooks_json_have_their_shapes(cf) -> None:  # type: ignore[no-untyped-def]
    assert cf("start").exit_code == 0
    restarted = cf("restart", "--json")
    assert valid(json.loads(restarted.stdout), "start")["ready"] is True, restarted.output
    every = cf("status", "--all", "--json")
    assert [valid(row, "status")["name"] for row in json.loads(every.stdout)] == ["coldfront"]
    repaired = cf("repair", "--json")
    assert repaired.exit_code == 0, repaired.output
    assert valid(json.loads(repaired.stdout), "repair")[0]["restored"] == []
    listed = cf("hooks", "--json")
    names_ = [p["name"] for p in valid(json.loads(listed.stdout), "hooks")["plugins"]]
    assert {"bridge", "override", "recorder"} <= set(names_)


def test_plan_names_the_files_it_read_first(cf, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "cf-launch.toml").write_text("ready_timeout = 11\n")  # a stray one
    result = cf("plan")
    first = result.stdout.splitlines()[0]
    assert first == f"# settings read: ./cf-launch.toml, {tmp_path / 'cf.toml'}"
    assert json.loads(cf("plan", "--json").stdout)["config_files"] == [
        "./cf-launch.toml", str(tmp_path / "cf.toml")]


def test_color_follows_no_color_and_the_option(cf) -> None:  # type: ignore[no-untyped-def]
    red = "\x1b[31m"
    assert red in cf("--color", "always", "stop", "--strict").stderr
    assert red not in cf("--color", "never", "stop", "--strict").stderr
    runner = split_runner()
    forced = runner.invoke(cli, ["--color", "always", "stop", "--strict"],
                           env={"NO_COLOR": "1"}, color=True)
    assert red in forced.stderr, "--color always wins over NO_COLOR"
    auto = runner.invoke(cli, ["stop", "--strict"], env={"NO_COLOR": "1"}, color=True)
    assert red not in auto.stderr and "cf-launch: error" in auto.stderr


def test_quiet_hides_progress_not_results(cf) -> None:  # type: ignore[no-untyped-def]
    loud = cf("start")
    assert progress_lines(loud.stderr)
    assert cf("stop").exit_code == 0
    quiet = cf("-q", "start")
    assert quiet.exit_code == 0 and progress_lines(quiet.stderr) == []
    assert "running" in quiet.stdout
    hushed = cf("stop", "-q")
    assert progress_lines(hushed.stderr) == [] and "stopped" in hushed.stdout


def progress_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines()
            if line.startswith("… ") and not line.startswith("… warning")]


def _commands(group: click.Group, path: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found += _commands(command, f"{path}{name} ")
        else:
            found.append((f"{path}{name}", command))
    return found


@pytest.mark.parametrize(("path", "command"), _commands(cli), ids=lambda x: str(x))
def test_every_command_has_examples_in_its_help(path: str, command: click.Command) -> None:
    result = split_runner().invoke(cli, [*path.split(), "--help"])
    assert result.exit_code == 0
    assert re.search(r"Examples:\n +(cf-launch|apptainer|eval) ", result.output), path


def test_instance_names_complete(tmp_path: Path) -> None:
    for name in ("coldfront", "cf-test", "other"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "journal.jsonl").write_text("")
    (tmp_path / "locked-only").mkdir()
    (tmp_path / "locked-only" / "lock").write_text("")
    ctx = click.Context(cli, info_name="cf-launch")
    ctx.params["state_root"] = tmp_path
    items = names.complete(ctx, click.Argument(["x"]), "c")
    assert [i.value for i in items] == ["cf-test", "coldfront"]
    env = {"_CF_LAUNCH_COMPLETE": "bash_complete", "COMP_WORDS":
           f"cf-launch --state-root {tmp_path} stop o", "COMP_CWORD": "4"}
    completed = run([], tmp_path, **env)
    assert "plain,other" in completed.stdout, completed.stdout + completed.stderr


def test_exec_and_shell_run_in_root_unless_asked(tmp_path: Path, fake_apptainer: Path) -> None:
    state = json.dumps({"coldfront": {"instance": "coldfront", "pid": 1, "img": "x",
                                      "ip": ""}})
    Path(os.environ["FAKE_APPTAINER_STATE"]).write_text(state)
    for args in (["exec", "coldfront", "--", "pwd"], ["exec", "--", "pwd"],
                 ["exec", "--name", "coldfront", "--", "pwd"], ["exec", "coldfront", "pwd"]):
        result = run(args, tmp_path)
        assert result.returncode == 0, (args, result.stderr)
        assert result.stdout.strip() == "/", args
    there = run(["exec", "--pwd", str(tmp_path), "coldfront", "--", "pwd"], tmp_path)
    assert there.stdout.strip() == str(tmp_path)
    none = run(["exec", "coldfront", "--"], tmp_path)
    assert none.returncode == ExitCode.CONFIG and "no command given" in none.stderr


def test_a_status_from_another_namespace_says_how_to_read_it_there() -> None:
    from coldfront_launch.cli.instance import drift_hint
    inode = str(os.stat("/proc/self/ns/net").st_ino)
    found = (f"unknown: cf was started in network namespace {inode}, but this process runs "
             "in 1; undoing here would change the wrong host")
    hint = drift_hint(found, "cf")
    assert hint.startswith("read it there: nsenter --net=") and hint.endswith(
        " cf-launch status cf"), hint
    assert "repair" not in hint
    assert drift_hint("nat: chain CF-LAUNCH-1-DNAT missing", "cf") == \
        "`cf-launch repair` puts it back"


# --- what a newcomer's review found ------------------------------------------------------

def test_restore_refuses_a_bad_name_as_a_bad_argument(cf) -> None:  # type: ignore[no-untyped-def]
    for args in (("restore", "no/x", "/x.tgz"), ("--name", "a", "restore", "b", "/x.tgz"),
                 ("restore", "/backups/x.tar.gz", "coldfront")):
        result = cf(*args, "--json")
        assert result.exit_code == ExitCode.CONFIG, (args, result.output)
        assert valid(json.loads(result.stdout), "error")["code_name"] == "config"


def test_two_name_options_are_refused(cf) -> None:  # type: ignore[no-untyped-def]
    result = cf("--name", "a", "stop", "--name", "b")
    assert result.exit_code == ExitCode.CONFIG
    assert "'a' (--name before the verb) and 'b' (--name)" in result.stderr
    assert cf("--name", "a", "stop", "--name", "a").exit_code == 0, "the same name twice"


def test_status_all_takes_no_names(cf) -> None:  # type: ignore[no-untyped-def]
    result = cf("status", "--all", "a", "b", "--json")
    assert result.exit_code == ExitCode.CONFIG
    assert "--all takes no instance names" in valid(json.loads(result.stdout), "error")["error"]


def test_group_option_refusals_are_json_too(cf) -> None:  # type: ignore[no-untyped-def]
    for args in (("--color", "purple", "status", "--json"), ("--json", "status")):
        result = cf(*args)
        assert result.exit_code == ExitCode.CONFIG, (args, result.output)
        valid(json.loads(result.stdout), "error")


def test_json_error_messages_read_as_on_stderr(cf) -> None:  # type: ignore[no-untyped-def]
    result = cf("stop", "--wait", "-1", "--json")
    error = valid(json.loads(result.stdout), "error")["error"]
    assert error.startswith("--wait: ") and f"cf-launch: error: {error}" in result.stderr


def test_start_of_a_running_instance_says_so_and_warns_when_unhealthy(cf, tmp_path: Path  # type: ignore[no-untyped-def]
                                                                      ) -> None:
    fresh = json.loads(cf("start", "--json").stdout)
    assert valid(fresh, "start")["already_running"] is False
    again = cf("start")
    assert "instance coldfront already running" in again.stdout and "None" not in again.stdout
    sick = cf("start", env={"FAKE_APPTAINER_SYSTEM_STATE": "degraded"})
    assert sick.exit_code == 0
    assert "warning: it is not healthy: systemd inside is degraded" in sick.stderr
    other = tmp_path / "other.sif"
    other.write_bytes((tmp_path / "coldfront.sif").read_bytes())
    asked = cf("start", "--image", str(other))
    assert f"--image {other} takes effect with `cf-launch restart" in asked.stderr


def test_sigterm_ends_a_run_of_several_names(cf, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from coldfront_launch.errors import Terminated
    from coldfront_launch.lifecycle import launcher as launcher_module
    asked: list[str] = []

    def terminated(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        asked.append(self.settings.name)
        raise Terminated(143)
    monkeypatch.setattr(launcher_module.Launcher, "stop", terminated)
    result = cf("stop", "a", "b", "--json")
    assert result.exit_code == ExitCode.TERMINATED and asked == ["a"], "b was not stopped"
    assert valid(json.loads(result.stdout)[0], "error")["code_name"] == "terminated"


def test_exec_options_and_names_in_any_order(tmp_path: Path, fake_apptainer: Path) -> None:
    state = json.dumps({"coldfront": {"instance": "coldfront", "pid": 1, "img": "x",
                                      "ip": ""}})
    Path(os.environ["FAKE_APPTAINER_STATE"]).write_text(state)
    for args in (["exec", "--name", "coldfront", "pwd"], ["--name", "coldfront", "exec", "pwd"],
                 ["exec", "coldfront", "--pwd", str(tmp_path), "pwd"]):
        result = run(args, tmp_path)
        assert result.returncode == 0, (args, result.stderr)
        assert result.stdout.strip() in ("/", str(tmp_path)), args
    moved = run(["exec", "coldfront", "--pwd", str(tmp_path), "pwd"], tmp_path)
    assert moved.stdout.strip() == str(tmp_path), "--pwd after NAME is cf-launch's option"


def test_completion_reads_the_settings_state_root(tmp_path: Path) -> None:
    root = tmp_path / "elsewhere"
    (root / "cfsite").mkdir(parents=True)
    (root / "cfsite" / "journal.jsonl").write_text("")
    config = tmp_path / "site.toml"
    config.write_text(f'state_root = "{root}"\n')
    env = {"_CF_LAUNCH_COMPLETE": "bash_complete",
           "COMP_WORDS": f"cf-launch --config {config} stop cfsite ", "COMP_CWORD": "5"}
    again = run([], tmp_path, **env)
    assert "cfsite" not in again.stdout, "a name already given is not offered again"
    env["COMP_WORDS"], env["COMP_CWORD"] = f"cf-launch --config {config} stop c", "4"
    assert "plain,cfsite" in run([], tmp_path, **env).stdout


def test_color_is_kept_for_refusals_shown_after_the_command(cf) -> None:  # type: ignore[no-untyped-def]
    red = "\x1b[31m"
    runner = split_runner()
    never = runner.invoke(cli, ["--color", "never", "status", "no/x"], color=True)
    assert never.exit_code == ExitCode.CONFIG and red not in never.stderr
    always = runner.invoke(cli, ["--color", "always", "status", "no/x"])
    assert red in always.stderr
    quiet = runner.invoke(cli, ["status", "no/x"], env={"NO_COLOR": "1"}, color=True)
    assert red not in quiet.stderr


def test_a_refused_command_line_is_one_line_and_a_hint(tmp_path: Path) -> None:
    # click's words (8.1, on Python 3.9: "No such option: --bogus"; 8.2+: "… '--bogus'.")
    for args, said in ((["stop", "--bogus"], r"No such option:? '?--bogus'?\.?"),
                       (["logs", "a", "b"], r"Got unexpected extra argument \(b\)")):
        result = run(args, tmp_path)
        assert result.returncode == ExitCode.CONFIG
        error, hint = result.stderr.splitlines()
        assert re.fullmatch(f"cf-launch: error: {said}", error), error
        assert hint == f"hint: see `cf-launch {args[0]} --help`"
    alone = run([], tmp_path)
    assert "Usage: cf-launch [OPTIONS] COMMAND" in alone.stdout + alone.stderr, "the help"
    assert "[NAME] -- COMMAND..." in run(["exec", "--help"], tmp_path).stdout


def test_start_of_an_instance_plain_apptainer_started_is_refused(cf) -> None:  # type: ignore[no-untyped-def]
    state = json.dumps({"plain": {"instance": "plain", "pid": 1, "img": "x", "ip": ""}})
    Path(os.environ["FAKE_APPTAINER_STATE"]).write_text(state)
    result = cf("start", "plain")
    assert result.exit_code == ExitCode.RUNNING, result.output
    assert "instance plain runs, but cf-launch did not start it" in result.stderr


SHARED_SCHEMAS = {"restart": "start", "attach": "start", "admin create": "admin-create",
                  "config show": "config-show"}


def test_every_command_with_json_has_a_schema() -> None:
    from tests.jsonschemas import SCHEMAS
    with_json = [path for path, command in _commands(cli)
                 if any("--json" in getattr(p, "opts", []) for p in command.params)]
    assert len(with_json) >= 17, with_json
    missing = [path for path in with_json
               if not (SCHEMAS / f"{SHARED_SCHEMAS.get(path, path)}.schema.json").exists()]
    assert missing == [], "add a schema to docs/schemas (and validate it in a test)"
