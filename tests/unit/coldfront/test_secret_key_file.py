"""``[coldfront] secret_key_file`` (issue 29, item 4): several hosts share one SECRET_KEY,
so a session made on one is valid on another."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coldfront_launch.coldfront import appdata, secrets
from coldfront_launch.coldfront import env as siteenv
from coldfront_launch.errors import ConfigError
from coldfront_launch.lifecycle.launcher import Launcher
from tests.unit.lifecycle.test_launcher import recorder

__all__ = ["recorder"]  # the fixture, shared with test_launcher

KEY = "k" * 20 + "-shared-by-every-host-0123456789"


def key_file(tmp_path: Path, text: str = KEY + "\n", mode: int = 0o600) -> Path:
    path = tmp_path / "secret_key"
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_the_env_file_takes_the_shared_key_and_keeps_it(tmp_path: Path,  # type: ignore[no-untyped-def]
                                                        make_settings) -> None:
    settings = make_settings(coldfront={"secret_key_file": str(key_file(tmp_path))})
    state = tmp_path / "state" / "coldfront"
    state.mkdir(parents=True)
    appdata.write_env(state, {"CENTER_NAME": "A"})  # an instance with its own key first
    own = appdata.read_env(state)["SECRET_KEY"]  # type: ignore[index]
    assert own != KEY
    appdata.ensure(state, None, siteenv.values(settings), siteenv.secret_key(settings))
    assert appdata.read_env(state)["SECRET_KEY"] == KEY  # type: ignore[index]
    appdata.ensure(state, None, siteenv.values(settings), siteenv.secret_key(settings))
    assert appdata.read_env(state)["SECRET_KEY"] == KEY, "kept"  # type: ignore[index]
    mine = make_settings()  # without the setting: the instance's own key is kept
    appdata.ensure(state, None, siteenv.values(mine), siteenv.secret_key(mine))
    assert appdata.read_env(state)["SECRET_KEY"] == KEY  # type: ignore[index]


def test_plan_says_where_the_key_comes_from_never_the_key(tmp_path: Path, make_settings,  # type: ignore[no-untyped-def]
                                                          fake_apptainer, recorder) -> None:
    settings = make_settings(hooks=["recorder"],
                             coldfront={"secret_key_file": str(key_file(tmp_path))})
    plan = Launcher(settings).plan()
    entry = next(e for e in plan.env if e["name"] == "SECRET_KEY")
    assert entry["new"] == "*** (secret_key_file)"
    assert KEY not in str(plan.to_json())


@pytest.mark.parametrize(("text", "said"), [("short\n", "fewer than 32"), ("", "is empty"),
                                            (KEY + "\x0b\n", "coldfront.secret_key_file")])
def test_a_bad_key_file_is_refused(tmp_path: Path, make_settings, text: str,  # type: ignore[no-untyped-def]
                                   said: str) -> None:
    settings = make_settings(coldfront={"secret_key_file": str(key_file(tmp_path, text))})
    with pytest.raises(ConfigError) as err:
        siteenv.secret_key(settings)
    assert said in str(err.value) and KEY not in str(err.value)


def test_a_missing_key_file_is_a_config_error(tmp_path: Path, make_settings) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as err:
        make_settings(coldfront={"secret_key_file": str(tmp_path / "none")})
    assert err.value.setting == "coldfront.secret_key_file"


def test_a_key_file_others_can_read_is_warned_about(tmp_path: Path, make_settings) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(coldfront={"secret_key_file": str(key_file(tmp_path,
                                                                        mode=0o644))})
    warned = [p for p in secrets.problems(settings) if p.check == "coldfront.secret_key_file"]
    assert warned and not warned[0].fatal
