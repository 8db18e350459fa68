"""[security] settings, the capability drop-in, the uid check, data ownership and the
exposure report (the real instance: tests/integration/test_security.py)."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from coldfront_launch.coldfront import appdata, hardening
from coldfront_launch.config.security import DEFAULT_DROP, SecuritySettings
from coldfront_launch.config.settings import settings_from_mapping
from coldfront_launch.errors import ConfigError
from coldfront_launch.lifecycle.launcher import Launcher


@pytest.mark.parametrize(("raw", "setting"), [
    ({"uid": 0}, "security.uid"),
    ({"uid": 99}, "security.uid"),
    ({"uid": 70000}, "security.uid"),
    ({"uid": "8801"}, "security.uid"),
    ({"gid": True}, "security.gid"),
    ({"drop_capabilities": "CAP_SYS_TIME"}, "security.drop_capabilities"),
    ({"drop_capabilities": ["sys_time"]}, "security.drop_capabilities[0]"),
    ({"drop_capabilities": ["CAP_SYS_TIME", "CAP_SYS_ADMIN"]},
     "security.drop_capabilities[1]"),
    ({"user": "x"}, "security.user"),
])
def test_invalid_security_settings_named(raw: dict, setting: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings_from_mapping({"security": raw})
    assert err.value.setting == setting


def test_defaults_and_round_trip() -> None:
    settings = settings_from_mapping({})
    assert settings.security == SecuritySettings(8801, 8801, DEFAULT_DROP)
    for cap in ("CAP_SYS_MODULE", "CAP_SYS_TIME", "CAP_SYS_PTRACE", "CAP_MKNOD"):
        assert cap in DEFAULT_DROP
    assert "CAP_SYS_ADMIN" not in DEFAULT_DROP
    custom = settings_from_mapping({"security": {"uid": 9000, "gid": 9001,
                                                 "drop_capabilities": ["CAP_SYS_TIME"]}})
    again = custom.with_overrides(name="other")
    assert again.security == SecuritySettings(9000, 9001, ("CAP_SYS_TIME",))


def test_binds_drop_in_and_account(make_settings) -> None:
    settings = make_settings(security={"uid": 9000, "gid": 9001,
                                       "drop_capabilities": ["CAP_SYS_TIME", "CAP_BPF"]})
    binds = {b.target: b.content for b in hardening.binds(settings)}
    dropin = binds["/etc/systemd/system.conf.d/cf-launch-hardening.conf"]
    assert "[Manager]\nCapabilityBoundingSet=~CAP_SYS_TIME CAP_BPF\n" in dropin
    assert "COLDFRONT_UID=9000\nCOLDFRONT_GID=9001\n" in str(binds["/etc/cf-launch/account.env"])


def test_plan_binds_hardening_in_every_mode(make_settings) -> None:
    plan = Launcher(make_settings(hooks=["override"],
                                  hook={"override": {"netns_path": "/proc/self/ns/net"}})).plan()
    targets = [spec.split(":")[1] for spec in plan.binds]
    assert "/etc/systemd/system.conf.d/cf-launch-hardening.conf" in targets
    assert "/etc/systemd/system.conf.d/cf-launch-capabilities.conf" in targets, \
        "override's own drop-in has a different name: both apply"


def test_uid_of_a_host_account_is_fatal(make_settings) -> None:
    taken = os.getuid() if os.getuid() >= 1000 else None
    uid = taken or next((p.pw_uid for p in pwd.getpwall() if 1000 <= p.pw_uid <= 60000), None)
    if uid is None:
        pytest.skip("no host account with a uid in 1000-60000 here")
    problems = hardening.preflight(make_settings(security={"uid": uid}))
    assert [p.check for p in problems if p.fatal] == ["security.uid"]


def test_uid_check_with_a_fake_account(make_settings, monkeypatch: pytest.MonkeyPatch) -> None:
    class Entry:
        pw_name = "alice"
    real = pwd.getpwuid
    monkeypatch.setattr(hardening.pwd, "getpwuid",
                        lambda uid: Entry() if uid == 8801 else real(uid))
    problems = hardening.preflight(make_settings())
    assert problems[0].fatal and "host account 'alice'" in problems[0].message
    assert not hardening.preflight(make_settings(security={"uid": 8805, "gid": 59999}))


def test_other_ids_need_writable_tmpfs(make_settings) -> None:
    refused = hardening.preflight(make_settings(writable_tmpfs=False, security={"uid": 9000}))
    assert [p.fatal for p in refused] == [True] and "writable_tmpfs" in refused[0].message
    assert not hardening.preflight(make_settings(writable_tmpfs=False))


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_root_owned_data_handed_over(tmp_path: Path) -> None:
    state = tmp_path / "state"
    old = state / "data" / "sub"
    old.mkdir(parents=True)
    (old / "coldfront.db").write_text("x")
    (state / "data" / "link").symlink_to("/etc/hostname")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("a root file outside the data folder")
    os.link(elsewhere, state / "data" / "hardlink")
    appdata.ensure(state, (8801, 8802))
    assert elsewhere.stat().st_uid == 0, "a hard link to a file elsewhere is not handed over"
    for path in [state / "data", *(state / "data").rglob("*")]:
        if path.name == "hardlink":
            continue
        assert (path.lstat().st_uid, path.lstat().st_gid) == (8801, 8802), path
    assert Path("/etc/hostname").stat().st_uid == 0, "links are not followed"
    assert (state / "data").stat().st_mode & 0o777 == 0o700
    env = (state / appdata.ENV_FILE).stat()
    assert (env.st_uid, env.st_mode & 0o777) == (0, 0o600)


REPORT = """\
→ Overall exposure level for coldfront-gunicorn.service: 1.4 OK 🙂
→ Overall exposure level for coldfront-setup.service: 1.4 OK 🙂
→ Overall exposure level for nginx.service: 9.6 UNSAFE 😨
root     /srv/coldfront/venv/bin/python3 /srv/coldfront/venv/bin/gunicorn --workers 2
coldfront /srv/coldfront/venv/bin/python3 /srv/coldfront/venv/bin/gunicorn --workers 2
"""


def test_report_and_doctor_problems(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardening.apptainer, "exec_capture",
                        lambda *_a, **_k: hardening.apptainer.Probe(0, REPORT, ""))
    found = hardening.report("x")
    assert found["exposure"] == {"coldfront-gunicorn.service": 1.4,
                                 "coldfront-setup.service": 1.4, "nginx.service": 9.6}
    assert found["gunicorn_users"] == ["coldfront", "root"] and found["gunicorn_as_root"]
    messages = [p.message for p in hardening.problems(found)]
    assert messages == ["gunicorn runs as root inside the instance",
                        "nginx.service exposure 9.6 is above 5.0"]
    fine = {"exposure": {"nginx.service": 2.4}, "gunicorn_users": ["coldfront"],
            "gunicorn_as_root": False}
    assert hardening.problems(fine) == []


def test_documented_defaults_match() -> None:
    import re
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    root = Path(__file__).resolve().parents[3]
    text = (root / "docs" / "configuration.md").read_text()
    block = re.search(r"```toml\n(.*?)```", text, re.S)
    assert block is not None
    documented = tomllib.loads(block.group(1))["security"]
    assert documented == SecuritySettings().to_raw()
    security_md = (root / "docs" / "security.md").read_text()
    for cap in DEFAULT_DROP:
        assert cap in security_md, f"docs/security.md: say why {cap} is dropped"
