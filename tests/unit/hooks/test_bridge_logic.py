"""The bridge hook's decisions, against a recording host and a private sysctl folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coldfront_launch.changes.host import RecordingHost
from coldfront_launch.hooks import bridge
from coldfront_launch.hooks.bridge import cni as bridge_cni
from coldfront_launch.hooks.bridge import rules as bridge_rules
from coldfront_launch.hooks.bridge import subnets
from coldfront_launch.hooks.bridge.settings import parse
from coldfront_launch.lifecycle.launcher import Launcher


@pytest.fixture
def ctx(make_settings, tmp_path: Path, monkeypatch):  # type: ignore[no-untyped-def]
    """The default subnet, picked on a host with nothing in the pool's way."""
    monkeypatch.setattr(subnets, "used_by_host", lambda bridge: [])
    monkeypatch.setattr(subnets, "OTHER_CNI_DIRS", ())
    settings = make_settings(hook={"bridge": {"external_interface": "ext0",
                                              "cni_config_dir": str(tmp_path / "cni"),
                                              "ports": [80, "8443:443"]}})
    return Launcher(settings).context()


@pytest.fixture
def ctx_sbr0(make_settings, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Settings of sites from before cflaunch0: Apptainer's own bridge and subnet."""
    settings = make_settings(hook={"bridge": {"bridge": "sbr0", "subnet": "10.22.0.0/16",
                                              "cni_config_dir": str(tmp_path / "cni")}})
    return Launcher(settings).context()


def _rp(root: Path, all_: str, default: str, ext: str) -> None:
    for name, value in (("all", all_), ("default", default), ("ext0", ext)):
        path = root / "net/ipv4/conf" / name / "rp_filter"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")


@pytest.mark.parametrize(("values", "claimed"), [
    (("0", "0", "0"), False),   # no filtering: nothing to change
    (("1", "1", "1"), True),    # strict: loosen
    (("0", "1", "0"), True),    # new interfaces (the bridge) would be strict
    (("0", "0", "1"), True),    # the external interface is strict
    (("2", "0", "0"), True),    # already loose, maybe by another instance: hold it too
])
def test_rp_filter_rule(ctx, sysctl_root: Path, values: tuple[str, str, str],
                        claimed: bool) -> None:
    _rp(sysctl_root, *values)
    host = RecordingHost()
    bridge.cf_launch_pre_start(ctx, host)
    keys = [c.target for c in host.changes if c.kind == "sysctl"]
    assert ("net.ipv4.conf.all.rp_filter" in keys) is claimed
    assert "net.ipv4.ip_forward" in keys
    assert [c.kind for c in host.changes][0] == "shared-file"


def test_conflist(ctx, tmp_path: Path) -> None:
    settings = parse(ctx)
    conf = json.loads(bridge_cni.conflist(settings))
    plugin = conf["plugins"][0]
    assert conf["name"] == "cf-launch" and len(conf["plugins"]) == 1
    assert plugin["bridge"] == "cflaunch0" and plugin["isGateway"] is True
    assert plugin["ipMasq"] is False and plugin["mtu"] == 1500
    assert plugin["ipam"]["subnet"] == "10.223.0.0/24", "the pool's first /24"
    assert not settings.subnet_chosen
    assert "tuning" not in bridge_cni.conflist(settings), "offloads are set for real instead"
    assert bridge_cni.conflist_path(settings) == tmp_path / "cni" / "50_cf-launch.conflist"


def test_sharing_networks_warned(ctx_sbr0, tmp_path: Path) -> None:
    folder = tmp_path / "cni"
    folder.mkdir()
    (folder / "00_bridge.conflist").write_text(json.dumps({"name": "bridge", "plugins": [
        {"type": "bridge", "bridge": "sbr0", "ipam": {"subnet": "10.22.0.0/16"}}]}))
    (folder / "10_other.conflist").write_text(json.dumps({"name": "o", "plugins": [
        {"type": "bridge", "bridge": "br9", "ipam": {"subnet": "10.22.128.0/17"}}]}))
    (folder / "20_far.conflist").write_text(json.dumps({"name": "f", "plugins": [
        {"type": "bridge", "bridge": "br8", "ipam": {"subnet": "10.99.0.0/16"}}]}))
    found = bridge_cni.sharing_networks(parse(ctx_sbr0))
    assert [(p.name, why) for p, why in found] == [
        ("00_bridge.conflist", "uses the same bridge sbr0"),
        ("10_other.conflist", "uses the overlapping subnet 10.22.128.0/17")]


def test_ruleset_is_per_instance_and_owned(ctx) -> None:
    settings = parse(ctx)
    rules = bridge_rules.ruleset("cf1", settings, "10.22.0.5", "ext0")
    other = bridge_rules.ruleset("cf2", settings, "10.22.0.6", "ext0")
    names = {c.name for c in rules.chains}
    assert names.isdisjoint({c.name for c in other.chains})
    assert all(n.startswith("CF-LAUNCH-") and len(n) <= 28 for n in names)
    assert len(rules.jumps) == len(rules.chains), "one jump per owned chain"
    text = rules.restore_text()
    assert "-F FORWARD" not in text and "-F PREROUTING" not in text and "-t nat -F" not in text
    assert "--dport 8443 " in text and "--to-destination 10.22.0.5:443" in text
    assert "-s 10.22.0.5/32 -o ext0" in text and "MASQUERADE" in text
    assert "--clamp-mss-to-pmtu" in text


def test_forwarded_ports_read_back(ctx) -> None:
    settings = parse(ctx)
    rules = bridge_rules.ruleset("cfone", settings, "10.22.0.5", "ext0")
    saved = "\n".join(f"-A {c.name} {r}" for c in rules.chains for r in c.rules)
    saved = saved.replace("--comment cf-launch:cfone", '--comment "cf-launch:cfone"')
    assert bridge_rules.forwarded_ports(saved) == {80: "cfone", 8443: "cfone"}


def test_stale_leases_of_this_network_only(ctx, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """After a reboot, host-local IPAM's leases of gone containers stay on disk: a fixed
    ip would read as in use. Only this network's leases from before the boot are stale."""
    import os
    import time

    from coldfront_launch.linux import netinfo

    monkeypatch.setattr(bridge, "CNI_LEASES", tmp_path / "cni")
    monkeypatch.setattr(netinfo, "boot_time", lambda: time.time() - 100)
    ours, other = tmp_path / "cni" / "cf-launch", tmp_path / "cni" / "bridge"
    for folder in (ours, other):
        folder.mkdir(parents=True)
        for name in ("10.22.0.9", "last_reserved_ip.0"):
            (folder / name).write_text("container-id\neth0\n")
            os.utime(folder / name, (time.time() - 1000,) * 2)
    (ours / "10.22.0.10").write_text("a live container\neth0\n")  # this boot's
    settings = parse(ctx)
    assert bridge.stale_leases(settings) == [ours / "10.22.0.9"]
