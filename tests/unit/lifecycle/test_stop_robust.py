"""``stop`` finishes what it can and says exactly what it could not (issue 26, item 1):
plugins that fail or are gone, journal lines that cannot be read, a full state disk."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import textwrap
from pathlib import Path

import pytest

from coldfront_launch import plugins
from coldfront_launch.changes import journal
from coldfront_launch.errors import HostChangeError, LaunchError
from coldfront_launch.lifecycle.launcher import Launcher
from coldfront_launch.state.instance import InstanceState
from tests.unit.lifecycle.test_launcher import _cli, _cli_argv, _config, recorder

__all__ = ["recorder"]  # the fixture, shared with test_launcher


def _started(make_settings) -> tuple[Launcher, Path]:  # type: ignore[no-untyped-def]
    launcher = Launcher(make_settings(hooks=["recorder"]))
    launcher.start(wait=False)
    made = Path(os.environ["RECORDER_FILE"])
    assert made.exists()
    return launcher, made


def _everything_undone(launcher: Launcher, made: Path) -> None:
    assert not made.exists(), "the plugin's file change is undone"
    assert journal.entries(launcher.state) == []
    assert json.loads(Path(os.environ["FAKE_APPTAINER_STATE"]).read_text()) == {}


@pytest.mark.parametrize("hook", ["pre_stop", "post_stop"])
@pytest.mark.parametrize("how, said", [("raise", "failed: RuntimeError: recorder told to "
                                                  "fail in HOOK"),
                                       ("exit", "called sys.exit(3)"),
                                       ("interrupt", "was interrupted (Ctrl-C)")])
def test_a_plugin_failing_on_stop_never_stops_the_stop(
        make_settings, fake_apptainer, recorder, monkeypatch: pytest.MonkeyPatch,
        hook: str, how: str, said: str) -> None:
    launcher, made = _started(make_settings)
    monkeypatch.setenv("RECORDER_FAIL", f"{hook}:{how}")
    reported: list[str] = []
    launcher.report = reported.append
    result = launcher.stop()
    said = said.replace("HOOK", hook)
    assert result["plugin_failures"] == [f"plugin recorder: cf_launch_{hook} {said}"]
    assert f"warning: plugin recorder: cf_launch_{hook} {said}" in reported
    _everything_undone(launcher, made)


@pytest.mark.parametrize("gone", ["uninstalled", "blocked"])
def test_stop_needs_no_plugin_to_undo_its_changes(
        make_settings, fake_apptainer, recorder, monkeypatch: pytest.MonkeyPatch,
        gone: str) -> None:
    launcher, made = _started(make_settings)
    if gone == "uninstalled":
        plugins.load().pm.unregister(name="recorder")
    else:
        monkeypatch.setattr(plugins.load(), "blocked", {"recorder"})
    reported: list[str] = []
    launcher.report = reported.append
    assert launcher.stop()["plugin_failures"] == []
    assert any(line.startswith("warning: plugin recorder ") and "undone from the journal"
               in line for line in reported), reported
    _everything_undone(launcher, made)


def test_a_plugins_exit_code_is_never_cf_launchs(fake_apptainer, recorder,
                                                  tmp_path: Path) -> None:
    env = {**os.environ, "CF_LAUNCH_SYSTEM_CONFIG": str(tmp_path / "none")}
    config = _config(tmp_path)
    assert _cli(["--config", str(config), "start", "--no-wait"], env).returncode == 0
    stopped = _cli(["--config", str(config), "stop"], {**env, "RECORDER_FAIL": "pre_stop:exit"})
    assert stopped.returncode == 1, stopped.stderr
    assert "plugin recorder: cf_launch_pre_stop called sys.exit(3)" in stopped.stderr
    assert "1 plugin hook(s) failed" in stopped.stdout
    assert not (tmp_path / "etc" / "made-by-recorder.conf").exists()


def _spoil(state: InstanceState, line: int, junk: bytes) -> None:
    lines = state.journal_path.read_bytes().split(b"\n")
    lines.insert(line - 1, junk)
    state.journal_path.write_bytes(b"\n".join(lines))


@pytest.mark.parametrize("junk, why", [
    (b'{"type": "file", "path": "/etc/\xff"}', "not UTF-8 at byte 32"),
    (b"rm -rf /", "not a JSON object"),
    (b"[1, 2]", "not a JSON object")])
def test_an_unreadable_journal_line_is_named_never_skipped(
        make_settings, fake_apptainer, recorder, junk: bytes, why: str) -> None:
    launcher, made = _started(make_settings)
    _spoil(launcher.state, 2, junk)
    with pytest.raises(HostChangeError) as caught:
        launcher.stop()
    assert f"journal line 2 of {launcher.state.journal_path} could not be read ({why})" \
        in str(caught.value)
    assert "check by hand" in caught.value.hint
    assert not made.exists(), "everything else is undone"
    left = journal.entries(launcher.state)
    assert [e.target for e in left] == ["journal line 2"], "kept for the admin"
    with pytest.raises(HostChangeError, match="journal line 2"):
        launcher.stop()  # and it says so again, every time


def test_a_torn_last_line_is_a_change_never_made(make_settings, fake_apptainer,
                                                 recorder) -> None:
    launcher, made = _started(make_settings)
    with launcher.state.journal_path.open("ab") as fh:
        fh.write(b'{"type": "file", "pa')  # killed mid-write: no newline
    assert launcher.stop()["plugin_failures"] == []
    _everything_undone(launcher, made)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs in a private mount namespace")
def test_stop_on_a_full_state_disk(fake_apptainer, recorder, tmp_path: Path) -> None:
    """The state folder on a 1 MiB tmpfs, filled to the last byte after the start."""
    state = tmp_path / "state"
    state.mkdir()
    env = {**os.environ, "CF_LAUNCH_SYSTEM_CONFIG": str(tmp_path / "none")}
    config = _config(tmp_path)
    start = shlex.join(_cli_argv(["--config", str(config), "start", "--no-wait"]))
    stop = shlex.join(_cli_argv(["--config", str(config), "stop"]))
    script = textwrap.dedent(f"""\
        mount -t tmpfs -o size=1m tmpfs {state}
        {start} >/dev/null 2>&1 || exit 90
        dd if=/dev/zero of={state}/filler bs=4k 2>/dev/null
        printf x >{state}/more 2>/dev/null && exit 91  # not full
        {stop}
        echo "stop exit $?"; ls -a {state}/coldfront
    """)
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           script], env=env, capture_output=True, text=True, timeout=120)
    assert "stop exit 0" in done.stdout, done.stdout + done.stderr
    assert "journal.jsonl" not in done.stdout
    assert "could not" not in done.stderr
    assert not (tmp_path / "etc" / "made-by-recorder.conf").exists()


@pytest.mark.parametrize("finisher", ["start", "repair"])
def test_a_start_cut_short_is_not_ready_until_finished(
        fake_apptainer, recorder, tmp_path: Path, finisher: str) -> None:
    """cf-launch killed right after ``instance start``: ``status`` says not ready (exit 5,
    not 0 without a word), and ``start`` or ``repair`` runs the post_start it missed."""
    env = {**os.environ, "CF_LAUNCH_SYSTEM_CONFIG": str(tmp_path / "none")}
    config = ["--config", str(_config(tmp_path))]
    killed = _cli([*config, "start", "--no-wait"],
                  {**env, "CF_LAUNCH_TEST_DIE_AFTER": "apptainer_start"})
    assert killed.returncode == -9
    assert "post_start" not in recorder.read_text().split()
    status = _cli([*config, "status", "--json"], env)
    assert status.returncode == 5, status.stdout + status.stderr
    assert "cut short after the instance started" in json.loads(status.stdout)[
        "unfinished_start"]
    human = _cli([*config, "status"], env)
    assert "not ready: cf-launch start was cut short" in human.stdout
    done = _cli([*config, finisher, *(["--no-wait"] if finisher == "start" else [])], env)
    assert done.returncode == 0, done.stderr
    assert "finishing it (post_start)" in done.stderr
    assert recorder.read_text().split().count("post_start") == 1
    assert "already running" not in done.stderr
    after = _cli([*config, "status", "--json"], env)
    assert after.returncode == 0 and json.loads(after.stdout)["unfinished_start"] == ""
    assert _cli([*config, "stop"], env).returncode == 0


def test_stop_of_an_instance_cf_launch_never_started_leaves_no_trace(
        make_settings, fake_apptainer) -> None:
    state = Path(os.environ["FAKE_APPTAINER_STATE"])
    state.write_text(json.dumps({"raw": {"instance": "raw", "pid": 4242, "img": "/r.sif",
                                          "ip": ""}}))
    launcher = Launcher(make_settings(name="raw"))
    with pytest.raises(LaunchError, match="no host changes recorded") as caught:
        launcher.stop()
    assert "apptainer instance stop raw" in caught.value.hint
    assert not launcher.settings.state_dir.exists(), "no state folder for status --all"
    assert "raw" in json.loads(state.read_text()), "and the instance is left alone"


def test_undo_reports_only_changes_it_made(sysctl_root: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A sysctl that never changed (a start that failed first, /proc/sys read-only): its
    restore writes nothing, so there is no "could not undo ip_forward" to report."""
    from coldfront_launch.changes import Sysctl
    from coldfront_launch.linux import sysctl

    def read_only(key: str, value: str) -> None:
        raise HostChangeError(f"cannot write sysctl {key}: Read-only file system")
    monkeypatch.setattr(sysctl, "write", read_only)
    Sysctl(name="net.ipv4.ip_forward", value="1").restore("0")  # it is 0: nothing to do
    (sysctl_root / "net/ipv4/ip_forward").write_text("1\n")
    with pytest.raises(HostChangeError, match="Read-only"):
        Sysctl(name="net.ipv4.ip_forward", value="1").restore("0")
