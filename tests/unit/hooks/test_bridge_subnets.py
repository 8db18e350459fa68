"""The bridge's default subnet (issue 26, item 7): picked from cf-launch's own pool clear of
the host's addresses, routes and CNI networks, recorded at the first start, kept after."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from coldfront_launch.changes.host import RecordingHost
from coldfront_launch.errors import ConfigError, PreflightError
from coldfront_launch.hooks import bridge
from coldfront_launch.hooks.bridge import subnets
from coldfront_launch.hooks.bridge.settings import parse
from coldfront_launch.lifecycle.launcher import Launcher
from coldfront_launch.linux import netinfo

N = ipaddress.IPv4Network


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:  # type: ignore[type-arg]
    """This host's addresses and routes, as the test sets them; no other CNI folder."""
    seen: dict[str, list] = {"addresses": [], "routes": []}  # type: ignore[type-arg]
    monkeypatch.setattr(netinfo, "addresses", lambda: seen["addresses"])
    monkeypatch.setattr(netinfo, "routes", lambda: seen["routes"])
    monkeypatch.setattr(subnets, "OTHER_CNI_DIRS", ())
    return seen


def _ctx(make_settings, tmp_path: Path, **bridge_raw):  # type: ignore[no-untyped-def]
    raw = {"cni_config_dir": str(tmp_path / "cni"), "external_interface": "ext0", **bridge_raw}
    (tmp_path / "cni").mkdir(exist_ok=True)
    return Launcher(make_settings(hook={"bridge": raw})).context()


def _conflist(folder: Path, name: str, subnet: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.conflist").write_text(json.dumps({"name": name, "plugins": [
        {"type": "bridge", "bridge": f"br-{name}", "ipam": {"type": "host-local",
                                                           "subnet": subnet}}]}))


def test_the_default_is_cf_launchs_own_bridge_and_the_pools_first_free_24(
        make_settings, tmp_path: Path, host) -> None:  # type: ignore[no-untyped-def]
    s = parse(_ctx(make_settings, tmp_path))
    assert s.bridge == "cflaunch0" and s.bridge != "sbr0", "not Apptainer's own bridge"
    assert s.subnet == N("10.223.0.0/24") and not s.subnet_chosen
    assert not s.subnet.overlaps(N("10.22.0.0/16")), "not Apptainer's 00_bridge subnet"


def test_the_pick_avoids_addresses_routes_and_other_cni_networks(
        make_settings, tmp_path: Path, host) -> None:  # type: ignore[no-untyped-def]
    host["addresses"] = [netinfo.HostAddress("eth0", ipaddress.IPv4Interface("10.223.0.7/24")),
                         netinfo.HostAddress("cflaunch0",  # its own bridge: no clash
                                             ipaddress.IPv4Interface("10.223.3.1/24"))]
    host["routes"] = [netinfo.HostRoute("tun0", N("10.223.1.0/24"))]
    _conflist(tmp_path / "cni", "00_bridge", "10.223.2.0/23")
    s = parse(_ctx(make_settings, tmp_path))
    assert s.subnet == N("10.223.4.0/24")


def test_cni_files_that_are_no_networks_are_skipped(
        make_settings, tmp_path: Path, host) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "cni"
    folder.mkdir(exist_ok=True)
    (folder / "10_junk.conflist").write_text("{not json")
    (folder / "20_v6.conflist").write_text(json.dumps({"plugins": [
        {"ipam": {"ranges": [[{"subnet": "fd00::/64"}], [{"subnet": "10.223.0.0/25"}]]}}]}))
    (folder / "30_dir.conf").mkdir()
    assert parse(_ctx(make_settings, tmp_path)).subnet == N("10.223.1.0/24")


def test_when_every_24_is_taken_the_admin_is_told_to_set_one(
        make_settings, tmp_path: Path, host) -> None:  # type: ignore[no-untyped-def]
    host["routes"] = [netinfo.HostRoute("vpn0", block) for block in subnets.POOL]
    with pytest.raises(PreflightError) as err:
        parse(_ctx(make_settings, tmp_path))
    assert "set hook.bridge.subnet" in err.value.hint


def test_the_first_start_records_the_pick_and_later_starts_keep_it(
        make_settings, tmp_path: Path, host) -> None:  # type: ignore[no-untyped-def]
    ctx = _ctx(make_settings, tmp_path)
    state_root = ctx.settings.state_root
    assert not subnets.record_path(state_root).exists()
    bridge.cf_launch_pre_start(ctx, RecordingHost())
    record = json.loads(subnets.record_path(state_root).read_text())
    assert record == {"cf-launch": {"subnet": "10.223.0.0/24"}}
    # Later the host gets a route there (a VPN, say): the recorded subnet is kept (the
    # running instance's rules use it), and preflight says so instead of moving it.
    host["routes"] = [netinfo.HostRoute("vpn0", N("10.223.0.0/16"))]
    again = parse(_ctx(make_settings, tmp_path))
    assert again.subnet == N("10.223.0.0/24") and not again.subnet_chosen
    problems = bridge.cf_launch_preflight(_ctx(make_settings, tmp_path))
    clash = next(p for p in problems if p.check == "subnet")
    assert "overlaps route 10.223.0.0/16 via vpn0" in clash.message
    assert "networks.json" in clash.hint


def test_another_network_picks_around_the_recorded_one(
        make_settings, tmp_path: Path, host) -> None:  # type: ignore[no-untyped-def]
    bridge.cf_launch_pre_start(_ctx(make_settings, tmp_path), RecordingHost())
    other = parse(_ctx(make_settings, tmp_path, network="cf-two", bridge="cflaunch1"))
    assert other.subnet == N("10.223.1.0/24")


def test_a_quicker_instance_s_record_wins(make_settings, tmp_path: Path,  # type: ignore[no-untyped-def]
                                          host) -> None:
    state_root = _ctx(make_settings, tmp_path).settings.state_root
    state_root.mkdir(parents=True, exist_ok=True)
    assert subnets.record(state_root, "cf-launch", N("10.223.5.0/24")) == N("10.223.5.0/24")
    assert subnets.record(state_root, "cf-launch", N("10.223.0.0/24")) == N("10.223.5.0/24")


def test_plan_shows_the_pick_without_recording_it(make_settings, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                  host) -> None:
    ctx = _ctx(make_settings, tmp_path)
    Launcher(ctx.settings).plan()
    assert not subnets.record_path(ctx.settings.state_root).exists()


def test_an_explicit_subnet_wins_and_is_not_recorded(make_settings, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                     host) -> None:
    host["routes"] = [netinfo.HostRoute("eth0", N("192.168.77.0/24"))]
    ctx = _ctx(make_settings, tmp_path, subnet="192.168.77.0/24")
    s = parse(ctx)
    assert s.subnet == N("192.168.77.0/24") and s.subnet_chosen
    bridge.cf_launch_pre_start(ctx, RecordingHost())
    assert not subnets.record_path(ctx.settings.state_root).exists()
    problems = bridge.cf_launch_preflight(ctx)
    clash = next(p for p in problems if p.check == "subnet")
    assert clash.hint == "choose another hook.bridge.subnet"


@pytest.mark.parametrize("damage", ["{", '{"cf-launch": {"subnet": "10.223.0.0/33"}}',
                                    '{"cf-launch": 5}', "[1]", "dir"])
def test_a_damaged_record_is_a_config_error_never_a_new_pick(
        make_settings, tmp_path: Path, host, damage: str) -> None:  # type: ignore[no-untyped-def]
    ctx = _ctx(make_settings, tmp_path)
    path = subnets.record_path(ctx.settings.state_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    if damage == "dir":
        path.mkdir()
    else:
        path.write_text(damage)
    with pytest.raises(ConfigError) as err:
        parse(ctx)
    assert err.value.setting == "hook.bridge.subnet"
    assert "\n" not in str(err.value) and str(path) in err.value.hint


def test_a_damaged_record_never_blocks_stop(make_settings, tmp_path: Path, host,  # type: ignore[no-untyped-def]
                                            fake_apptainer) -> None:
    """Stop runs from the journal; the bridge's post_stop reads no settings."""
    ctx = _ctx(make_settings, tmp_path)
    path = subnets.record_path(ctx.settings.state_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{")
    bridge.cf_launch_post_stop(ctx)
