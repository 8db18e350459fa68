"""Embedding: prepare's three forms and their quoting, attach's refusals, detach, the
drop-in. The fake apptainer stands in at the process boundary; the site's own start is
an `apptainer instance start` with the printed options."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from coldfront_launch.changes import journal
from coldfront_launch.errors import ConfigError, LaunchError, PreflightError
from coldfront_launch.lifecycle import embedding as embed
from coldfront_launch.lifecycle.launcher import Launcher
from coldfront_launch.state.instance import InstanceState
from tests.conftest import calls
from tests.unit.lifecycle.test_launcher import recorder  # noqa: F401 - the recording plugin fixture


def site_start(launcher: Launcher, options: list[str]) -> None:
    """The site's own start line: `apptainer instance start --boot ... "$@" IMAGE NAME`."""
    argv = ["apptainer", "instance", "start", "--boot", "--writable-tmpfs", *options,
            str(launcher.settings.image_path), launcher.settings.name]
    subprocess.run(argv, check=True, capture_output=True)


def test_prepare_attach_detach(make_settings, fake_apptainer, recorder, sysctl_root,  # noqa: F811
                               tmp_path: Path) -> None:
    launcher = Launcher(make_settings(hooks=["recorder"]))
    made = tmp_path / "etc" / "made-by-recorder.conf"
    prepared = launcher.prepare()
    assert made.exists() and (sysctl_root / "net/ipv4/ip_forward").read_text() == "1\n"
    assert not any(c[2:4] == ["instance", "start"] for c in calls(fake_apptainer)), \
        "prepare never starts the instance"
    assert "--hostname" in prepared.options and "--boot" not in prepared.options
    assert prepared.command[:4] == ["apptainer", "--quiet", "instance", "start"]
    assert set(prepared.options) <= set(prepared.command)

    site_start(launcher, prepared.options)
    started = launcher.attach()
    assert started.readiness is not None and started.readiness.http_status == 200
    assert recorder.read_text().split()[-3:] == ["check_instance", "post_start",
                                                 "readiness_endpoint"]
    assert launcher.status()["running"]

    result = launcher.detach()
    assert result == {"name": "coldfront", "detached": True, "still_running": True,
                      "plugin_failures": []}
    assert not made.exists() and (sysctl_root / "net/ipv4/ip_forward").read_text() == "0\n"
    assert journal.entries(InstanceState(launcher.settings.state_dir)) == []
    assert not any(c[2:4] == ["instance", "stop"] for c in calls(fake_apptainer)), \
        "detach never stops the instance"
    assert recorder.read_text().split()[-2:] == ["pre_stop", "post_stop"]


def test_only_hooks_leaves_out_the_core(make_settings, fake_apptainer, recorder,  # noqa: F811
                                        sysctl_root) -> None:
    launcher = Launcher(make_settings(hooks=["recorder"]))
    full = launcher.plan()
    only = launcher.prepare(only_hooks=True)
    assert "/etc/coldfront/coldfront.env" in " ".join(full.command)
    assert not any("coldfront.env" in word or word == "/sys/fs/cgroup" for word in only.options)
    assert only.options[-2:] == ["--hostname", "recorder"]
    assert not (launcher.settings.state_dir / "coldfront.env").exists(), \
        "no data folder for an image with its own layout"
    launcher.detach()


def test_attach_refusals_change_nothing(make_settings, fake_apptainer, recorder,  # noqa: F811
                                        sysctl_root, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    launcher = Launcher(make_settings(hooks=["recorder"]))
    with pytest.raises(LaunchError, match="nothing was prepared") as err:
        launcher.attach()
    assert "cf-launch prepare --name coldfront" in err.value.hint

    prepared = launcher.prepare()
    with pytest.raises(LaunchError, match="is not running"):
        launcher.attach()
    site_start(launcher, prepared.options)
    journal = launcher.state.journal_path.read_text()
    monkeypatch.setenv("RECORDER_REFUSE_ATTACH", "1")
    with pytest.raises(PreflightError, match="told to refuse") as refused:
        launcher.attach()
    assert "--hostname recorder" in refused.value.hint, "the hint shows the missing options"
    assert launcher.state.journal_path.read_text() == journal, "nothing changed"
    monkeypatch.delenv("RECORDER_REFUSE_ATTACH")
    launcher.attach(wait=False)
    subprocess.run(["apptainer", "instance", "stop", "coldfront"], check=True)
    launcher.detach()
    with pytest.raises(LaunchError, match="nothing to detach"):
        launcher.detach()


def test_started_instances_are_not_attached_or_detached(make_settings, fake_apptainer,
                                                        recorder, sysctl_root) -> None:  # noqa: F811
    launcher = Launcher(make_settings(hooks=["recorder"]))
    launcher.start(wait=False)
    with pytest.raises(LaunchError, match="started by cf-launch itself"):
        launcher.attach()
    with pytest.raises(LaunchError, match="started by cf-launch itself"):
        launcher.detach()
    launcher.stop()


def test_stop_of_an_attached_instance_stops_it_then_undoes(make_settings, fake_apptainer,
                                                           recorder, sysctl_root) -> None:  # noqa: F811
    launcher = Launcher(make_settings(hooks=["recorder"]))
    site_start(launcher, launcher.prepare().options)
    launcher.attach(wait=False)
    launcher.stop()
    assert launcher.status()["running"] is False
    assert journal.entries(InstanceState(launcher.settings.state_dir)) == []


WEIRD = ["/srv/with space/x:/y", "/srv/quote'd:/y", '/srv/dq"x:/y', "/srv/dollar$HOME:/y",
         "--net"]


def test_shell_form_round_trips_through_a_shell() -> None:
    e = embed.Embedding("cf", "/x.sif", ["--bind", *WEIRD], ["apptainer"])
    line = embed.render(e, "shell")
    # As a site's script uses it: eval "set -- $(cf-launch prepare)"
    out = subprocess.run(["bash", "-c", 'eval "set -- $LINE"; printf "%s\\n" "$@"'],
                         capture_output=True, text=True, check=True,
                         env={"LINE": line, "HOME": "/nowhere"}).stdout
    assert out.splitlines() == ["--bind", *WEIRD]
    assert shlex.split(line) == ["--bind", *WEIRD]


def test_json_form() -> None:
    e = embed.Embedding("cf", "/x.sif", ["--net"], ["apptainer", "instance", "start"],
                        env={"container": "apptainer"})
    assert json.loads(embed.render(e, "json")) == {
        "name": "cf", "image": "/x.sif", "options": ["--net"],
        "command": ["apptainer", "instance", "start"], "env": {"container": "apptainer"}}


@pytest.mark.parametrize("word", WEIRD[:3] + ["/srv/back\\slash:/y", "a\tb"])
def test_env_form_refuses_what_systemd_would_split(word: str) -> None:
    e = embed.Embedding("cf", "/x.sif", ["--bind", word], [])
    with pytest.raises(ConfigError, match="systemd would split"):
        embed.render(e, "env")


def test_env_form_body() -> None:
    e = embed.Embedding("cf", "/x.sif", ["--bind", "/a:/b:ro", "--net", "--network", "cf"], [])
    body = embed.render(e, "env")
    assert body.splitlines()[-1] == "CF_LAUNCH_OPTIONS=--bind /a:/b:ro --net --network cf"
    assert all(line.startswith("#") for line in body.splitlines()[:-1])


def test_env_refusal_happens_before_any_change(make_settings, fake_apptainer, recorder,  # noqa: F811
                                               sysctl_root, tmp_path: Path) -> None:
    spaced = tmp_path / "with space"
    spaced.mkdir()
    launcher = Launcher(make_settings(hooks=["recorder"], binds=[f"{spaced}:/mnt"]))
    with pytest.raises(ConfigError, match="systemd would split"):
        launcher.prepare(check=lambda e: embed.render(e, "env") and None)
    assert not launcher.state.journal_path.exists()
    assert (sysctl_root / "net/ipv4/ip_forward").read_text() == "0\n"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_dropin_verifies_with_a_sample_unit(tmp_path: Path) -> None:
    units = tmp_path / "system"
    (units / "coldfront.service.d").mkdir(parents=True)
    (units / "coldfront.service").write_text(
        "[Unit]\nDescription=A site's own ColdFront instance\n"
        "[Service]\nType=forking\nRemainAfterExit=yes\n"
        "ExecStart=/usr/bin/env apptainer instance start --boot --writable-tmpfs "
        "$CF_LAUNCH_OPTIONS /srv/coldfront.sif coldfront\n"
        "ExecStop=/usr/bin/env apptainer instance stop coldfront\n"
        "[Install]\nWantedBy=multi-user.target\n")
    text = embed.dropin("coldfront.service", ["/usr/bin/env", "cf-launch", "--config",
                                              "/etc/cf-launch/site.toml"], "coldfront",
                        ("bridge",), Path("/run/cf-launch/coldfront.env"), 300)
    (units / "coldfront.service.d" / "cf-launch.conf").write_text(text)
    assert "ExecStartPre=/usr/bin/env cf-launch --config /etc/cf-launch/site.toml prepare " \
        "--name coldfront --hook bridge --format env --output /run/cf-launch/coldfront.env" \
        in text
    assert "EnvironmentFile=-/run/cf-launch/coldfront.env" in text
    result = subprocess.run(["systemd-analyze", "verify", "--man=no",
                             str(units / "coldfront.service")], capture_output=True, text=True,
                            env={"SYSTEMD_UNIT_PATH": f"{units}:", "PATH": "/usr/bin:/bin"})
    problems = [line for line in result.stderr.splitlines()
                if "coldfront.service" in line or "cf-launch.conf" in line]
    assert result.returncode == 0 and not problems, result.stderr


def test_docs_python_recipe_runs(make_settings, fake_apptainer, recorder, sysctl_root,  # noqa: F811
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/embedding.md's Python recipe, as written, against the fake Apptainer."""
    import re

    import coldfront_launch

    text = (Path(__file__).resolve().parents[3] / "docs" / "embedding.md").read_text()
    (block,) = re.findall(r"## Recipe 3: Python\n.*?```python\n(.*?)```", text, re.S)
    monkeypatch.setattr(coldfront_launch, "load_settings",
                        lambda **kw: make_settings(hooks=["recorder"], **kw))
    exec(compile(block, "embedding.md", "exec"), {})  # noqa: S102 - the documented recipe
    log = recorder.read_text().split()
    assert log.index("binds") < log.index("check_instance") < log.index("post_stop")
    assert journal.entries(InstanceState(Path(make_settings().state_dir))) == []
