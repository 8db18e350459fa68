"""`cf-launch upgrade`'s parts that need no Apptainer: the version setting and build
argument, the image pin, the refusals before anything changes, and what pruning removes.
The whole upgrade and its rollback run in tests/integration/test_upgrade_e2e.py."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from coldfront_launch.apptainer import layers as builder
from coldfront_launch.cli import cli
from coldfront_launch.config.backup import BackupSettings
from coldfront_launch.config.settings import BuildSettings, Settings, load_settings
from coldfront_launch.errors import ConfigError, LockedError
from coldfront_launch.operations import upgrade
from coldfront_launch.state import pin as imagepin
from coldfront_launch.state.pin import Pin, PinnedImage
from coldfront_launch.testing.sif import write_minimal_sif
from tests.conftest import calls

VERSIONED = """Bootstrap: localimage
From: {{ parent }}

%arguments
    parent=base.sif
    coldfront_version=

%post
    echo "{{ coldfront_version }}"
"""
BASE = "Bootstrap: debootstrap\nOSVersion: bookworm\n\n%post\n    echo base\n"


@pytest.fixture
def defs(tmp_path: Path) -> Path:
    folder = tmp_path / "defs"
    folder.mkdir()
    (folder / "base.def").write_text(BASE)
    (folder / "coldfront.def").write_text(VERSIONED)
    return folder


def _build(tmp_path: Path, defs: Path, version: str = "") -> BuildSettings:
    return BuildSettings(layers=("base", "coldfront"), definitions_dir=defs,
                         cache_dir=tmp_path / "cache", coldfront_version=version)


# --- the setting and the build argument ------------------------------------------------

@pytest.mark.parametrize("value", ["1.1.10", "1.2.0rc1", "2.0.0.post1"])
def test_coldfront_version_accepts_pip_versions(tmp_path: Path, value: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[build]\ncoldfront_version = "{value}"\n')
    assert load_settings(config).build.coldfront_version == value


@pytest.mark.parametrize("value", ['1.1"; rm -rf /', "latest", "1 .2", 1.1, "", "-1"])
def test_coldfront_version_refuses_anything_else(tmp_path: Path, value: object) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f"[build]\ncoldfront_version = {json.dumps(value)}\n")
    if value == "":
        assert load_settings(config).build.coldfront_version == ""  # "": the newest
        return
    with pytest.raises(ConfigError, match="build.coldfront_version: .* is not a version"):
        load_settings(config)


def test_version_goes_to_the_declaring_layer_and_into_its_key(tmp_path: Path, defs: Path,
                                                               fake_apptainer: Path) -> None:
    unpinned = {layer.name: layer.key for layer in builder.resolve(_build(tmp_path, defs))}
    pinned = {layer.name: layer.key
              for layer in builder.resolve(_build(tmp_path, defs, "1.1.9"))}
    other = {layer.name: layer.key
             for layer in builder.resolve(_build(tmp_path, defs, "1.1.10"))}
    assert pinned["base"] == unpinned["base"] == other["base"], "base declares no version"
    assert len({unpinned["coldfront"], pinned["coldfront"], other["coldfront"]}) == 3
    image = builder.build(_build(tmp_path, defs, "1.1.9"), publish=False)
    assert image.parent == tmp_path / "cache" / "layers" and image.is_file()
    assert not (tmp_path / "cache" / "images").exists(), "publish=False leaves the link alone"
    base_call, top_call = [c for c in calls(fake_apptainer) if "build" in c]
    assert "coldfront_version=1.1.9" in top_call
    assert not any(arg.startswith("coldfront_version") for arg in base_call)


def test_unpinned_key_is_the_key_of_earlier_releases(tmp_path: Path, defs: Path) -> None:
    """No version: the key is computed exactly as before the setting existed (cached images
    stay valid)."""
    layer = builder.resolve(_build(tmp_path, defs))[1]
    parent = builder.resolve(_build(tmp_path, defs))[0].key
    assert layer.key == builder.layer_key(defs / "coldfront.def", parent)


# --- the pin ---------------------------------------------------------------------------

def _pin(configured: Path, current: str = "/c/new.sif") -> Pin:
    return Pin(PinnedImage(current, "1.1.10"), str(configured),
               PinnedImage("/c/old.sif", "1.1.9"), "2026-11-28T00:00:00Z", "/b.tar.gz")


def test_pin_round_trip_and_when_it_applies(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'state_root = "{tmp_path}"\n[build]\ncache_dir = "{tmp_path}/cache"\n')
    settings = load_settings(config)
    assert settings.pinned_image is None
    assert settings.image_path == settings.configured_image == settings.built_image
    (tmp_path / "coldfront").mkdir()
    imagepin.write(tmp_path / "coldfront", _pin(settings.configured_image))
    assert imagepin.read(tmp_path / "coldfront") == _pin(settings.configured_image)
    assert load_settings(config).image_path == Path("/c/new.sif")
    # The settings name another image: they win.
    other = write_minimal_sif(tmp_path / "site.sif")
    assert load_settings(config, image=other).image_path == other
    config.write_text(config.read_text().replace("[build]", f'image = "{other}"\n[build]'))
    assert load_settings(config).image_path == other


def test_build_names_the_instances_an_upgrade_holds_back(tmp_path: Path) -> None:
    link = tmp_path / "cache" / "images" / "coldfront.sif"
    link.parent.mkdir(parents=True)
    built = tmp_path / "cache" / "layers" / "coldfront-0123456789abcdef.sif"
    built.parent.mkdir()
    write_minimal_sif(built)
    link.symlink_to(built)
    for name, current in (("a", "/c/new.sif"), ("b", str(built))):
        (tmp_path / "state" / name).mkdir(parents=True)
        imagepin.write(tmp_path / "state" / name, _pin(link, current))
    (tmp_path / "state" / "c").mkdir()
    imagepin.write(tmp_path / "state" / "c", _pin(tmp_path / "other.sif"))
    assert imagepin.held_back(tmp_path / "state", link) == {"a": "/c/new.sif"}
    assert imagepin.held_back(tmp_path / "nowhere", link) == {}


def test_start_on_a_pinned_image_that_is_gone_points_at_rollback(tmp_path: Path) -> None:
    from coldfront_launch.lifecycle.launcher import Launcher

    config = tmp_path / "c.toml"
    config.write_text(f'state_root = "{tmp_path}"\n[build]\ncache_dir = "{tmp_path}/cache"\n')
    (tmp_path / "coldfront").mkdir()
    imagepin.write(tmp_path / "coldfront", _pin(load_settings(config).configured_image))
    with pytest.raises(ConfigError, match="the image the last upgrade pinned, does not exist") \
            as err:
        Launcher(load_settings(config)).start()
    assert "upgrade --rollback" in err.value.hint
    assert sorted(p.name for p in (tmp_path / "coldfront").iterdir()) == ["image.json"]


def test_unreadable_pin_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "coldfront").mkdir()
    (tmp_path / "coldfront" / "image.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read the upgrade record"):
        imagepin.read(tmp_path / "coldfront")


@pytest.mark.parametrize(("version", "than", "older"), [
    ("1.1.9", "1.1.10", True), ("1.1.10", "1.1.9", False), ("1.1.10", "1.1.10", False),
    ("1.2.0rc1", "1.1.10", False), (None, "1.1.10", False), ("1.1.9", None, False)])
def test_is_older_compares_releases(version: str | None, than: str | None,
                                    older: bool) -> None:
    assert imagepin.is_older(version, than) is older


# --- refusals before anything changes ---------------------------------------------------

def _settings(tmp_path: Path, **kw: object) -> Settings:
    return replace(Settings(state_root=tmp_path,
                            build=BuildSettings(cache_dir=tmp_path / "cache")), **kw)


def test_refuses_before_anything_changes(tmp_path: Path) -> None:
    image = write_minimal_sif(tmp_path / "site.sif")
    with pytest.raises(ConfigError, match="never been started"):
        upgrade.upgrade(_settings(tmp_path), upgrade.Request("1.1.10"))
    with pytest.raises(ConfigError, match="fixed image"):
        upgrade.upgrade(_settings(tmp_path, image=image), upgrade.Request("1.1.10"))
    with pytest.raises(ConfigError, match="is not a file"):
        upgrade.upgrade(_settings(tmp_path), upgrade.Request(image=tmp_path / "nope.sif"))
    state = tmp_path / "coldfront"
    state.mkdir()
    (state / "supervisor.pid").write_text(str(os.getppid()))
    with pytest.raises(LockedError, match="supervises coldfront") as err:
        upgrade.upgrade(_settings(tmp_path), upgrade.Request("1.1.10"))
    assert "systemctl stop cf-launch@coldfront" in err.value.hint
    assert sorted(p.name for p in state.iterdir()) == ["supervisor.pid"], "nothing written"


def test_interrupted_upgrade_is_proven_by_an_answer_or_rolled_back(tmp_path: Path) -> None:
    state = tmp_path / "coldfront"
    state.mkdir()
    (state / "coldfront.env").write_text("SECRET_KEY=x\n")
    trying = replace(_pin(Path("/x")), proven=False)
    imagepin.write(state, trying)
    with pytest.raises(ConfigError, match="was interrupted") as err:
        upgrade.upgrade(_settings(tmp_path), upgrade.Request("1.1.10"))
    assert "--rollback" in err.value.hint and "`cf-launch start`" in err.value.hint
    assert not imagepin.prove(state, Path("/c/other.sif")), "another image proves nothing"
    assert imagepin.read(state) == trying
    assert imagepin.prove(state, Path("/c/new.sif"))
    assert imagepin.read(state) == replace(trying, proven=True)
    assert not imagepin.prove(state, Path("/c/new.sif")), "once"


def test_rollback_needs_an_upgrade_and_its_image(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no upgrade to roll back"):
        upgrade.upgrade(_settings(tmp_path), upgrade.Request(rollback=True))
    state = tmp_path / "coldfront"
    state.mkdir()
    imagepin.write(state, _pin(Path("/x")))  # its previous image /c/old.sif does not exist
    with pytest.raises(ConfigError, match="/c/old.sif, is gone"):
        upgrade.upgrade(_settings(tmp_path), upgrade.Request(rollback=True))
    assert imagepin.read(state) == _pin(Path("/x")), "nothing changed"


def test_cli_refuses_bad_arguments_with_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    both = runner.invoke(cli, ["--state-root", str(tmp_path), "upgrade",
                               "--coldfront-version", "1.1.10", "--image", "/x.sif"])
    assert both.exit_code == 2 and "not both" in both.output
    bad = runner.invoke(cli, ["--state-root", str(tmp_path), "upgrade",
                              "--coldfront-version", "1.1.10; reboot"])
    assert bad.exit_code == 2 and "is not a version" in bad.output
    mixed = runner.invoke(cli, ["--state-root", str(tmp_path), "upgrade", "--rollback",
                                "--check"])
    assert mixed.exit_code == 2 and "takes no" in mixed.output
    assert "Traceback" not in bad.output


def test_external_database_is_announced_without_its_password(tmp_path: Path) -> None:
    url = "psql://coldfront:hunter2-secret@db.example.org:5433/coldfront"
    external = upgrade.external_database_note(
        load_settings(_config(tmp_path, f'[coldfront]\ndatabase_url = "{url}"\n')))
    assert external is not None
    assert "psql at db.example.org:5433" in external and "only the image" in external
    assert "pg_dump" in external and "hunter2" not in external and "coldfront:" not in external
    assert upgrade.external_database_note(load_settings(_config(tmp_path, ""))) is None


def _config(tmp_path: Path, body: str) -> Path:
    config = tmp_path / "c.toml"
    config.write_text(f'state_root = "{tmp_path}"\n' + body)
    return config


def test_newest_on_index_reads_pips_report_and_says_why_not(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from coldfront_launch.apptainer import Probe, imageinfo
    from coldfront_launch.errors import LaunchError

    seen: list[tuple[str, ...]] = []

    def fake(image: Path, argv: list[str], options: tuple[str, ...] = (),
             timeout: float = 30) -> Probe:
        seen.append(options)
        return Probe(0, json.dumps({"install": [{"metadata": {"version": "1.2.0"}}]}), "")
    monkeypatch.setattr(imageinfo.apptainer, "exec_image", fake)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/host-only.pem")
    monkeypatch.setenv("https_proxy", "http://proxy.example.org:3128")
    assert imageinfo.newest_on_index(Path("/i.sif"), Path("/ca.pem")) == "1.2.0"
    assert seen[0] == ("--cleanenv", "--env", "https_proxy=http://proxy.example.org:3128",
                       "--bind", "/ca.pem:/mnt/cf-launch-ca.crt:ro", "--env",
                       "PIP_CERT=/mnt/cf-launch-ca.crt")
    monkeypatch.setattr(imageinfo.apptainer, "exec_image", lambda *a, **k: Probe(
        1, "", "WARNING: retrying\nERROR: Could not find a version that satisfies coldfront"))
    with pytest.raises(LaunchError, match="Could not find a version") as err:
        imageinfo.newest_on_index(Path("/i.sif"))
    assert "--coldfront-version" in err.value.hint


# --- pruning ---------------------------------------------------------------------------

def _layer(cache: Path, name: str) -> Path:
    path = cache / "layers" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    write_minimal_sif(path)
    path.with_suffix(".log").write_text("log")
    return path


def test_prune_removes_only_an_unused_layer_two_upgrades_back(tmp_path: Path,
                                                             monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(upgrade.apptainer, "list_instances", lambda: [])
    settings = _settings(tmp_path)
    cache = settings.build.cache_dir
    old = _layer(cache, "coldfront-0123456789abcdef.sif")
    pin = Pin(PinnedImage(str(_layer(cache, "coldfront-1111111111111111.sif"))),
              "/x", PinnedImage(str(old)))
    said: list[str] = []
    # Another instance still pins it: kept.
    (tmp_path / "other").mkdir()
    imagepin.write(tmp_path / "other", Pin(PinnedImage(str(old)), "/y"))
    assert upgrade.prune(settings, pin, set(), said.append) == []
    (tmp_path / "other" / "image.json").unlink()
    # The published image points at it: kept.
    (cache / "images").mkdir()
    (cache / "images" / "coldfront.sif").symlink_to(old)
    assert upgrade.prune(settings, pin, set(), said.append) == []
    (cache / "images" / "coldfront.sif").unlink()
    # A running instance boots it: kept.
    monkeypatch.setattr(upgrade.apptainer, "list_instances",
                        lambda: [upgrade.apptainer.InstanceInfo("x", 1, str(old))])
    assert upgrade.prune(settings, pin, set(), said.append) == []
    monkeypatch.setattr(upgrade.apptainer, "list_instances", lambda: [])
    # An image outside the build cache (the site's own) is never removed.
    own = tmp_path / "site-0123456789abcdef.sif"
    own.write_text("mine")
    assert upgrade.prune(settings, replace(pin, previous=PinnedImage(str(own))), set(),
                         said.append) == []
    assert own.exists()
    # Nothing needs it any more: removed, with its build log.
    assert upgrade.prune(settings, pin, set(), said.append) == [str(old)]
    assert not old.exists() and not old.with_suffix(".log").exists()
    assert said == [f"removed {old} (the image two upgrades back)"]
    assert upgrade.prune(settings, None, set(), said.append) == []


# --- pre-upgrade backups kept to [backup] keep (issue 26, item 4) ------------------------

def _pre_upgrade(folder: Path, name: str, when: str) -> Path:
    path = folder / f"{name}-{when}-before-upgrade.tar.gz"
    path.write_text(when)
    return path


def _backups(tmp_path: Path) -> tuple[Settings, Path, list[Path], list[Path]]:
    """A backups/ folder: five pre-upgrade backups of coldfront, and what is not one."""
    settings = replace(_settings(tmp_path), backup=BackupSettings(keep=2))
    folder = settings.state_dir / "backups"
    folder.mkdir(parents=True)
    ours = [_pre_upgrade(folder, "coldfront", f"2026010{i}T000000Z") for i in range(1, 6)]
    others = [folder / "coldfront-20260101T000000Z.tar.gz",  # made by `cf-launch backup`
              _pre_upgrade(folder, "coldfront-2", "20250101T000000Z"),  # another instance
              _pre_upgrade(folder, "other", "20250101T000000Z"),
              folder / "coldfront-20250101T000000Z-before-upgrade.tar.gz.part",
              folder / "notes.txt"]
    for path in others[:1] + others[3:]:
        path.write_text("mine")
    (folder / "coldfront-20240101T000000Z-before-upgrade.tar.gz").symlink_to(others[-1])
    (folder / "coldfront-20240102T000000Z-before-upgrade.tar.gz").mkdir()
    others += [folder / "coldfront-20240101T000000Z-before-upgrade.tar.gz",
               folder / "coldfront-20240102T000000Z-before-upgrade.tar.gz"]
    return settings, folder, ours, others


def test_prune_backups_keeps_the_newest_and_touches_nothing_else(tmp_path: Path) -> None:
    settings, _folder, ours, others = _backups(tmp_path)
    said: list[str] = []
    removed = upgrade.prune_backups(settings, {str(ours[-1])}, said.append)
    assert removed == [str(p) for p in reversed(ours[:3])]
    assert [p.exists() for p in ours] == [False, False, False, True, True]
    assert all(os.path.lexists(p) for p in others), "only cf-launch's pre-upgrade backups"
    assert said and "removed 3 older pre-upgrade backups ([backup] keep = 2)" in said[0]
    assert upgrade.prune_backups(settings, set(), said.append) == [], "idempotent"


def test_prune_backups_keeps_the_one_a_rollback_needs(tmp_path: Path) -> None:
    settings, _folder, ours, _others = _backups(tmp_path)
    assert upgrade.prune_backups(settings, {str(ours[-1]), str(ours[0])}, lambda _m: None) \
        == [str(ours[2]), str(ours[1])]
    assert ours[0].exists(), "the backup the previous upgrade's pin names"


def test_upgrade_prunes_right_after_its_backup(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Through upgrade() itself (Apptainer, the backup and the boot replaced): the new
    backup is one of the `keep`; the pin's backup and everything else stay."""
    settings, folder, ours, others = _backups(tmp_path)
    (settings.state_dir / "coldfront.env").write_text("SECRET_KEY=x\n")
    current, new = tmp_path / "current.sif", tmp_path / "new.sif"
    current.write_text("")
    new.write_text("")
    imagepin.write(settings.state_dir, Pin(PinnedImage(str(current), "1.1.9"), "/c",
                                           None, "t", str(ours[0]), proven=True))
    monkeypatch.setattr(upgrade.apptainer, "find", lambda _name: None)
    monkeypatch.setattr(upgrade.apptainer, "list_instances", lambda: [])
    monkeypatch.setattr(upgrade.imageinfo, "coldfront_version",
                        lambda image: "1.1.10" if Path(image) == new else "1.1.9")
    order: list[str] = []

    def fake_backup(_settings: Settings, path: Path, report: object = None) -> dict[str, str]:
        path.write_text("new")
        order.append("backup")
        return {"path": str(path)}

    class FakeLauncher:
        def __init__(self, *_args: object, **_kw: object) -> None:
            pass

        def start(self, wait: bool = True) -> object:
            order.append(f"start with {sum(p.exists() for p in ours)} older")
            return type("Started", (), {"readiness": None})()

        def stop(self) -> None:
            order.append("stop")

    monkeypatch.setattr(upgrade.backup, "backup", fake_backup)
    monkeypatch.setattr(upgrade, "Launcher", FakeLauncher)
    result = upgrade.upgrade(settings, upgrade.Request(image=new))
    assert result["upgraded"] is True
    saved = Path(result["backup"])
    assert result["pruned_backups"] == [str(p) for p in reversed(ours[1:4])]
    assert order == ["backup", "start with 2 older", "stop"], "pruned before it boots"
    assert saved.exists() and ours[4].exists() and ours[0].exists()
    assert all(os.path.lexists(p) for p in others)


@pytest.mark.parametrize("value", [0, 1001, -1, "3", 2.5, True])
def test_backup_keep_is_checked(value: object) -> None:
    from coldfront_launch.config.settings import settings_from_mapping

    with pytest.raises(ConfigError, match=r"^backup\.keep: .* is not a whole number from 1 "
                                          r"to 1000"):
        settings_from_mapping({"backup": {"keep": value}})
    with pytest.raises(ConfigError, match=r"^backup\.kept: unknown setting"):
        settings_from_mapping({"backup": {"kept": 3}})
    assert settings_from_mapping({}).backup.keep == 3
    assert settings_from_mapping({"backup": {"keep": 1000}}).backup.keep == 1000
    assert settings_from_mapping({"backup": {"keep": 5}}).with_overrides(name="x") \
        .backup.keep == 5
