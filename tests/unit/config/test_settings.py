"""Every setting is validated before anything changes; errors name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from coldfront_launch.config.settings import load_settings, settings_from_mapping
from coldfront_launch.errors import ConfigError
from coldfront_launch.lifecycle.launcher import Launcher


@pytest.mark.parametrize(("raw", "setting"), [
    ({"name": "bad name!"}, "name"),
    ({"name": ""}, "name"),
    ({"ready_timeout": 0}, "ready_timeout"),
    ({"readiness_path": "user/login"}, "readiness_path"),
    ({"hooks": []}, "hooks"),
    ({"hooks": "bridge"}, "hooks"),
    ({"colour": "blue"}, "colour"),
    ({"build": {"layers": []}}, "build.layers"),
    ({"build": {"fakeroot": "yes"}}, "build.fakeroot"),
    ({"build": {"ca_bundle": "/nonexistent/ca.crt"}}, "build.ca_bundle"),
    ({"binds": ["/nonexistent/src:/dst"]}, "binds[0]"),
    ({"hook": {"bridge": "x"}}, "hook.bridge"),
])
def test_invalid_settings_name_the_setting(raw: dict, setting: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings_from_mapping(raw)
    assert err.value.setting == setting
    assert str(err.value).startswith(f"{setting}: ")


@pytest.mark.parametrize(("section", "value", "setting"), [
    ("ports", [0], "hook.bridge.ports[0]"),
    ("ports", [65536], "hook.bridge.ports[0]"),
    ("ports", ["80:99999"], "hook.bridge.ports[0]"),
    ("subnet", "10.22.0.0/33", "hook.bridge.subnet"),
    ("subnet", "10.22.0.1/16", "hook.bridge.subnet"),
    ("bridge", "a-very-long-bridge-name", "hook.bridge.bridge"),
    ("ip", "10.99.0.5", "hook.bridge.ip"),
    ("ip", "10.22.0.1", "hook.bridge.ip"),
    ("mtu", 100, "hook.bridge.mtu"),
    ("nonsense", 1, "hook.bridge.nonsense"),
])
def test_bridge_settings_rejected_before_any_change(make_settings, tmp_path: Path,
                                                    section: str, value: object,
                                                    setting: str) -> None:
    settings = make_settings(hook={"bridge": {section: value}})
    with pytest.raises(ConfigError) as err:
        Launcher(settings).plan()
    assert err.value.setting == setting
    assert not (tmp_path / "state").exists(), "validation must not create state"


def test_override_ports_validated(make_settings) -> None:
    settings = make_settings(hooks=["override"],
                             hook={"override": {"netns_path": "/proc/self/ns/net",
                                                "ports": [70000]}})
    with pytest.raises(ConfigError, match="outside 1-65535"):
        Launcher(settings).plan()


def test_unknown_hook_lists_known_hooks(make_settings) -> None:
    with pytest.raises(ConfigError) as err:
        Launcher(make_settings(hooks=["bridgee"])).plan()
    assert "unknown hook 'bridgee'" in str(err.value)
    assert "bridge" in err.value.hint and "override" in err.value.hint


def test_bridge_and_override_together_rejected(make_settings) -> None:
    with pytest.raises(ConfigError, match="both set up the network"):
        Launcher(make_settings(hooks=["bridge", "override"])).plan()


def test_missing_image_named(make_settings, tmp_path: Path, fake_apptainer: Path) -> None:
    settings = make_settings(image=str(tmp_path / "nope.sif"), hooks=["override"],
                             hook={"override": {"netns_path": "/proc/self/ns/net"}})
    with pytest.raises(ConfigError) as err:
        Launcher(settings).start()
    assert err.value.setting == "image"
    assert "does not exist" in str(err.value)


def test_config_files_layer_and_flags_override(tmp_path: Path, monkeypatch) -> None:
    system = tmp_path / "system.toml"
    system.write_text('name = "from-system"\nready_timeout = 11\n[hook.bridge]\nmtu = 1400\n')
    local_dir = tmp_path / "cwd"
    local_dir.mkdir()
    (local_dir / "cf-launch.toml").write_text('name = "from-local"\n')
    explicit = tmp_path / "explicit.toml"
    explicit.write_text('hooks = ["override"]\n')
    monkeypatch.setenv("CF_LAUNCH_SYSTEM_CONFIG", str(system))
    monkeypatch.chdir(local_dir)

    merged = load_settings(explicit)
    assert merged.name == "from-local"          # ./cf-launch.toml over /etc
    assert merged.ready_timeout == 11           # /etc still applies where others are silent
    assert merged.hooks == ("override",)        # --config over both
    assert merged.hook_section("bridge") == {"mtu": 1400}
    assert load_settings(explicit, name="from-flag").name == "from-flag"  # flags win


def test_invalid_toml_names_the_file(tmp_path: Path, monkeypatch) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    monkeypatch.setenv("CF_LAUNCH_SYSTEM_CONFIG", str(tmp_path / "none"))
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings(bad)


def test_missing_explicit_config(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CF_LAUNCH_SYSTEM_CONFIG", str(tmp_path / "none"))
    with pytest.raises(ConfigError) as err:
        load_settings(tmp_path / "missing.toml")
    assert err.value.setting == "--config"


def test_section_of_a_blocked_plugin_is_a_warning(make_settings, monkeypatch,  # type: ignore[no-untyped-def]
                                                  tmp_path: Path) -> None:
    """A broken or blocked plugin must not break every command: its section only warns."""
    from coldfront_launch import plugins

    monkeypatch.setenv("CF_LAUNCH_DISABLE_PLUGINS", "override")
    plugins.reset()
    settings = make_settings(hooks=["bridge"], hook={
        "override": {"ports": [80]},
        "bridge": {"cni_config_dir": str(tmp_path), "external_interface": "lo"}})
    problems = Launcher(settings).sequence(planning=True).validate()
    assert [(p.check, p.fatal) for p in problems] == [("hook.override", False)]
    assert "blocked by CF_LAUNCH_DISABLE_PLUGINS" in problems[0].message
