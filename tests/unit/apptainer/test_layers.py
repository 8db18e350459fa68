"""Layered builds: content-addressed cache, rebuild only what changed, through spython."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coldfront_launch.apptainer import layers as builder
from coldfront_launch.config.settings import BuildSettings
from coldfront_launch.errors import BuildError, ConfigError
from coldfront_launch.testing import sif
from tests.conftest import calls

BASE = """Bootstrap: debootstrap
OSVersion: bookworm

%files
    base-files/motd /etc/motd

%post
    echo base
"""
TOP = """Bootstrap: localimage
From: {{ parent }}

%files
    top-files /opt/top

%post
    echo top
"""


@pytest.fixture
def defs(tmp_path: Path) -> Path:
    folder = tmp_path / "defs"
    (folder / "base-files").mkdir(parents=True)
    (folder / "base-files" / "motd").write_text("hello\n")
    (folder / "top-files" / "sub").mkdir(parents=True)
    (folder / "top-files" / "sub" / "app.conf").write_text("a=1\n")
    (folder / "base.def").write_text(BASE)
    (folder / "top.def").write_text(TOP)
    return folder


def _settings(tmp_path: Path, defs: Path, **kw) -> BuildSettings:  # type: ignore[no-untyped-def]
    return BuildSettings(layers=("base", "top"), definitions_dir=defs,
                         cache_dir=tmp_path / "cache", **kw)


def _builds(log: Path) -> list[list[str]]:
    return [c for c in calls(log) if "build" in c]


def test_build_then_cached_rebuild_calls_no_apptainer(tmp_path, defs, fake_apptainer) -> None:
    settings = _settings(tmp_path, defs)
    events: list[str] = []
    image = builder.build(settings, progress=lambda e: events.append(f"{e.kind}:{e.layer.name}"))
    assert [e for e in events if not e.startswith("line")] == \
        ["start:base", "done:base", "start:top", "done:top"]
    assert any(e == "line:top" for e in events), "output is streamed line by line"
    assert image == tmp_path / "cache" / "images" / "top.sif"
    assert image.resolve().name.startswith("top-")
    first = _builds(fake_apptainer)
    assert len(first) == 2
    top_call = first[1]
    assert "--build-arg" in top_call
    parent = top_call[top_call.index("--build-arg") + 1]
    assert parent.startswith("parent=") and parent.endswith(".sif") and "/layers/base-" in parent

    fake_apptainer.write_text("")
    events.clear()
    assert builder.build(settings, progress=lambda e: events.append(e.kind)) == image
    assert events == ["cached", "cached"]
    assert calls(fake_apptainer) == [], "nothing changed: apptainer must not run at all"


def test_changed_copied_file_rebuilds_that_layer_and_children(tmp_path, defs,
                                                              fake_apptainer) -> None:
    settings = _settings(tmp_path, defs)
    builder.build(settings)
    fake_apptainer.write_text("")
    (defs / "top-files" / "sub" / "app.conf").write_text("a=2\n")
    builder.build(settings)
    assert [c[-1].rsplit("/", 1)[-1] for c in _builds(fake_apptainer)] == ["top.def"]

    fake_apptainer.write_text("")
    (defs / "base-files" / "motd").write_text("changed\n")
    builder.build(settings)
    assert [c[-1].rsplit("/", 1)[-1] for c in _builds(fake_apptainer)] == \
        ["base.def", "top.def"]


def test_changed_definition_and_force(tmp_path, defs, fake_apptainer) -> None:
    settings = _settings(tmp_path, defs)
    builder.build(settings)
    fake_apptainer.write_text("")
    (defs / "top.def").write_text(TOP + "\n%labels\n    x y\n")
    builder.build(settings)
    assert len(_builds(fake_apptainer)) == 1
    fake_apptainer.write_text("")
    builder.build(settings, force=True)
    assert len(_builds(fake_apptainer)) == 2


def test_build_options(tmp_path, defs, fake_apptainer) -> None:
    ca = tmp_path / "corp-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = _settings(tmp_path, defs, fakeroot=True, binds=(f"{tmp_path}:/data",),
                         ca_bundle=ca)
    builder.build(settings)
    call = _builds(fake_apptainer)[0]
    assert "--fakeroot" in call
    assert f"{tmp_path}:/data" in call
    assert f"{tmp_path / 'cache' / 'ca'}:/mnt" in call
    assert (tmp_path / "cache" / "ca" / "cf-launch-ca.crt").read_text() == ca.read_text()


def test_failed_build_keeps_no_partial_image(tmp_path, defs, fake_apptainer,
                                             monkeypatch) -> None:
    monkeypatch.setenv("FAKE_APPTAINER_FAIL_BUILD", "while running %post: exit status 100")
    with pytest.raises(BuildError) as err:
        builder.build(_settings(tmp_path, defs))
    assert "exit status 100" in str(err.value)
    assert "full build log" in err.value.hint
    assert not list((tmp_path / "cache" / "layers").glob("*.sif"))
    assert not list((tmp_path / "cache" / "layers").glob(".*partial"))


def test_missing_files_source_and_unknown_layer(tmp_path, defs) -> None:
    (defs / "base-files" / "motd").unlink()
    with pytest.raises(ConfigError, match="does not exist next to the definition"):
        builder.resolve(_settings(tmp_path, defs))
    with pytest.raises(ConfigError, match="no definition .*/nope.def") as err:
        builder.resolve(BuildSettings(layers=("nope",), definitions_dir=defs))
    assert err.value.hint == "known layers: base, top"
    with pytest.raises(ConfigError, match="parent layer"):
        builder.resolve(BuildSettings(layers=("top",), definitions_dir=defs))


def test_shipped_definitions_resolve() -> None:
    """The packaged definitions parse, and their %files all exist."""
    for stack in (("debian-base", "coldfront"), ("al2023-base", "coldfront")):
        layers = builder.resolve(BuildSettings(layers=stack))
        assert [layer.name for layer in layers] == list(stack)
        assert layers[0].key != layers[1].key


def test_fake_image_records_definition(tmp_path, defs, fake_apptainer) -> None:
    image = builder.build(_settings(tmp_path, defs))
    assert json.loads(sif.payload(image))["definition"].endswith("top.def")


def test_site_layer_by_path(tmp_path, defs, fake_apptainer) -> None:
    site = tmp_path / "site" / "extras.def"
    site.parent.mkdir()
    site.write_text("Bootstrap: localimage\nFrom: {{ parent }}\n\n%post\n    true\n")
    settings = BuildSettings(layers=("base", "top", str(site)), definitions_dir=defs,
                             cache_dir=tmp_path / "cache")
    image = builder.build(settings)
    assert image.name == "extras.sif"
    assert [c[-1] for c in _builds(fake_apptainer)][-1] == str(site)


def test_build_runs_in_the_definitions_folder_but_callbacks_do_not(
        tmp_path, defs, fake_apptainer, monkeypatch) -> None:
    """spython has no cwd parameter: cf-launch changes folder only to start the build."""
    from coldfront_launch import apptainer

    here = tmp_path / "caller"
    here.mkdir()
    monkeypatch.chdir(here)
    seen: list[str] = []
    apptainer.build(defs / "base.def", tmp_path / "out.sif", [], defs,
                    lambda line: seen.append(f"{Path.cwd()}|{line}"))
    assert seen, "lines were streamed"
    assert {entry.split("|", 1)[0] for entry in seen} == {str(here)}
    assert any("Starting build" in entry for entry in seen)
    built = json.loads(sif.payload(tmp_path / "out.sif"))
    assert built["cwd"] == str(defs), "the build process itself ran in the definitions folder"
    assert Path.cwd() == here


def test_build_without_apptainer_refuses_before_anything(tmp_path, defs, monkeypatch) -> None:
    from coldfront_launch.errors import ApptainerNotFound

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    settings = _settings(tmp_path, defs)
    events: list[str] = []
    with pytest.raises(ApptainerNotFound):
        builder.build(settings, progress=lambda e: events.append(e.kind))
    assert events == [], "nothing printed"
    assert not settings.cache_dir.exists(), "no lock, no log, no folder"
