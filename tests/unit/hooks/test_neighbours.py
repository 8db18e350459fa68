"""doctor's checks for other firewalls that stop forwarded ports: firewalld's
StrictForwardPorts (sample firewalld.conf files: Debian 12's firewalld 1.3.3 lacks the
option), Docker's FORWARD policy DROP (iptables-save text), and a missing jeepney."""

from __future__ import annotations

from pathlib import Path

import pytest

from coldfront_launch.config.settings import settings_from_mapping
from coldfront_launch.hooks.bridge import neighbours as bridge_neighbours
from coldfront_launch.linux import firewalld, firewalld_bus
from coldfront_launch.plugins import core

DEBIAN_1_3 = """\
# firewalld config file

# default zone
DefaultZone=public

# Clean up on exit
CleanupOnExit=yes
FirewallBackend=nftables
FlushAllOnReload=yes
"""
FEDORA_2_3 = DEBIAN_1_3 + """
# StrictForwardPorts
# If set to yes, the generated destination NAT (DNAT) rules will NOT accept
# traffic that was DNAT'd by other entities, e.g. docker.
# Default: no
StrictForwardPorts={value}
"""
DOCKER_HOST = """\
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [12:720]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A DOCKER-USER -j RETURN
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:DOCKER-USER - [0:0]
COMMIT
"""


@pytest.fixture
def conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    def write(text: str) -> Path:
        path = tmp_path / "firewalld.conf"
        path.write_text(text)
        monkeypatch.setenv(firewalld.CONF_ENV, str(path))
        return path
    return write


@pytest.mark.parametrize(("text", "strict"), [
    (DEBIAN_1_3, False),
    (FEDORA_2_3.format(value="no"), False),
    (FEDORA_2_3.format(value="yes"), True),
    (FEDORA_2_3.format(value="Yes"), True),
    (FEDORA_2_3.format(value="true"), True),
    ("StrictForwardPorts=yes\nStrictForwardPorts=no\n", False),  # the last one counts
    ("# StrictForwardPorts=yes\n", False),
])
def test_strict_forward_ports(conf, text: str, strict: bool) -> None:  # type: ignore[no-untyped-def]
    path = conf(text)
    problems = bridge_neighbours.strict_forward_ports()
    assert firewalld.strict_forward_ports() is strict
    assert len(problems) == int(strict)
    if strict:
        assert str(path) in problems[0].message and "StrictForwardPorts=no" in problems[0].hint
        assert not problems[0].fatal


def test_real_debian_conf_has_no_strict_option() -> None:
    real = Path("/etc/firewalld/firewalld.conf")
    if not real.is_file():
        pytest.skip("firewalld is not installed")
    assert firewalld.settings(real), "it parses"
    assert not firewalld.strict_forward_ports(real)


def test_missing_conf(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(firewalld.CONF_ENV, str(tmp_path / "none"))
    assert firewalld.settings() == {} and bridge_neighbours.strict_forward_ports() == []


def test_docker_forward_drop() -> None:
    found = bridge_neighbours.docker_forward_drop(DOCKER_HOST)
    assert [p.check for p in found] == ["docker"] and not found[0].fatal
    assert "--repair-unit" in found[0].hint
    assert bridge_neighbours.docker_forward_drop(
        DOCKER_HOST.replace(":FORWARD DROP", ":FORWARD ACCEPT")) == [], "policy ACCEPT"
    no_docker = "\n".join(line for line in DOCKER_HOST.splitlines()
                          if "DOCKER-USER" not in line.split("*nat")[0])
    assert bridge_neighbours.docker_forward_drop(no_docker) == [], "DROP set by someone else"
    only_nat = DOCKER_HOST.replace(":DOCKER-USER - [0:0]\n-A FORWARD -j DOCKER-USER\n"
                                   "-A DOCKER-USER -j RETURN\n", "", 1)
    assert bridge_neighbours.docker_forward_drop(only_nat) == [], "the filter table's chain"


def test_doctor_says_when_firewalld_reloads_go_unheard(conf, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    conf(DEBIAN_1_3)
    settings = settings_from_mapping({"drift_check_interval": 0})
    monkeypatch.setattr(firewalld_bus, "available", lambda: False)
    found = core.autorepair_problems(settings)
    assert [p.check for p in found] == ["dbus"] and "not at all" in found[0].message
    assert "coldfront-launch[dbus]" in found[0].hint
    assert "every 30s" in core.autorepair_problems(settings_from_mapping({}))[0].message
    monkeypatch.setattr(firewalld_bus, "available", lambda: True)
    assert core.autorepair_problems(settings) == []
