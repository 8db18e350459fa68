"""Inputs checked at the door (issue 26, item 3): ``image`` must be a whole SIF in
``plan``, ``doctor`` and ``start``; secret files others can read are warned about; every
file an administrator names is read to a bound, a regular file only; option values are
refused before anything is probed."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from coldfront_launch.cli import cli
from coldfront_launch.coldfront import env as siteenv
from coldfront_launch.coldfront import secrets
from coldfront_launch.coldfront import tls as sitetls
from coldfront_launch.config import files
from coldfront_launch.config.settings import load_settings
from coldfront_launch.errors import ConfigError
from coldfront_launch.lifecycle.launcher import Launcher
from coldfront_launch.testing.sif import sif_bytes
from tests.conftest import calls
from tests.unit.lifecycle.test_launcher import recorder  # noqa: F401 - a fixture

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="secret files owned by root")


def _definition(tmp_path: Path) -> Path:
    definition = tmp_path / "coldfront.def"
    definition.write_text("Bootstrap: docker\nFrom: debian:12\n\n%post\n    true\n")
    return definition


# --- image: a whole SIF ---------------------------------------------------------------

def test_plan_and_doctor_refuse_a_definition_file_as_image(make_settings, recorder,  # noqa: F811
                                                           tmp_path: Path) -> None:
    definition = _definition(tmp_path)
    launcher = Launcher(make_settings(hooks=["recorder"], image=str(definition)))
    for problems in (launcher.plan().problems, launcher.doctor()):
        [image] = [p for p in problems if p.check == "image"]
        assert image.fatal and image.message.startswith(f"{definition} is not a SIF image")
        assert "a definition file?" in image.message and "cf-launch build" in image.hint


def test_start_refuses_a_truncated_image_before_anything(make_settings, fake_apptainer,
                                                        recorder, tmp_path: Path  # noqa: F811
                                                        ) -> None:
    image = tmp_path / "cut.sif"
    image.write_bytes(sif_bytes(b"x" * 4096)[:2048])
    settings = make_settings(hooks=["recorder"], image=str(image))
    with pytest.raises(ConfigError) as refused:
        Launcher(settings).start()
    assert refused.value.exit_code == 2
    assert str(refused.value) == f"image: {image} is truncated: 2048 bytes, its header says " \
                                 "at least 4224"
    assert calls(fake_apptainer) == [] and not settings.state_dir.exists()
    assert "image" in [p.check for p in Launcher(settings).doctor() if p.fatal]


# --- secret files ---------------------------------------------------------------------

def _secret(tmp_path: Path, mode: int, text: str = "s3cret\n") -> Path:
    secret = tmp_path / "smtp-password"
    secret.write_text(text)
    secret.chmod(mode)
    return secret


def test_doctor_and_start_warn_about_a_secret_others_can_read(
        make_settings, fake_apptainer, recorder, tmp_path: Path) -> None:  # noqa: F811
    secret = _secret(tmp_path, 0o644)
    settings = make_settings(hooks=["recorder"],
                             coldfront={"email": {"password_file": str(secret)}})
    [found] = [p for p in Launcher(settings).doctor() if p.check.endswith("password_file")]
    assert not found.fatal
    assert found.message == f"the secret file {secret} has mode 0644, wider than 0640"
    assert found.hint == f"chmod 0600 {secret}; chown root {secret}"
    notes: list[str] = []
    Launcher(settings, report=notes.append).start()
    Launcher(settings).stop()
    assert f"warning: coldfront.email.password_file: {found.message}" in notes
    secret.chmod(0o640)
    assert secrets.problems(settings) == [], "0640, root's: kept as a secret"


def test_a_secret_not_owned_by_root_is_named(make_settings, tmp_path: Path) -> None:
    secret = _secret(tmp_path, 0o600)
    os.chown(secret, 4242, -1)
    settings = make_settings(coldfront={"oidc": {
        "authorization_endpoint": "https://id.example.org/a", "token_endpoint":
        "https://id.example.org/t", "user_endpoint": "https://id.example.org/u",
        "jwks_endpoint": "https://id.example.org/j", "client_id": "cf",
        "client_secret_file": str(secret)}, "plugins": ["auth_oidc"]})
    [found] = secrets.problems(settings)
    assert found.check == "coldfront.oidc.client_secret_file" and not found.fatal
    assert found.message.endswith(f"{secret} is owned by uid 4242, not root")


def test_the_site_key_is_a_secret_too(make_settings, tmp_path: Path) -> None:
    cert, key = tmp_path / "site.crt", tmp_path / "site.key"
    cert.write_text("x")
    key.write_text("x")
    key.chmod(0o604)
    settings = make_settings(coldfront={"tls": {"certificate": str(cert), "key": str(key)}})
    [found] = secrets.problems(settings)
    assert found.check == "coldfront.tls.key" and "mode 0604" in found.message


def test_a_secret_behind_a_link_is_refused_at_start(make_settings, fake_apptainer,
                                                   recorder, tmp_path: Path  # noqa: F811
                                                   ) -> None:
    link = tmp_path / "link"
    link.symlink_to(_secret(tmp_path, 0o600))
    settings = make_settings(hooks=["recorder"],
                             coldfront={"extra_env_files": {"API_TOKEN": str(link)}})
    [found] = secrets.problems(settings)
    assert found.fatal and "is a symbolic link" in found.message
    with pytest.raises(ConfigError, match=r"coldfront.extra_env_files.API_TOKEN: .* is a "
                       "symbolic link") as refused:
        Launcher(settings).start()
    assert refused.value.exit_code == 2 and calls(fake_apptainer) == []


# --- bounded reads --------------------------------------------------------------------

def _in_time(call):  # type: ignore[no-untyped-def]
    """``call()``'s result or exception, failing the test if it takes over 5 seconds."""
    done: list[object] = []

    def run() -> None:
        try:
            done.append(call())
        except BaseException as err:  # noqa: BLE001 - handed to the test
            done.append(err)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(5)
    assert done, "it hung"
    return done[0]


def test_a_password_file_is_a_small_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    big = tmp_path / "big"
    big.write_bytes(b"x" * (64 * 1024 + 1))
    cases = {Path("/dev/zero"): "/dev/zero is a character device, not a regular file",
             fifo: f"{fifo} is a FIFO (named pipe), not a regular file",
             tmp_path: f"{tmp_path} is a directory, not a regular file",
             big: f"{big} is 65537 bytes, more than the 64 KiB allowed"}
    for path, message in cases.items():
        refused = _in_time(lambda p=path: siteenv.read_secret("--password-file", p))
        assert isinstance(refused, ConfigError), path
        assert str(refused) == f"--password-file: {message}"
    big.write_bytes(b"x" * 64 * 1024)
    assert siteenv.read_secret("--password-file", big) == "x" * 64 * 1024


def test_admin_create_reads_no_endless_password_file(tmp_path: Path, fake_apptainer) -> None:
    result = CliRunner().invoke(cli, ["--state-root", str(tmp_path), "admin", "create",
                                      "--username", "a", "--email", "a@example.org",
                                      "--password-file", "/dev/zero"])
    assert result.exit_code == 2
    assert "--password-file: /dev/zero is a character device" in result.output
    assert calls(fake_apptainer) == [], "refused before Apptainer is asked"


def test_the_settings_file_is_read_to_a_bound(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("# padding\n" * 110_000)
    with pytest.raises(ConfigError, match=r"--config: .*c.toml is 1100000 bytes, more than "
                       "the 1 MiB allowed"):
        load_settings(config)
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    refused = _in_time(lambda: load_settings(fifo))
    assert str(refused) == f"--config: {fifo} is a FIFO (named pipe), not a regular file"


def test_a_file_growing_while_read_is_refused(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    grows = tmp_path / "grows"
    grows.write_bytes(b"x" * 10)
    real = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: real(fd, n) or b"y" * n)  # never ends
    with pytest.raises(ConfigError, match="grew past 1 KiB while read"):
        files.read_bounded("setting", grows, 1024)


def test_a_certificate_is_read_to_a_bound(make_settings, tmp_path: Path) -> None:
    cert, key = tmp_path / "site.crt", tmp_path / "site.key"
    cert.write_bytes(b"-" * (1024 * 1024 + 1))
    key.write_text("x")
    key.chmod(0o600)
    settings = make_settings(coldfront={"tls": {"certificate": str(cert), "key": str(key)}})
    assert settings.coldfront.tls is not None
    [problem] = sitetls.problems(settings)
    assert problem.fatal and problem.message == (
        f"coldfront.tls.certificate: {cert} is 1048577 bytes, more than the 1 MiB allowed")
    cert.unlink()
    os.mkfifo(cert)  # after the settings were read: still never a hang
    found = _in_time(lambda: sitetls.check(settings.coldfront.tls))  # type: ignore[arg-type]
    assert found == [f"coldfront.tls.certificate: {cert} is a FIFO (named pipe), not a "
                     "regular file"]


# --- option values before any probe ---------------------------------------------------

@pytest.mark.parametrize(("argv", "text"), [
    (["logs", "-n", "-5"], "--lines: -5 is not in the range 1<=x<=1000000"),
    (["logs", "--lines", "lots"], "--lines: 'lots' is not a valid integer"),
    (["run", "--interval", "nan"], "--interval: nan is not a number of seconds"),
    (["upgrade", "--ready-timeout", "inf"], "--ready-timeout: inf is not in the range"),
    (["prepare", "--format", "yaml"], "--format: 'yaml' is not one of"),
])
def test_option_values_refused_before_apptainer_is_asked(tmp_path: Path, fake_apptainer,
                                                         argv: list[str], text: str) -> None:
    result = CliRunner().invoke(cli, ["--state-root", str(tmp_path / "s"), *argv])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"cf-launch: error: {text}"), lines
    assert lines[1].startswith("hint: see `") and lines[1].endswith(f" {argv[0]} --help`")
    assert calls(fake_apptainer) == [] and not (tmp_path / "s").exists()
