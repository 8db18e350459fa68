"""[coldfront]: validation, the env file rendered on every start, masking, site TLS checks."""

from __future__ import annotations

import datetime
import os
import subprocess
from pathlib import Path

import pytest

from coldfront_launch.coldfront import appdata
from coldfront_launch.coldfront import env as siteenv
from coldfront_launch.coldfront import tls as sitetls
from coldfront_launch.config.coldfront import PLUGINS, coldfront_from_mapping
from coldfront_launch.config.settings import settings_from_mapping
from coldfront_launch.errors import ConfigError
from coldfront_launch.lifecycle.launcher import Launcher

SECRET = "s3cr3t-Pa$$w0rd\"`\\-never-shown"


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    return path


@pytest.mark.parametrize(("raw", "setting", "words"), [
    ({"colour": "x"}, "coldfront.colour", "known settings here"),
    ({"debug": True}, "coldfront.debug", "debug_force"),
    ({"allowed_hosts": ["*"]}, "coldfront.allowed_hosts[0]", "'*'"),
    ({"allowed_hosts": ["a b"]}, "coldfront.allowed_hosts[0]", "not a host name"),
    ({"allowed_hosts": "x.org"}, "coldfront.allowed_hosts", "list of strings"),
    ({"plugins": ["slurmm"]}, "coldfront.plugins[0]", "not a ColdFront plugin"),
    ({"plugins": ["freeipa"]}, "coldfront.plugins[0]", "does not ship"),
    ({"plugins": ["auth_oidc"]}, "coldfront.plugins", "[coldfront.oidc]"),
    ({"email": {"port": 0}}, "coldfront.email.port", "outside"),
    ({"email": {"tls": True}}, "coldfront.email.tls", "unknown setting"),
    ({"email": {"password_file": "/nonexistent/pw"}}, "coldfront.email.password_file",
     "does not exist"),
    ({"time_zone": "Mars/../x"}, "coldfront.time_zone", "time zone"),
    ({"center_name": "two\nlines"}, "coldfront.center_name", "line break"),
    ({"extra_env": {"SECRET_KEY": "x"}}, "coldfront.extra_env.SECRET_KEY", "set by cf-launch"),
    ({"extra_env": {"PLUGIN_SLURM": "True"}}, "coldfront.extra_env.PLUGIN_SLURM", "plugins"),
    ({"extra_env": {"lower": "x"}}, "coldfront.extra_env.lower", "variable name"),
    ({"extra_env": {"A": "$B"}}, "coldfront.extra_env.A", "'$'"),
    ({"database_url": "mysql://u:hunter2@db/x"}, "coldfront.database_url", "scheme"),
    ({"tls": {"certificate": "/etc/hostname"}}, "coldfront.tls", "missing key"),
])
def test_invalid_coldfront_settings_are_named(raw: dict, setting: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings_from_mapping({"coldfront": raw})
    assert err.value.setting == setting
    assert words in str(err.value) + err.value.hint
    assert "hunter2" not in str(err.value) + err.value.hint, "a URL's password is never shown"


def test_defaults_round_trip_and_debug_can_be_forced(tmp_path: Path) -> None:
    settings = settings_from_mapping({})
    assert settings.coldfront == coldfront_from_mapping({})
    assert settings.with_overrides(name="other").coldfront == settings.coldfront
    forced = coldfront_from_mapping({"debug": True, "debug_force": True})
    assert forced.debug


def test_plugins_are_the_ones_coldfront_reads() -> None:
    """The names map to ColdFront 1.1's plugin_configs keys (coldfront/config/settings.py)."""
    assert {f"PLUGIN_{p.upper()}" for p in PLUGINS} == {
        "PLUGIN_SLURM", "PLUGIN_IQUOTA", "PLUGIN_FREEIPA", "PLUGIN_SYSMON", "PLUGIN_XDMOD",
        "PLUGIN_AUTH_OIDC", "PLUGIN_AUTH_LDAP", "PLUGIN_LDAP_USER_SEARCH", "PLUGIN_API",
        "PLUGIN_AUTO_COMPUTE_ALLOCATION", "PLUGIN_PROJECT_OPENLDAP"}


def full(secret_file: Path) -> dict:
    return {"coldfront": {
        "center_name": "Example Research Computing", "allowed_hosts": ["cf.example.org"],
        "time_zone": "Europe/Berlin",
        "email": {"enabled": True, "host": "smtp.example.org", "port": 587,
                  "sender": "cf@example.org", "user": "cf", "password_file": str(secret_file),
                  "use_tls": True},
        "plugins": ["slurm", "auth_oidc"],
        "oidc": {"authorization_endpoint": "https://idp.example.org/auth",
                 "token_endpoint": "https://idp.example.org/token",
                 "user_endpoint": "https://idp.example.org/user",
                 "jwks_endpoint": "https://idp.example.org/jwks", "client_id": "coldfront",
                 "client_secret_file": str(secret_file)},
        "database_url_file": str(secret_file.parent / "db-url"),
        "extra_env": {"PROJECT_CODE": "CF", "LDAP_PASSWORD_HINT": "x"},
        "extra_env_files": {"SLURM_TOKEN": str(secret_file)},
    }}


def test_env_values_from_every_key(secret_file: Path) -> None:
    (secret_file.parent / "db-url").write_text("psql://cf:hunter2@db.example.org:5432/cf\n")
    settings = settings_from_mapping(full(secret_file))
    env = siteenv.values(settings)
    assert env["CENTER_NAME"] == "Example Research Computing"
    assert env["ALLOWED_HOSTS"] == "cf.example.org" and env["TIME_ZONE"] == "Europe/Berlin"
    assert env["DEBUG"] == "False" and env["PLUGIN_SLURM"] == env["PLUGIN_AUTH_OIDC"] == "True"
    assert env["EMAIL_HOST_PASSWORD"] == env["OIDC_RP_CLIENT_SECRET"] == SECRET
    assert env["EMAIL_PORT"] == "587" and env["EMAIL_USE_TLS"] == "True"
    assert env["DB_URL"] == "psql://cf:hunter2@db.example.org:5432/cf"
    assert env["OIDC_OP_TOKEN_ENDPOINT"] == "https://idp.example.org/token"
    assert env["SLURM_TOKEN"] == SECRET and env["PROJECT_CODE"] == "CF"
    shown = {e["name"]: e["new"] for e in siteenv.diff(None, env, settings)}
    assert SECRET not in str(shown) and "hunter2" not in str(shown)
    assert shown["LDAP_PASSWORD_HINT"] == "***", "a name that says secret is masked"
    assert shown["DB_URL"] == "***", "a URL from a file is masked whole"
    assert siteenv.probe_host(settings) == "cf.example.org"


def test_inline_database_url_masks_its_password() -> None:
    settings = settings_from_mapping(
        {"coldfront": {"database_url": "psql://cf:hunter2@db.example.org/cf"}})
    shown = {e["name"]: e["new"] for e in siteenv.diff(None, siteenv.values(settings), settings)}
    assert shown["DB_URL"] == "psql://cf:***@db.example.org/cf"


def test_default_allowed_hosts_are_names_and_addresses_never_star() -> None:
    env = siteenv.values(settings_from_mapping({}))
    hosts = env["ALLOWED_HOSTS"].split(",")
    assert "*" not in hosts and "localhost" in hosts and "127.0.0.1" in hosts
    assert siteenv.probe_host(settings_from_mapping({})) == "localhost"


def test_secret_file_problems_never_show_the_secret(tmp_path: Path) -> None:
    bad = tmp_path / "two-lines"
    bad.write_text(SECRET + "\nsecond line\n")
    settings = settings_from_mapping({"coldfront": {"email": {"password_file": str(bad)}}})
    with pytest.raises(ConfigError) as err:
        siteenv.values(settings)
    assert "line break" in str(err.value) and SECRET not in str(err.value) + err.value.hint
    empty = tmp_path / "empty"
    empty.write_text("")
    settings = settings_from_mapping({"coldfront": {"email": {"password_file": str(empty)}}})
    with pytest.raises(ConfigError, match="is empty"):
        siteenv.values(settings)
    url = tmp_path / "url"
    url.write_text("mysql://u:hunter2@db/x\n")
    settings = settings_from_mapping({"coldfront": {"database_url_file": str(url)}})
    with pytest.raises(ConfigError) as err:
        siteenv.values(settings)
    assert "scheme" in str(err.value) and "hunter2" not in str(err.value) + err.value.hint


def test_env_file_rendered_every_time_keeping_the_secret_key(tmp_path: Path) -> None:
    state = tmp_path / "state"
    appdata.ensure(state, env={"CENTER_NAME": "A", "ODD": SECRET})
    first = appdata.read_env(state)
    assert first is not None and first["CENTER_NAME"] == "A" and first["ODD"] == SECRET
    key = first["SECRET_KEY"]
    appdata.ensure(state, env={"CENTER_NAME": "B"})
    second = appdata.read_env(state)
    assert second == {"SECRET_KEY": key, "CENTER_NAME": "B"}
    info = (state / appdata.ENV_FILE).stat()
    assert (info.st_uid, info.st_mode & 0o777) == (os.geteuid(), 0o600)
    assert [p.name for p in state.iterdir() if p.name.startswith(".")] == [], "no temp left"


def test_env_file_from_cf_launch_0_1_keeps_its_key(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / appdata.ENV_FILE).write_text("# Written once by cf-launch\nSECRET_KEY=abc-123_x\n"
                                          "DB_URL=sqlite:////srv/coldfront/data/coldfront.db\n"
                                          "ALLOWED_HOSTS=*\n")
    appdata.ensure(state, env={"ALLOWED_HOSTS": "localhost"})
    assert appdata.read_env(state) == {"SECRET_KEY": "abc-123_x", "ALLOWED_HOSTS": "localhost"}


@pytest.mark.skipif(os.geteuid() != 0, reason="systemd-run reads the file as PID 1 would")
def test_systemd_reads_the_env_file_back_exactly(tmp_path: Path) -> None:
    """The quoting is systemd's EnvironmentFile= syntax ($, quotes, backslashes kept)."""
    import shutil
    if shutil.which("systemd-run") is None or not Path("/run/systemd/system").exists():
        pytest.skip("no systemd on this machine")
    state = tmp_path / "state"
    appdata.ensure(state, env={"ODD": SECRET})
    result = subprocess.run(["systemd-run", "--quiet", "--wait", "--pipe", "-p",
                             f"EnvironmentFile={state / appdata.ENV_FILE}", "printenv", "ODD"],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"systemd-run unusable here: {result.stderr.strip()}")
    assert result.stdout == SECRET + "\n"


def test_plan_shows_the_env_diff_masked(make_settings, secret_file: Path) -> None:
    settings = make_settings(coldfront={"center_name": "Example Research Computing",
                                        "email": {"password_file": str(secret_file)}})
    plan = Launcher(settings).plan()
    changes = {c["name"]: c for c in plan.env}
    assert changes["CENTER_NAME"] == {"name": "CENTER_NAME", "change": "added", "old": None,
                                      "new": "Example Research Computing"}
    assert changes["EMAIL_HOST_PASSWORD"]["new"] == "***"
    assert changes["SECRET_KEY"]["new"] == "*** (generated)"
    assert SECRET not in str(plan.to_json())
    appdata.ensure(settings.state_dir, env=siteenv.values(settings))
    changed = make_settings(coldfront={"center_name": "Other",
                                       "email": {"password_file": str(secret_file)}})
    again = Launcher(changed).plan()
    assert [(c["name"], c["old"], c["new"]) for c in again.env] == [
        ("CENTER_NAME", "Example Research Computing", "Other")]


# --- site TLS ------------------------------------------------------------------------

def openssl_cert(folder: Path, name: str, days: int = 2, start: str = "") -> tuple[Path, Path]:
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    argv = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=t",
            "-keyout", str(key), "-out", str(cert)]
    if start:  # openssl >= 3: explicit dates (an expired certificate)
        argv += ["-not_before", start, "-not_after", "20200102000000Z"]
    else:
        argv += ["-days", str(days)]
    subprocess.run(argv, check=True, capture_output=True)
    return cert, key


def tls_settings(make_settings, cert: Path, key: Path, hsts: bool = False):  # type: ignore[no-untyped-def]
    return make_settings(coldfront={"tls": {"certificate": str(cert), "key": str(key),
                                            "hsts": hsts}})


def test_tls_good_pair_bound_read_only(make_settings, tmp_path: Path) -> None:
    cert, key = openssl_cert(tmp_path, "good")
    settings = tls_settings(make_settings, cert, key, hsts=True)
    assert sitetls.problems(settings) == []
    binds = {b.target: b for b in sitetls.binds(settings)}
    assert binds[f"{sitetls.TARGET}/certificate.pem"].source == cert
    assert binds[f"{sitetls.TARGET}/key.pem"].source == key
    assert all(b.readonly for b in binds.values())
    assert binds[f"{sitetls.TARGET}/hsts"].content == sitetls.HSTS + "\n"
    plan = Launcher(settings).plan()
    assert f"{cert}:{sitetls.TARGET}/certificate.pem:ro" in plan.command


def test_tls_mismatch_expired_and_garbage_refused(make_settings, tmp_path: Path) -> None:
    cert, key = openssl_cert(tmp_path, "one")
    _other_cert, other_key = openssl_cert(tmp_path, "two")
    mismatched = sitetls.problems(tls_settings(make_settings, cert, other_key))
    assert len(mismatched) == 1 and "does not belong" in mismatched[0].message
    assert mismatched[0].fatal
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=3)
    settings = tls_settings(make_settings, cert, key)
    assert settings.coldfront.tls is not None
    assert "expired on" in sitetls.check(settings.coldfront.tls, now=later)[0]
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    unreadable = sitetls.problems(tls_settings(make_settings, garbage, key))
    assert "cannot be read as PEM" in unreadable[0].message
    key_text = key.read_text()
    for problem in mismatched + unreadable:
        assert key_text.splitlines()[1] not in problem.message, "key material never shown"


def test_every_key_documented() -> None:
    from coldfront_launch.config import coldfront as s
    text = (Path(__file__).resolve().parents[3] / "docs" / "production.md").read_text()
    for key in sorted(s.KEYS | s.EMAIL_KEYS | s.OIDC_KEYS | s.TLS_KEYS):
        assert any(form in text for form in (f"{key} =", f"`{key}`", f"[coldfront.{key}]")), \
            f"docs/production.md: {key}"
    for name, shipped in PLUGINS.items():
        assert f"`{name}`" in text, f"docs/production.md: plugin {name} (shipped: {shipped})"


# --- admin create, with a stand-in for the image's coldfront-manage ---------------------

MANAGE_STANDIN = """#!{python}
import json, sys
from pathlib import Path
users = Path({users!r})
known = json.loads(users.read_text()) if users.exists() else {{}}
data = json.loads(sys.stdin.readline())
Path({seen!r}).write_text(json.dumps({{"argv": sys.argv[1:], "stdin": data}}))
if data["username"] in known:
    print("noise"); print("cf-launch-admin: exists", json.dumps({{"superuser": True}}))
else:
    known[data["username"]] = data
    users.write_text(json.dumps(known)); print("cf-launch-admin: created")
"""


def test_admin_create_is_idempotent_and_keeps_the_password_off_argv(
        fake_apptainer: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    import sys

    from click.testing import CliRunner

    from coldfront_launch.cli import cli
    bindir = tmp_path / "manage-bin"
    bindir.mkdir()
    standin = bindir / "coldfront-manage"
    standin.write_text(MANAGE_STANDIN.format(python=sys.executable,
                                             users=str(tmp_path / "users.json"),
                                             seen=str(tmp_path / "seen.json")))
    standin.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    state = Path(os.environ["FAKE_APPTAINER_STATE"])
    state.write_text(json.dumps({"cf1": {"instance": "cf1", "pid": 1, "img": "x", "ip": ""}}))
    password = tmp_path / "pw"
    password.write_text(SECRET + "\n")
    args = ["--name", "cf1", "admin", "create", "--username", "root2", "--email",
            "r@example.org", "--password-file", str(password)]
    runner = CliRunner()
    made = runner.invoke(cli, [*args, "--json"])
    assert made.exit_code == 0, made.output
    assert json.loads(made.output) == {"username": "root2", "created": True, "superuser": True}
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen["stdin"]["password"] == SECRET and SECRET not in " ".join(seen["argv"])
    assert seen["argv"][:4] == ["shell", "-v", "0", "-c"]
    again = runner.invoke(cli, args)
    assert again.exit_code == 1 and "user root2 already exists in cf1" in again.output
    assert "--exist-ok" in again.output and SECRET not in again.output
    ok = runner.invoke(cli, [*args, "--exist-ok"])
    assert ok.exit_code == 0 and "already exists" in ok.output
    bad = runner.invoke(cli, ["--name", "cf1", "admin", "create", "--username", "a b",
                              "--email", "x@y"])
    assert bad.exit_code == 2 and "--username" in bad.output
    gone = runner.invoke(cli, ["--name", "nope", "admin", "create", "--username", "a",
                               "--email", "x@y"])
    assert gone.exit_code == 8 and "not running" in gone.output
