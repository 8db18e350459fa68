"""Serving settings: workers, the public URL, trusted proxies, limits, and no DNS."""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path
from typing import Any

import pytest

from coldfront_launch.coldfront import env as siteenv
from coldfront_launch.coldfront import workers
from coldfront_launch.config.settings import settings_from_mapping
from coldfront_launch.errors import ConfigError
from coldfront_launch.linux import cpus

ROOT = Path(__file__).resolve().parents[3]


def _defaults_script() -> Any:
    """The image's coldfront-defaults, imported as a module."""
    spec = importlib.util.spec_from_file_location(
        "coldfront_defaults", ROOT / "definitions/files/coldfront-defaults.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("section,key,value", [
    ("coldfront", "workers", 0), ("coldfront", "workers", 257), ("coldfront", "workers", "4"),
    ("coldfront", "url", "portal"), ("coldfront", "url", "ftp://portal.example.org"),
    ("coldfront", "url", "https://portal.example.org/coldfront"),
    ("coldfront", "url", "https://user:pw@portal.example.org"),
    ("coldfront", "url", "https://*.example.org"),
    ("coldfront", "trusted_proxies", ["10.0.0.0/33"]),
    ("coldfront", "trusted_proxies", ["load-balancer"]),
    ("coldfront", "trusted_proxies", ["0.0.0.0/0"]),
    ("coldfront", "catch_up_tasks", "yes"),
    ("resources", "memory", "lots"), ("resources", "memory", "10M"),
    ("resources", "cpus", 0), ("resources", "cpus", "2"), ("resources", "pids", 3),
    ("resources", "swap", 1),
])
def test_bad_serving_values_name_the_setting(section: str, key: str, value: Any) -> None:
    with pytest.raises(ConfigError) as err:
        settings_from_mapping({section: {key: value}})
    assert err.value.setting.startswith(f"{section}.") or err.value.setting == section


def test_url_sets_hosts_origins_and_https() -> None:
    settings = settings_from_mapping({"coldfront": {
        "url": "https://Portal.Example.org", "allowed_hosts": ["cf.internal"],
        "trusted_proxies": ["10.0.0.0/16", "2001:db8::1"], "workers": 7}})
    env = siteenv.values(settings)
    assert env["ALLOWED_HOSTS"] == "cf.internal,portal.example.org"
    assert env["CSRF_TRUSTED_ORIGINS"] == "https://portal.example.org"
    assert env["CF_LAUNCH_TRUSTED_PROXIES"] == "10.0.0.0/16 2001:db8::1/128"
    assert env["WEB_CONCURRENCY"] == "7"
    assert env["CF_LAUNCH_CATCH_UP_TASKS"] == "False"
    serving = siteenv.serving(settings, env)
    assert serving["workers"] == 7 and serving["workers_from"] == "[coldfront] workers"


def test_ipv6_url_is_bracketed_in_allowed_hosts() -> None:
    env = siteenv.values(settings_from_mapping({"coldfront": {"url": "http://[2001:db8::7]:8080"}}))
    assert "[2001:db8::7]" in env["ALLOWED_HOSTS"].split(",")


def test_limits_become_apptainer_options() -> None:
    settings = settings_from_mapping({"resources": {"cpus": 1.5, "memory": "2G", "pids": 512}})
    assert settings.resources.apptainer_options() == [
        "--cpus", "1.5", "--memory", str(2 << 30), "--pids-limit", "512"]
    assert settings_from_mapping({}).resources.apptainer_options() == []


@pytest.mark.parametrize("count,memory,expected", [
    (1, None, 3), (2, None, 5), (32, None, 65), (1.5, None, 5), (200, None, 256),
    (8, 1 << 30, 5), (8, 300 << 20, 1), (2, 64 << 30, 5),
])
def test_worker_rule_is_the_same_in_cf_launch_and_the_image(
        count: float, memory: int | None, expected: int) -> None:
    assert workers.rule(count, memory) == expected
    assert _defaults_script().workers(count, memory) == expected


def test_workers_follow_the_cpu_limit_not_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpus, "usable_cpus", lambda: 32)
    monkeypatch.setattr(cpus, "memory_limit", lambda: None)
    assert workers.workers(settings_from_mapping({})) == 65
    assert workers.workers(settings_from_mapping({"resources": {"cpus": 2}})) == 5
    assert workers.workers(settings_from_mapping({"resources": {"memory": "1G"}})) == 5


def test_cgroup_quota_lowers_usable_cpus(tmp_path: Path) -> None:
    (tmp_path / "system.slice/cf.service").mkdir(parents=True)
    (tmp_path / "system.slice/cpu.max").write_text("150000 100000\n")
    (tmp_path / "system.slice/cf.service/cpu.max").write_text("max 100000\n")
    (tmp_path / "system.slice/cf.service/memory.max").write_text("1073741824\n")
    proc = tmp_path / "cgroup"
    proc.write_text("0::/system.slice/cf.service\n")
    assert cpus.usable_cpus(tmp_path, proc) == min(2, len(__import__("os").sched_getaffinity(0)))
    assert cpus.memory_limit(tmp_path, proc) == 1 << 30


def test_no_dns_on_the_default_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any resolver call fails the test: host names come from the kernel only."""
    def no_dns(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("a DNS lookup")
    for name in ("getfqdn", "gethostbyname", "gethostbyaddr", "getaddrinfo", "getnameinfo",
                 "gethostbyname_ex"):
        monkeypatch.setattr(socket, name, no_dns)
    hosts = siteenv.host_names()
    assert hosts[:3] == ["localhost", "127.0.0.1", "[::1]"]
    assert all(":" not in h or h.startswith("[") for h in hosts), hosts


def test_limits_without_a_cgroup_manager_are_a_preflight_problem(tmp_path: Path) -> None:
    from coldfront_launch.apptainer import conf

    yes = tmp_path / "yes.conf"
    yes.write_text("systemd cgroups = yes\n")
    no = tmp_path / "no.conf"
    no.write_text("systemd cgroups = no\n")
    absent = tmp_path / "not-systemd"
    assert conf.cgroup_problems(False, (yes,), absent) == []
    found = conf.cgroup_problems(True, (yes,), absent)
    assert found and found[0].fatal and "systemd cgroups" in found[0].message
    assert conf.cgroup_problems(True, (no,), absent) == []
    assert conf.cgroup_problems(True, (yes,), tmp_path) == [], "systemd runs: fine"


def test_oidc_gets_a_lax_session_cookie(tmp_path: Path) -> None:
    secret = tmp_path / "client.secret"
    secret.write_text("s3cret\n")
    oidc = {k: f"https://idp.example.org/{k}" for k in (
        "authorization_endpoint", "token_endpoint", "user_endpoint", "jwks_endpoint")}
    settings = settings_from_mapping({"coldfront": {
        "plugins": ["auth_oidc"], "catch_up_tasks": True,
        "oidc": {**oidc, "client_id": "cf", "client_secret_file": str(secret)}}})
    env = siteenv.values(settings)
    assert env["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert env["CF_LAUNCH_CATCH_UP_TASKS"] == "True"
    assert "SESSION_COOKIE_SAMESITE" not in siteenv.values(settings_from_mapping({}))
