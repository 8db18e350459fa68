"""IPv6 on the bridge network (issue 28): ``subnet6`` checked at the door, both ranges in
the CNI network, the ip6tables twin of the ruleset (the IPv6 metadata service dropped),
forwarding claimed with router advertisements still heard, the checks of preflight."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from coldfront_launch.changes.host import RecordingHost
from coldfront_launch.errors import ConfigError
from coldfront_launch.hooks import bridge
from coldfront_launch.hooks.bridge import cni as bridge_cni
from coldfront_launch.hooks.bridge import ipv6, subnets
from coldfront_launch.hooks.bridge import rules as bridge_rules
from coldfront_launch.hooks.bridge.settings import parse
from coldfront_launch.lifecycle.launcher import Launcher
from coldfront_launch.linux import netinfo
from coldfront_launch.types import InstanceInfo

SUBNET6 = "fd42:cf:1::/64"


@pytest.fixture
def quiet_host(monkeypatch: pytest.MonkeyPatch) -> list:  # type: ignore[type-arg]
    """A host with IPv6 on, no IPv6 networks of its own (the test adds some)."""
    networks: list = []  # type: ignore[type-arg]
    monkeypatch.setattr(subnets, "used_by_host", lambda bridge: [])
    monkeypatch.setattr(subnets, "OTHER_CNI_DIRS", ())
    monkeypatch.setattr(netinfo, "ipv6_enabled", lambda: True)
    monkeypatch.setattr(netinfo, "has_global_ipv6_route", lambda: False)
    monkeypatch.setattr(netinfo, "networks6", lambda: networks)
    return networks


def _ctx(make_settings, tmp_path: Path, **raw):  # type: ignore[no-untyped-def]
    section = {"external_interface": "ext0", "cni_config_dir": str(tmp_path / "cni"), **raw}
    return Launcher(make_settings(hook={"bridge": section})).context()


@pytest.mark.parametrize(("value", "said"), [
    ("10.0.0.0/24", "not a valid IPv6 CIDR"),
    ("fd42:cf:1::1/64", "host bits set"),
    ("fd42::/48", "is a /48"),
    ("fd42::/124", "is a /124"),
    ("fe80::/64", "link-local"),
    ("ff02::/64", "multicast"),
    ("::1/128", "loopback"),
    ("::ffff:10.0.0.0/120", "IPv4-mapped"),
    (64, "not an IPv6 CIDR"),
])
def test_subnet6_is_checked_before_anything(make_settings, tmp_path: Path,  # type: ignore[no-untyped-def]
                                            quiet_host, value: object, said: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(_ctx(make_settings, tmp_path, subnet6=value))
    assert err.value.setting == "hook.bridge.subnet6" and said in str(err.value)


def test_without_subnet6_nothing_changes(make_settings, tmp_path: Path, quiet_host) -> None:  # type: ignore[no-untyped-def]
    s = parse(_ctx(make_settings, tmp_path))
    assert s.subnet6 is None
    ipam = json.loads(bridge_cni.conflist(s))["plugins"][0]["ipam"]
    assert "ranges" not in ipam and ipam["routes"] == [{"dst": "0.0.0.0/0"}]


def test_the_network_gets_a_range_of_each_family(make_settings, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                 quiet_host) -> None:
    s = parse(_ctx(make_settings, tmp_path, subnet6=SUBNET6))
    ipam = json.loads(bridge_cni.conflist(s))["plugins"][0]["ipam"]
    assert ipam["ranges"] == [[{"subnet": str(s.subnet), "gateway": str(s.gateway)}],
                              [{"subnet": SUBNET6, "gateway": "fd42:cf:1::1"}]]
    assert ipam["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]


def test_the_ipv6_ruleset_is_the_ipv4_one_s_twin(make_settings, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                 quiet_host) -> None:
    s = parse(_ctx(make_settings, tmp_path, subnet6=SUBNET6, ports=[80, "8443:443"]))
    v4 = bridge_rules.ruleset("cf1", s, "10.223.0.2", "ext0")
    v6 = bridge_rules.ruleset("cf1", s, "fd42:cf:1::2", "ext0", "ipv6")
    assert v6.family == "ipv6" and v4.family == "ipv4"
    assert [c.name for c in v6.chains] == [c.name for c in v4.chains]
    text = v6.restore_text()
    assert "--dport 8443 " in text and "--to-destination [fd42:cf:1::2]:443" in text
    assert "! -d ::1/128 -p tcp" in text, "the host reaches its own ports over IPv6"
    assert "-s fd42:cf:1::2/128 -o ext0" in text and "MASQUERADE" in text
    assert "-d fd00:ec2::254/128" in text and "169.254" not in text
    assert "--clamp-mss-to-pmtu" in text
    allowed = parse(_ctx(make_settings, tmp_path, subnet6=SUBNET6, allow_metadata=True))
    assert "fd00:ec2::254" not in bridge_rules.ruleset("cf1", allowed, "fd42:cf:1::2",
                                                       "ext0", "ipv6").restore_text()


def test_start_claims_forwarding_and_keeps_router_advertisements(
        make_settings, tmp_path: Path, quiet_host, sysctl_root: Path) -> None:  # type: ignore[no-untyped-def]
    for key, value in (("ipv4/ip_forward", "0"), ("ipv6/conf/all/forwarding", "0"),
                       ("ipv6/conf/ext0/accept_ra", "1")):
        path = sysctl_root / "net" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")
    host = RecordingHost()
    bridge.cf_launch_pre_start(_ctx(make_settings, tmp_path, subnet6=SUBNET6), host)
    claimed = {c.target: c for c in host.changes if c.kind == "sysctl"}
    assert {"net.ipv6.conf.all.forwarding", "net.ipv6.conf.ext0.accept_ra"} <= set(claimed)
    plain = RecordingHost()
    bridge.cf_launch_pre_start(_ctx(make_settings, tmp_path), plain)
    assert not any("ipv6" in c.target for c in plain.changes), "IPv4 only: nothing of IPv6"


def test_post_start_applies_the_ipv6_ruleset(make_settings, tmp_path: Path, quiet_host,  # type: ignore[no-untyped-def]
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = _ctx(make_settings, tmp_path, subnet6=SUBNET6, offloads=False)
    monkeypatch.setattr(netinfo, "global_ipv6_of", lambda pid: "fd42:cf:1::7")
    host = RecordingHost()
    info = InstanceInfo("coldfront", 4242, "x.sif", "10.223.0.7/24")
    bridge.cf_launch_post_start(ctx, host, info)
    firewalls = [c for c in host.changes if c.kind == "firewall"]
    assert len(firewalls) == 2, [c.target for c in firewalls]
    assert "[fd42:cf:1::7]:80" in json.dumps([c.to_json() for c in firewalls])


def test_an_address_outside_subnet6_is_an_error(make_settings, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                quiet_host, monkeypatch) -> None:
    monkeypatch.setattr(ipv6, "ADDRESS_WAIT", 0.2)
    monkeypatch.setattr(netinfo, "global_ipv6_of", lambda pid: "2001:db8::9")
    s = parse(_ctx(make_settings, tmp_path, subnet6=SUBNET6))
    with pytest.raises(Exception, match="has no IPv6 address in fd42:cf:1::/64 "
                                        r"\(it has 2001:db8::9\)"):
        ipv6.address_of(InstanceInfo("cf", 1, "x", ""), s)


def test_preflight(make_settings, tmp_path: Path, quiet_host, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    s = parse(_ctx(make_settings, tmp_path, subnet6=SUBNET6))
    assert ipv6.preflight(s) == []
    quiet_host.append(("eth0", ipaddress.IPv6Network("fd42:cf::/32")))
    quiet_host.append(("cflaunch0", ipaddress.IPv6Network(SUBNET6)))  # its own: no clash
    clashes = ipv6.preflight(s)
    assert [(p.check, p.fatal) for p in clashes] == [("subnet6", True)]
    assert "overlaps fd42:cf::/32 on eth0" in clashes[0].message
    monkeypatch.setattr(netinfo, "ipv6_enabled", lambda: False)
    off = ipv6.preflight(s)
    assert off[0].fatal and "IPv6 is turned off" in off[0].message
    plain = parse(_ctx(make_settings, tmp_path))
    assert ipv6.preflight(plain) == [], "IPv4 only without IPv6 on the host: no word"
    monkeypatch.setattr(netinfo, "ipv6_enabled", lambda: True)
    monkeypatch.setattr(netinfo, "has_global_ipv6_route", lambda: True)
    hint = ipv6.preflight(plain)
    assert [(p.check, p.fatal) for p in hint] == [("ipv6", False)]
    assert "subnet6" in hint[0].hint


def test_plan_shows_both_subnets_and_the_ipv6_rules(make_settings, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                    quiet_host, fake_apptainer) -> None:
    planned = Launcher(_ctx(make_settings, tmp_path, subnet6=SUBNET6).settings).plan()
    text = "\n".join(c.describe() for c in planned.changes)
    assert f'"subnet": "{SUBNET6}"' in text and '"subnet": "10.223.0.0/24"' in text
    assert "--to-destination [<instance-ip6>]:80" in text
    assert "sysctl net.ipv6.conf.all.forwarding = 1" in text
