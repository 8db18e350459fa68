"""``cf-launch config show``: the merged settings, each leaf with the file, flag or default
it came from; secrets masked; invalid settings a one-line error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import Result

from coldfront_launch.cli import cli
from coldfront_launch.config import sources
from coldfront_launch.state import pin as imagepin
from coldfront_launch.testing.sif import write_minimal_sif
from tests.clirunner import split_runner
from tests.jsonschemas import schema

SCHEMA = schema("config-show")


@pytest.fixture
def work(empty_work: Path) -> Path:
    return empty_work


def invoke(args: list[str]) -> Result:
    return split_runner().invoke(cli, args, catch_exceptions=False)


def shown(tmp_path: Path, *options: str, after: tuple[str, ...] = ()) -> dict[str, Any]:
    """``cf-launch --state-root S OPTIONS config show --json AFTER``, checked against the
    schema."""
    result = invoke(["--state-root", str(tmp_path / "state"), *options, "config", "show",
                     "--json", *after])
    assert result.exit_code == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    jsonschema.validate(data, SCHEMA)
    return data


def test_defaults_are_marked_default(tmp_path: Path, work: Path) -> None:
    data = shown(tmp_path)
    settings = data["settings"]
    assert data["files"] == []
    assert settings["name"] == {"value": "coldfront", "source": "default"}
    assert settings["hooks"] == {"value": ["bridge"], "source": "default"}
    assert settings["ready_timeout"] == {"value": 300.0, "source": "default"}
    assert settings["security.uid"] == {"value": 8801, "source": "default"}
    assert settings["state_root"] == {"value": str(tmp_path / "state"),
                                      "source": "--state-root"}
    assert data["pinned_image"] is None


def test_local_file_is_attributed_to_it(tmp_path: Path, work: Path) -> None:
    (work / "cf-launch.toml").write_text('name = "web"\nready_timeout = 12\n'
                                         '[hook.bridge]\nports = [80, 443]\n')
    data = shown(tmp_path)
    settings = data["settings"]
    assert data["files"] == ["./cf-launch.toml"]
    assert settings["name"] == {"value": "web", "source": "./cf-launch.toml"}
    assert settings["ready_timeout"] == {"value": 12, "source": "./cf-launch.toml"}
    assert settings["hook.bridge.ports"] == {"value": [80, 443], "source": "./cf-launch.toml"}
    assert settings["stop_timeout"]["source"] == "default"


def test_config_flag_wins_over_the_local_and_system_files(
        tmp_path: Path, work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system = tmp_path / "etc.toml"
    system.write_text('name = "sys"\nstop_timeout = 5\nready_timeout = 7\n')
    monkeypatch.setenv("CF_LAUNCH_SYSTEM_CONFIG", str(system))
    (work / "cf-launch.toml").write_text('name = "local"\nready_timeout = 12\n')
    given = tmp_path / "given.toml"
    given.write_text('name = "given"\n')
    data = shown(tmp_path, "--config", str(given))
    settings = data["settings"]
    assert data["files"] == [str(system), "./cf-launch.toml", str(given)]
    assert settings["name"] == {"value": "given", "source": str(given)}
    assert settings["ready_timeout"] == {"value": 12, "source": "./cf-launch.toml"}
    assert settings["stop_timeout"] == {"value": 5, "source": str(system)}


@pytest.mark.parametrize("where", ["global", "after the verb"])
def test_name_flag_is_attributed_to_it(tmp_path: Path, work: Path, where: str) -> None:
    (work / "cf-launch.toml").write_text('name = "local"\n')
    flag = ("--name", "flagged")
    data = shown(tmp_path, after=flag) if where == "after the verb" else \
        shown(tmp_path, *flag, "--config", str(work / "cf-launch.toml"))
    assert data["settings"]["name"] == {"value": "flagged", "source": "--name"}


def test_secrets_are_masked_and_paths_are_not(tmp_path: Path, work: Path) -> None:
    secret = tmp_path / "smtp-password"
    secret.write_text("s3cret-in-file\n")
    (work / "cf-launch.toml").write_text(
        '[coldfront]\ndatabase_url = "psql://cf:hunter2@db.example.org/cf"\n'
        f'[coldfront.email]\nuser = "mailer"\npassword_file = "{secret}"\n'
        '[coldfront.extra_env]\nLDAP_BIND_PASSWORD = "hunter3"\nPROJECT_CODE = "CF"\n'
        '[hook.bridge]\napi_token = "hunter4"\nports = [8080]\n')
    result = invoke(["--state-root", str(tmp_path / "state"), "config", "show", "--json"])
    assert result.exit_code == 0, result.stderr
    for word in ("hunter2", "hunter3", "hunter4"):
        assert word not in result.stdout
    settings = json.loads(result.stdout)["settings"]
    assert settings["coldfront.database_url"]["value"] == "********"
    assert settings["coldfront.extra_env.LDAP_BIND_PASSWORD"]["value"] == "********"
    assert settings["hook.bridge.api_token"] == {"value": "********",
                                                 "source": "./cf-launch.toml"}
    assert settings["coldfront.extra_env.PROJECT_CODE"]["value"] == "CF"
    assert settings["coldfront.email.password_file"]["value"] == str(secret)
    assert settings["coldfront.email.user"]["value"] == "mailer"
    human = invoke(["--state-root", str(tmp_path / "state"), "config", "show"])
    assert "hunter" not in human.stdout
    assert 'coldfront.database_url = "********"' in human.stdout


def test_what_plan_masks_config_show_masks_too(tmp_path: Path, work: Path) -> None:
    """Secret words anywhere in the name (as ``plan`` masks env values), camelCase, and
    tables inside lists (a plugin's list of servers)."""
    (work / "cf-launch.toml").write_text(
        '[coldfront.extra_env]\nLDAP_BINDPASSWORD = "leak1"\nSLURM_PRIVATE = "leak2"\n'
        'LDAP_BIND_PW = "leak3"\n'
        '[hook.bridge]\nbindPassword = "leak4"\nservers = [{host = "a", password = "leak5"}]\n')
    result = invoke(["--state-root", str(tmp_path / "state"), "config", "show", "--json"])
    assert result.exit_code == 0, result.stderr
    assert "leak" not in result.stdout
    servers = json.loads(result.stdout)["settings"]["hook.bridge.servers"]["value"]
    assert servers == [{"host": "a", "password": "********"}]


@pytest.mark.parametrize(("path", "secret"), [
    (("coldfront", "database_url"), True),
    (("coldfront", "extra_env", "SECRET_KEY_BASE"), True),
    (("hook", "x", "client-secret"), True),
    (("hook", "x", "apikey"), True),
    (("coldfront", "oidc", "client_secret_file"), False),
    (("coldfront", "extra_env_files", "LDAP_PASSWORD"), False),
    (("coldfront", "tls", "key"), False),
    (("coldfront", "oidc", "client_id"), False),
    (("hook", "x", "monkey"), False),
])
def test_which_keys_are_secrets(path: tuple[str, ...], secret: bool) -> None:
    assert sources.is_secret(path) is secret


def test_human_output_one_line_per_key_with_its_source(tmp_path: Path, work: Path) -> None:
    (work / "cf-launch.toml").write_text('[hook.bridge]\nports = [80, 443]\n')
    result = invoke(["--state-root", str(tmp_path / "state"), "config", "show"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "# files read (lowest precedence first): ./cf-launch.toml"
    by_key = {line.split(" = ", 1)[0]: line for line in lines[1:]}
    assert by_key["name"].startswith('name = "coldfront" ')
    assert by_key["name"].endswith("  # default")
    assert by_key["hook.bridge.ports"].startswith("hook.bridge.ports = [80, 443] ")
    assert by_key["hook.bridge.ports"].endswith("  # ./cf-launch.toml")
    assert by_key["state_root"].endswith("  # --state-root")
    assert by_key["writable_tmpfs"].startswith("writable_tmpfs = true ")
    assert by_key["image"].startswith("image = (not set) ")
    assert by_key["name"].index("#") == by_key["writable_tmpfs"].index("#")  # aligned


def test_the_upgrade_pin_is_shown(tmp_path: Path, work: Path) -> None:
    image = write_minimal_sif(tmp_path / "configured.sif")
    newer = write_minimal_sif(tmp_path / "newer.sif")
    state = tmp_path / "state" / "coldfront"
    state.mkdir(parents=True)
    imagepin.write(state, imagepin.Pin(imagepin.PinnedImage(str(newer), "1.1.10"),
                                       configured=str(image)))
    (work / "cf-launch.toml").write_text(f'image = "{image}"\n')
    data = shown(tmp_path)
    assert data["settings"]["image"] == {"value": str(image), "source": "./cf-launch.toml"}
    assert data["pinned_image"] == {"path": str(newer), "source": str(state / "image.json")}


@pytest.mark.parametrize(("text", "message"), [
    ('name = "no spaces"\n', "cf-launch: error: name: 'no spaces' is not a valid instance"),
    ("ready_timeout = \n", "cf-launch: error: cf-launch.toml: invalid TOML"),
    ("colour = 1\n", "cf-launch: error: colour"),
    ("[coldfront]\ndebug = true\n", "cf-launch: error: coldfront.debug:"),
])
def test_invalid_settings_exit_2_in_one_line(tmp_path: Path, work: Path, text: str,
                                             message: str) -> None:
    (work / "cf-launch.toml").write_text(text)
    result = invoke(["--state-root", str(tmp_path / "state"), "config", "show"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(message), result.stderr
    assert len(lines) == 2 and lines[1].startswith("hint: ")


def test_missing_config_file_exit_2(tmp_path: Path, work: Path) -> None:
    result = invoke(["--config", str(tmp_path / "absent.toml"), "config", "show"])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"cf-launch: error: --config: {tmp_path}/absent.toml "
                                    "does not exist")


def test_the_schema_refuses_what_the_command_must_not_print(tmp_path: Path,
                                                             work: Path) -> None:
    data = shown(tmp_path)
    del data["settings"]["name"]["source"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, SCHEMA)
