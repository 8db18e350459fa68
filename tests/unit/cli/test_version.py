"""``cf-launch version``: cf-launch, Python, Apptainer, the image's recorded ColdFront and
the plugins; never a failure for a missing Apptainer or invalid settings."""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import Result

from coldfront_launch.cli import cli
from coldfront_launch.state import pin as imagepin
from coldfront_launch.testing.sif import write_minimal_sif
from tests.clirunner import split_runner
from tests.jsonschemas import schema

SCHEMA = schema("version")


@pytest.fixture
def work(empty_work: Path, tmp_path: Path) -> Path:
    """A current folder whose settings name an image; no system settings file."""
    image = write_minimal_sif(tmp_path / "configured.sif")
    (empty_work / "cf-launch.toml").write_text(f'image = "{image}"\n')
    return empty_work


def invoke(tmp_path: Path, *args: str) -> Result:
    return split_runner().invoke(cli, ["--state-root", str(tmp_path / "state"), *args],
                                 catch_exceptions=False)


def version_json(tmp_path: Path, *args: str) -> tuple[dict[str, Any], str]:
    result = invoke(tmp_path, *args, "version", "--json")
    assert result.exit_code == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    jsonschema.validate(data, SCHEMA)
    return data, result.stderr


def test_json_has_every_version(tmp_path: Path, work: Path, fake_apptainer: Path) -> None:
    data, stderr = version_json(tmp_path)
    assert data["cf_launch"] == metadata.version("coldfront-launch")
    assert data["python"] == platform.python_version()
    assert data["apptainer"] == "1.4.5"  # what the fake says to --version
    assert data["image"] == {"path": str(tmp_path / "configured.sif"),
                             "coldfront_version": None}
    by_name = {p["name"]: p for p in data["plugins"]}
    assert by_name["bridge"] == {"name": "bridge", "module": "coldfront_launch.hooks.bridge",
                                 "version": data["cf_launch"]}
    assert "core" not in by_name  # internal: not a --hook name
    assert data["failed_plugins"] == []
    assert stderr == ""


def test_apptainer_missing_is_null_not_a_failure(tmp_path: Path, work: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    data, _stderr = version_json(tmp_path)
    assert data["apptainer"] is None
    assert data["cf_launch"] == metadata.version("coldfront-launch")
    human = invoke(tmp_path, "version")
    assert human.exit_code == 0
    assert "apptainer  not found" in human.stdout


def test_apptainer_that_fails_is_null_with_a_note(tmp_path: Path, work: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = tmp_path / "broken-bin"
    bindir.mkdir()
    broken = bindir / "apptainer"
    broken.write_text("#!/bin/sh\nexit 3\n")
    broken.chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))
    data, stderr = version_json(tmp_path)
    assert data["apptainer"] is None
    assert stderr == f"note: {broken} --version failed (exit 3)\n"


def test_invalid_settings_leave_the_image_unknown(tmp_path: Path, work: Path,
                                                  fake_apptainer: Path) -> None:
    (work / "cf-launch.toml").write_text('name = "no spaces"\n')
    data, stderr = version_json(tmp_path)
    assert data["image"] == {"path": None, "coldfront_version": None}
    assert data["apptainer"] == "1.4.5"
    lines = stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("note: settings not read, so the image is unknown: name: ")
    assert "Traceback" not in stderr


def test_recorded_coldfront_version_from_the_upgrade_pin(tmp_path: Path, work: Path) -> None:
    newer = write_minimal_sif(tmp_path / "newer.sif")
    state = tmp_path / "state" / "coldfront"
    state.mkdir(parents=True)
    imagepin.write(state, imagepin.Pin(imagepin.PinnedImage(str(newer), "1.1.10"),
                                       configured=str(tmp_path / "configured.sif")))
    data, _stderr = version_json(tmp_path)
    assert data["image"] == {"path": str(newer), "coldfront_version": "1.1.10"}


def test_a_pin_the_settings_no_longer_match_is_not_used(tmp_path: Path, work: Path) -> None:
    state = tmp_path / "state" / "coldfront"
    state.mkdir(parents=True)
    imagepin.write(state, imagepin.Pin(imagepin.PinnedImage(str(tmp_path / "x.sif"), "1.1.10"),
                                       configured=str(tmp_path / "another.sif")))
    data, _stderr = version_json(tmp_path)
    assert data["image"] == {"path": str(tmp_path / "configured.sif"),
                             "coldfront_version": None}


def test_human_output_is_aligned(tmp_path: Path, work: Path, fake_apptainer: Path) -> None:
    result = invoke(tmp_path, "version")
    assert result.exit_code == 0, result.stderr
    rows = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert list(rows) == ["cf-launch", "python", "apptainer", "image", "coldfront", "plugins"]
    assert rows["cf-launch"] == metadata.version("coldfront-launch")
    assert rows["apptainer"] == "1.4.5"
    assert rows["coldfront"] == "unknown"
    assert f"bridge {rows['cf-launch']}" in rows["plugins"]
    starts = {len(line) - len(line.split(None, 1)[1]) for line in result.stdout.splitlines()}
    assert starts == {11}


def test_the_schema_refuses_a_missing_key(tmp_path: Path, work: Path,
                                          fake_apptainer: Path) -> None:
    data, _stderr = version_json(tmp_path)
    del data["apptainer"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, SCHEMA)
