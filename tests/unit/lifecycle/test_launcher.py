"""Start, stop, plan, status and recovery, with only the apptainer executable faked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coldfront_launch import plugins
from coldfront_launch.changes import journal
from coldfront_launch.errors import HostChangeError, LockedError, NotRunningError, StartError
from coldfront_launch.lifecycle.launcher import PLACEHOLDER_IP, Launcher
from coldfront_launch.state.instance import InstanceState
from coldfront_launch.testing.sif import write_minimal_sif
from tests import recorder_plugin
from tests.conftest import calls

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def recorder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, http_server,
             sysctl_root: Path) -> Path:
    """Register the recording plugin; it answers readiness on a real local HTTP server.

    Its sysctl change goes to a private folder, here and in child processes alike."""
    monkeypatch.setenv("TEST_SYSCTL_ROOT", str(sysctl_root))
    log = tmp_path / "hooks.log"
    monkeypatch.setenv("RECORDER_LOG", str(log))
    monkeypatch.setenv("RECORDER_FILE", str(tmp_path / "etc" / "made-by-recorder.conf"))
    monkeypatch.setenv("RECORDER_ENDPOINT", json.dumps(list(http_server)))
    plugins.register(recorder_plugin, "recorder")
    return log


def test_start_runs_hooks_in_order_and_stop_undoes_everything(
        make_settings, fake_apptainer: Path, recorder: Path, sysctl_root: Path,
        tmp_path: Path) -> None:
    launcher = Launcher(make_settings(hooks=["recorder"]))
    started = launcher.start()

    assert recorder.read_text().split() == [
        "validate", "preflight", "binds", "pre_start", "start_options", "post_start",
        "readiness_endpoint"]
    assert started.readiness is not None and started.readiness.http_status == 200
    assert started.readiness.system_state == "running"
    start_call = next(c for c in calls(fake_apptainer) if c[2:4] == ["instance", "start"])
    assert start_call[1:7] == ["--quiet", "instance", "start", "--boot", "-B", "/sys/fs/cgroup"]
    assert "--writable-tmpfs" in start_call and start_call[-1] == "coldfront"
    assert "--hostname" in start_call
    made = tmp_path / "etc" / "made-by-recorder.conf"
    assert made.read_text() == "made by recorder\n"
    assert (sysctl_root / "net/ipv4/ip_forward").read_text().strip() == "1"
    state_dir = tmp_path / "state" / "coldfront"
    assert (state_dir / "coldfront.env").stat().st_mode & 0o777 == 0o600
    assert "SECRET_KEY=" in (state_dir / "coldfront.env").read_text()

    launcher.stop()
    assert recorder.read_text().split()[-2:] == ["pre_stop", "post_stop"]
    assert not made.exists() and not made.parent.exists()
    assert (sysctl_root / "net/ipv4/ip_forward").read_text().strip() == "0"
    assert not (state_dir / "binds").exists()
    assert journal.entries(InstanceState(state_dir)) == []
    assert any(c[2:4] == ["instance", "stop"] for c in calls(fake_apptainer))
    # The site's data and secret survive a stop.
    assert (state_dir / "coldfront.env").exists() and (state_dir / "data").is_dir()


def test_secret_key_generated_once(make_settings, fake_apptainer, recorder, sysctl_root,
                                   tmp_path: Path) -> None:
    launcher = Launcher(make_settings(hooks=["recorder"]))
    launcher.start()
    env = tmp_path / "state" / "coldfront" / "coldfront.env"
    first = env.read_text()
    launcher.stop()
    launcher.start()
    assert env.read_text() == first
    launcher.stop()


def test_failed_start_undoes_and_carries_apptainer_stderr(
        make_settings, fake_apptainer, recorder, sysctl_root, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_APPTAINER_FAIL_START", "container creation failed: no loop device")
    with pytest.raises(StartError) as err:
        Launcher(make_settings(hooks=["recorder"])).start()
    assert "no loop device" in str(err.value)
    assert "FATAL" in err.value.stderr
    assert not (tmp_path / "etc" / "made-by-recorder.conf").exists()
    assert (sysctl_root / "net/ipv4/ip_forward").read_text().strip() == "0"
    assert journal.entries(InstanceState(tmp_path / "state" / "coldfront")) == []


def test_plan_matches_start(make_settings, fake_apptainer, recorder, sysctl_root) -> None:
    launcher = Launcher(make_settings(hooks=["recorder"]))
    plan = launcher.plan()
    assert calls(fake_apptainer) == [], "plan must not run apptainer"
    assert not launcher.settings.state_dir.exists(), "plan must not create state"
    started = launcher.start()
    start_call = next(c for c in calls(fake_apptainer) if c[2:4] == ["instance", "start"])
    assert plan.command[0] == "apptainer"
    assert plan.command[1:] == start_call[1:]
    assert [c.to_json() for c in plan.changes] == [c.to_json() for c in started.changes]
    assert {c.kind for c in plan.changes} == {"file", "sysctl"}
    launcher.stop()


def _cli_argv(args: list[str]) -> list[str]:
    """The argv of a child cf-launch process with the recorder plugin registered."""
    code = (f"import os, sys; sys.path.insert(0, {str(ROOT)!r})\n"
            "from pathlib import Path\n"
            "from coldfront_launch import plugins\n"
            "from coldfront_launch.linux import sysctl\n"
            "sysctl.SYSCTL_ROOT = Path(os.environ['TEST_SYSCTL_ROOT'])  # never the real one\n"
            "from tests import recorder_plugin\n"
            "if 'TEST_AUTOREPAIR_RETRY' in os.environ:  # a deferred repair's retry, shorter\n"
            "    from coldfront_launch.service import autorepair\n"
            "    autorepair.RETRY = float(os.environ['TEST_AUTOREPAIR_RETRY'])\n"
            "plugins.register(recorder_plugin, 'recorder')\n"
            "from coldfront_launch.cli import main\n"
            f"sys.argv = ['cf-launch'] + {args!r}\n"
            "main()\n")
    return [sys.executable, "-c", code]


def _cli(args: list[str], env: dict[str, str],
         prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Run cf-launch in a child process with the recorder plugin registered."""
    return subprocess.run([*prefix, *_cli_argv(args)], capture_output=True, text=True,
                          env=env, timeout=60)


def _config(tmp_path: Path, extra: str = "") -> Path:
    image = write_minimal_sif(tmp_path / "coldfront.sif")
    config = tmp_path / "cf.toml"
    config.write_text(f'state_root = "{tmp_path / "state"}"\nimage = "{image}"\n'
                      f'hooks = ["recorder"]\nready_timeout = 10\n{extra}')
    return config


def test_kill_during_start_then_stop_restores(fake_apptainer, recorder, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A cf-launch killed after the instance started leaves a journal that stop replays."""
    made = tmp_path / "etc" / "made-by-recorder.conf"
    env = {**os.environ, "RECORDER_KILL_IN_POST_START": "1",
           "CF_LAUNCH_SYSTEM_CONFIG": str(tmp_path / "none")}
    config = _config(tmp_path)
    killed = _cli(["--config", str(config), "start"], env)
    assert killed.returncode == -9
    assert made.exists(), "the change before the kill happened"
    state = InstanceState(tmp_path / "state" / "coldfront")
    assert {e.kind for e in journal.entries(state)} >= {"file", "instance"}

    env.pop("RECORDER_KILL_IN_POST_START")
    stopped = _cli(["--config", str(config), "stop"], env)
    assert stopped.returncode == 0, stopped.stderr
    assert not made.exists()
    assert journal.entries(state) == []
    assert json.loads(Path(os.environ["FAKE_APPTAINER_STATE"]).read_text()) == {}


def test_lock_keeps_two_processes_apart(make_settings, fake_apptainer, recorder) -> None:
    launcher = Launcher(make_settings(hooks=["recorder"]))
    with launcher.state.locked(), pytest.raises(LockedError, match=r"pid \d+"):
        Launcher(make_settings(hooks=["recorder"])).start()


def test_stop_when_not_running(make_settings, fake_apptainer, recorder) -> None:
    with pytest.raises(NotRunningError):
        Launcher(make_settings(hooks=["recorder"])).stop()


def test_status_json(fake_apptainer, recorder, sysctl_root, tmp_path: Path) -> None:
    env = {**os.environ, "CF_LAUNCH_SYSTEM_CONFIG": str(tmp_path / "none")}
    config = _config(tmp_path)
    down = _cli(["--config", str(config), "status", "--json"], env)
    assert json.loads(down.stdout)["running"] is False
    assert _cli(["--config", str(config), "start", "--json"], env).returncode == 0
    up = json.loads(_cli(["--config", str(config), "status", "--json"], env).stdout)
    assert up["running"] is True and up["instance"]["name"] == "coldfront"
    assert up["http_status"] == 200 and up["system_state"] == "running"
    assert up["hooks"] == ["recorder"]
    assert _cli(["--config", str(config), "stop"], env).returncode == 0


def test_not_ready_reports_state_and_keeps_instance(
        make_settings, fake_apptainer, recorder, sysctl_root,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from coldfront_launch.errors import NotReadyError
    monkeypatch.setenv("FAKE_APPTAINER_SYSTEM_STATE", "starting")
    launcher = Launcher(make_settings(hooks=["recorder"], ready_timeout=0.5))
    with pytest.raises(NotReadyError, match="systemd: starting"):
        launcher.start()
    launcher.stop()


def test_placeholder_in_plan(make_settings, recorder) -> None:
    plan = Launcher(make_settings(hooks=["recorder"])).plan()
    assert plan.command[-1] == "coldfront"
    assert PLACEHOLDER_IP == "<instance-ip>"


@pytest.mark.skipif(os.geteuid() != 0, reason="creates a network namespace")
def test_stop_from_another_namespace_is_refused(fake_apptainer, recorder, tmp_path: Path) -> None:
    """Undoing network changes in the wrong namespace would change the wrong host."""
    env = {**os.environ, "CF_LAUNCH_SYSTEM_CONFIG": str(tmp_path / "none")}
    config = _config(tmp_path)
    started = _cli(["--config", str(config), "start", "--no-wait"], env)
    assert started.returncode == 0, started.stderr
    ns = f"cfl{os.getpid()}x"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        refused = _cli(["--config", str(config), "stop"], env,
                       prefix=("nsenter", f"--net=/run/netns/{ns}"))
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=True)
    assert refused.returncode == 6, refused.stderr
    assert "was started in network namespace" in refused.stderr
    assert (tmp_path / "etc" / "made-by-recorder.conf").exists(), "nothing was undone"
    assert _cli(["--config", str(config), "stop"], env).returncode == 0
    assert not (tmp_path / "etc" / "made-by-recorder.conf").exists()


def test_sigterm_during_start_undoes_at_once(fake_apptainer, recorder, tmp_path: Path) -> None:
    """A service manager's SIGTERM mid-start leaves nothing behind, without a `stop`."""
    hung = tmp_path / "hung"
    env = {**os.environ, "RECORDER_HANG_IN_POST_START": str(hung),
           "CF_LAUNCH_SYSTEM_CONFIG": str(tmp_path / "none")}
    child = subprocess.Popen(_cli_argv(["--config", str(_config(tmp_path)), "start"]),
                             env=env, text=True, stderr=subprocess.PIPE)
    for _ in range(200):
        if hung.exists():
            break
        time.sleep(0.05)
    assert hung.exists(), "post_start was reached"
    assert (tmp_path / "etc" / "made-by-recorder.conf").exists()
    child.terminate()
    _, stderr = child.communicate(timeout=30)
    assert child.returncode == 143, stderr
    assert "undoing every change" in stderr
    assert not (tmp_path / "etc" / "made-by-recorder.conf").exists()
    assert journal.entries(InstanceState(tmp_path / "state" / "coldfront")) == []
    assert json.loads(Path(os.environ["FAKE_APPTAINER_STATE"]).read_text()) == {}


def _start_in_a_namespace_then_drop_it(config: Path, env: dict[str, str], ns: str
                                       ) -> subprocess.CompletedProcess[str]:
    """``cf-launch start --no-wait`` in a new sandbox namespace, which is then deleted."""
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        return _cli(["--config", str(config), "start", "--no-wait"], env,
                    prefix=("nsenter", f"--net=/run/netns/{ns}"))
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="creates a network namespace")
def test_stop_after_the_namespace_is_gone(fake_apptainer, recorder, tmp_path: Path) -> None:
    """A destroyed namespace took its network state with it: stop undoes the rest."""
    env = {**os.environ, "CF_LAUNCH_SYSTEM_CONFIG": str(tmp_path / "none")}
    config = _config(tmp_path)
    started = _start_in_a_namespace_then_drop_it(config, env, f"cfl{os.getpid()}g")
    assert started.returncode == 0, started.stderr
    claims = tmp_path / "state" / "claims.json"
    assert '"kind": "sysctl"' in claims.read_text()

    stopped = _cli(["--config", str(config), "stop"], env)
    assert stopped.returncode == 0, stopped.stderr
    assert "namespace this instance was started in is gone" in stopped.stderr
    assert not (tmp_path / "etc" / "made-by-recorder.conf").exists()
    assert journal.entries(InstanceState(tmp_path / "state" / "coldfront")) == []
    assert not claims.exists(), "the dead namespace's claims are dropped"
    assert json.loads(Path(os.environ["FAKE_APPTAINER_STATE"]).read_text()) == {}


def test_undo_never_depends_on_todays_settings(make_settings, fake_apptainer, recorder,
                                                sysctl_root, tmp_path: Path) -> None:
    """Stop works from the journal after the config changed; an undo that fails is reported,
    the rest is undone, and the next start is not blocked (what failed is set aside)."""
    made = tmp_path / "etc" / "made-by-recorder.conf"
    Launcher(make_settings(hooks=["recorder"])).start()
    assert made.exists()
    # The settings change under a running instance: other hooks, another timeout.
    changed = Launcher(make_settings(hooks=["bridge"], ready_timeout=5))
    changed.stop()
    assert not made.exists() and (sysctl_root / "net/ipv4/ip_forward").read_text() == "0\n"

    launcher = Launcher(make_settings(hooks=["recorder"]))
    launcher.start()
    # An undo that cannot work: the file's folder has become a file.
    made.unlink()
    made.parent.rmdir()
    made.parent.write_text("someone else's file now")
    state = InstanceState(launcher.settings.state_dir)
    with pytest.raises(HostChangeError) as err:
        launcher.stop()
    assert "NotADirectoryError" in str(err.value) and str(made) in str(err.value)
    assert (sysctl_root / "net/ipv4/ip_forward").read_text() == "0\n", "the rest was undone"
    assert [e.kind for e in journal.entries(state)] == ["file"], "only the failure is kept"

    notes: list[str] = []
    made.parent.unlink()
    Launcher(make_settings(hooks=["recorder"]), report=notes.append).start()
    assert not any("could not undo" in n for n in notes), "fixed: the retry worked"
    Launcher(make_settings(hooks=["recorder"])).stop()
    assert journal.entries(state) == [] and state.unresolved() == 0


def test_stuck_leftovers_are_set_aside_not_blocking(make_settings, fake_apptainer, recorder,
                                                    sysctl_root, tmp_path: Path) -> None:
    from coldfront_launch.changes import Unknown

    launcher = Launcher(make_settings(hooks=["recorder"]))
    state = InstanceState(launcher.settings.state_dir)
    journal.record(state, Unknown({"type": "from-a-newer-release"}))
    notes: list[str] = []
    Launcher(make_settings(hooks=["recorder"]), report=notes.append).start()
    assert any("could not undo" in n and "unresolved.jsonl" in n for n in notes), notes
    assert state.unresolved() == 1 and "from-a-newer-release" in \
        state.unresolved_path.read_text()
    launcher.stop()
    assert journal.entries(state) == []


def test_stop_of_an_unknown_name_creates_nothing(make_settings, fake_apptainer,
                                                 tmp_path: Path) -> None:
    launcher = Launcher(make_settings(name="never-started"))
    with pytest.raises(NotRunningError):
        launcher.stop()
    assert not launcher.settings.state_dir.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="creates network namespaces")
def test_start_after_a_simulated_reboot(fake_apptainer, recorder, tmp_path: Path) -> None:
    """A reboot took the namespace, its sysctls and the instance: the next start forgets the
    old boot's network changes (and claims), undoes its files, and starts cleanly."""
    boot = tmp_path / "boot_id"
    boot.write_text("boot-one\n")
    env = {**os.environ, "CF_LAUNCH_SYSTEM_CONFIG": str(tmp_path / "none"),
           "CF_LAUNCH_BOOT_ID_FILE": str(boot)}
    config = _config(tmp_path)
    claims = tmp_path / "state" / "claims.json"
    second = f"cfl{os.getpid()}r2"
    started = _start_in_a_namespace_then_drop_it(config, env, f"cfl{os.getpid()}r1")
    assert started.returncode == 0, started.stderr
    assert '"boot": "boot-one"' in claims.read_text()
    # The reboot: a new boot id, the instance gone, a new namespace that may reuse numbers.
    boot.write_text("boot-two\n")
    Path(os.environ["FAKE_APPTAINER_STATE"]).write_text("{}")
    subprocess.run(["ip", "netns", "add", second], check=True)
    try:
        again = _cli(["--config", str(config), "start", "--no-wait"], env,
                     prefix=("nsenter", f"--net=/run/netns/{second}"))
        assert again.returncode == 0, again.stderr
        assert "could not undo" not in again.stderr
        assert '"boot": "boot-two"' in claims.read_text()
        assert "boot-one" not in claims.read_text(), "the old boot's claims are dropped"
        stopped = _cli(["--config", str(config), "stop"], env,
                       prefix=("nsenter", f"--net=/run/netns/{second}"))
        assert stopped.returncode == 0, stopped.stderr
    finally:
        subprocess.run(["ip", "netns", "del", second], check=True)
    assert journal.entries(InstanceState(tmp_path / "state" / "coldfront")) == []
    assert not claims.exists()
    assert not (tmp_path / "etc" / "made-by-recorder.conf").exists()
