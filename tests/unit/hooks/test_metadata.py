"""Keeping ColdFront from the cloud's metadata service: rules, settings and EC2 detection."""

from __future__ import annotations

from pathlib import Path

import pytest

from coldfront_launch.changes import journal
from coldfront_launch.changes.host import RecordingHost
from coldfront_launch.errors import ConfigError
from coldfront_launch.hooks import metadata, override
from coldfront_launch.hooks.bridge import rules as bridge_rules
from coldfront_launch.hooks.bridge.settings import parse
from coldfront_launch.lifecycle.launcher import Launcher
from coldfront_launch.types import LaunchContext

CREDENTIALS = ("169.254.169.254/32", "169.254.170.2/32")


def bridge_ctx(make_settings, **extra):  # type: ignore[no-untyped-def]
    section = {"external_interface": "ext0", **extra}
    return Launcher(make_settings(hook={"bridge": section})).context()


def override_ctx(make_settings, **extra):  # type: ignore[no-untyped-def]
    section = {"netns_path": "/proc/self/ns/net", "ports": [65004], **extra}
    return Launcher(make_settings(hooks=["override"], hook={"override": section})).context()


def forward_rules(ctx: LaunchContext) -> tuple[str, ...]:
    rules = bridge_rules.ruleset("cf1", parse(ctx), "10.22.0.5", "ext0")
    return next(c for c in rules.chains if c.name.endswith("-FWD")).rules


def test_bridge_drops_metadata_before_accepting(make_settings) -> None:
    rules = forward_rules(bridge_ctx(make_settings))
    drops = [r for r in rules if r.endswith("-j DROP")]
    assert [r.split(" -d ")[1].split()[0] for r in drops] == list(CREDENTIALS)
    assert all(r.startswith("-i cflaunch0 -s 10.22.0.5/32 ") for r in drops), "this instance only"
    first_accept = next(i for i, r in enumerate(rules) if r.endswith("-j ACCEPT"))
    assert max(rules.index(d) for d in drops) < first_accept, "drops come before the accept"
    text = "\n".join(rules)
    assert "169.254.0.0/16" not in text and "169.254.169.253" not in text
    assert "169.254.169.123" not in text, "AWS DNS and time stay reachable"


def test_bridge_allow_metadata_removes_only_the_drops(make_settings) -> None:
    blocked = forward_rules(bridge_ctx(make_settings))
    allowed = forward_rules(bridge_ctx(make_settings, allow_metadata=True))
    assert not [r for r in allowed if "169.254." in r]
    assert blocked[len(CREDENTIALS):] == allowed


@pytest.mark.parametrize(("hook", "key", "value"), [
    ("bridge", "allow_metadata", "no"),
    ("override", "allow_metadata", 0),
])
def test_settings_validated(make_settings, hook: str, key: str, value: object) -> None:
    make = bridge_ctx if hook == "bridge" else override_ctx
    ctx = make(make_settings, **{key: value})
    check = parse if hook == "bridge" else override.settings
    with pytest.raises(ConfigError) as err:
        check(ctx)
    assert err.value.setting == f"hook.{hook}.{key}"


@pytest.fixture
def ipv6(monkeypatch):  # type: ignore[no-untyped-def]
    """Whether the kernel has IPv6, as the override hook sees it (default: it has not)."""
    present = {"yes": False}
    monkeypatch.setattr(metadata, "ipv6_present", lambda: present["yes"])
    return present


def test_override_rule_rejects_the_service_uid_on_output(make_settings, ipv6) -> None:  # type: ignore[no-untyped-def]
    host = RecordingHost()
    override.cf_launch_pre_start(override_ctx(make_settings), host)
    [change] = host.changes
    assert change.kind == "firewall" and change.target == "override:coldfront"
    [chain] = change.detail["chains"]
    assert chain["table"] == "filter" and chain["name"] == metadata.owner_chain_name("coldfront")
    assert len(chain["name"]) <= 28
    for rule, addr in zip(chain["rules"], CREDENTIALS):
        assert rule.startswith(f"-d {addr} -m owner --uid-owner 8801 ")
        assert rule.endswith("-j REJECT --reject-with icmp-port-unreachable")
    assert change.detail["jumps"] == [{"table": "filter", "chain": "OUTPUT",
                                       "rule": "-m comment --comment cf-launch:coldfront "
                                               f"-j {chain['name']}"}]
    assert "-I OUTPUT 1 " in change.detail["restore"], "plan prints the rule"


def test_override_ipv6_twin_only_with_ipv6(make_settings, ipv6) -> None:  # type: ignore[no-untyped-def]
    ipv6["yes"] = True
    host = RecordingHost()
    override.cf_launch_pre_start(override_ctx(make_settings), host)
    v4, v6 = host.changes
    assert (v4.target, v4.detail["family"]) == ("override:coldfront", "ipv4")
    assert (v6.target, v6.detail["family"]) == ("override:coldfront:ipv6", "ipv6")
    [chain] = v6.detail["chains"]
    assert chain["rules"] == [
        "-d fd00:ec2::254/128 -m owner --uid-owner 8801 -m comment --comment "
        "cf-launch:coldfront -j REJECT --reject-with icmp6-port-unreachable"]
    assert v6.detail["jumps"][0]["chain"] == "OUTPUT"


def test_override_rule_uses_the_service_account_and_allow(make_settings, ipv6) -> None:  # type: ignore[no-untyped-def]
    ipv6["yes"] = True
    host = RecordingHost()
    ctx = override_ctx(make_settings)
    ctx = LaunchContext(make_settings(hooks=["override"], security={"uid": 9100, "gid": 9100},
                                      hook=ctx.settings.hook_settings), ("override",),
                        Path("/x"))
    override.cf_launch_pre_start(ctx, host)
    assert all("--uid-owner 9100 " in c.detail["restore"] for c in host.changes)
    allowed = RecordingHost()
    override.cf_launch_pre_start(override_ctx(make_settings, allow_metadata=True), allowed)
    assert allowed.changes == []


def dmi(folder: Path, vendor: str | None, tag: str | None) -> Path:
    folder.mkdir()
    if vendor is not None:
        (folder / "sys_vendor").write_text(vendor + "\n")
    if tag is not None:
        (folder / "board_asset_tag").write_text(tag + "\n")
    return folder


@pytest.mark.parametrize(("vendor", "tag", "ec2"), [
    ("Amazon EC2", "i-0123456789abcdef0", True),   # Nitro
    ("Amazon EC2", "", True),
    ("Xen", "i-0abc", True),                       # asset tag alone
    ("QEMU", "", False),
    ("Amazon.com", "asset-1", False),
    (None, None, False),                           # no DMI at all (e.g. a VM without it)
])
def test_ec2_from_dmi(tmp_path: Path, monkeypatch, vendor, tag, ec2) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv(metadata.DMI_ENV, str(dmi(tmp_path / "dmi", vendor, tag)))
    assert metadata.on_ec2() is ec2


def test_dmi_dir_constant_is_a_seam_too(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv(metadata.DMI_ENV, raising=False)
    monkeypatch.setattr(metadata, "DMI_DIR", dmi(tmp_path / "dmi", "Amazon EC2", None))
    assert metadata.on_ec2() is True
    monkeypatch.setattr(metadata, "DMI_DIR", tmp_path / "absent")
    assert metadata.on_ec2() is False


@pytest.mark.parametrize("hook", ["bridge", "override"])
def test_doctor_warns_on_ec2_when_allowed(tmp_path: Path, monkeypatch, make_settings,
                                          fake_apptainer, hook: str) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv(metadata.DMI_ENV, str(dmi(tmp_path / "dmi", "Amazon EC2", "i-1")))
    section = {"external_interface": "lo"} if hook == "bridge" else \
        {"netns_path": "/proc/self/ns/net", "ports": [65005]}

    def warnings(allow: bool) -> list[str]:
        settings = make_settings(hooks=[hook], hook={hook: {**section, "allow_metadata": allow}})
        found = [p for p in Launcher(settings).doctor() if p.check == "metadata"]
        assert all(not p.fatal for p in found), "a warning, never a refusal"
        return [p.message for p in found]

    assert warnings(False) == []
    [message] = warnings(True)
    assert f"hook.{hook}.allow_metadata is true" in message
    monkeypatch.setenv(metadata.DMI_ENV, str(dmi(tmp_path / "other", "QEMU", "")))
    assert warnings(True) == [], "not EC2: nothing to warn about"


def test_override_refuses_a_rule_in_the_wrong_namespace(make_settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    ctx = override_ctx(make_settings)
    assert [p for p in override.cf_launch_preflight(ctx) if p.check == "metadata"] == []
    monkeypatch.setattr(override.netinfo, "netns_id", lambda: "1")
    [problem] = [p for p in override.cf_launch_preflight(ctx) if p.check == "metadata"]
    assert problem.fatal and "runs outside /proc/self/ns/net" in problem.message
    allowed = override_ctx(make_settings, allow_metadata=True)
    assert [p for p in override.cf_launch_preflight(allowed) if p.fatal] == []



def test_journal_undoes_each_family_with_its_tool(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """An IPv6 ruleset is removed with ip6tables, its claims put back in IPv6's tables;
    records without a family (older ones) stay IPv4."""
    from coldfront_launch import changes as changes
    from coldfront_launch.changes.undo import undo_all
    from coldfront_launch.linux import netfilter, netinfo
    from coldfront_launch.state.instance import InstanceState

    removed: list[tuple[list[tuple[str, str]], str]] = []
    dropped: list[tuple[str, ...]] = []
    monkeypatch.setattr(netfilter, "remove", lambda chains, family="ipv4":
                        removed.append((list(chains), family)))
    monkeypatch.setattr(netfilter, "drop_table_if_empty", lambda *a: dropped.append(a))
    monkeypatch.setattr(netfilter, "drop_base_chain_if_empty", lambda *a: dropped.append(a))
    state = InstanceState(tmp_path / "state" / "cf1")
    here = netinfo.netns_id()
    four = netfilter.Ruleset((netfilter.Chain("filter", "A", ()),), ())
    six = netfilter.Ruleset((netfilter.Chain("filter", "B", ()),), (), "ipv6")
    journal.record(state, changes.Firewall("o", four, here))
    journal.record(state, changes.Firewall("o6", six, here))
    assert undo_all(state, tmp_path / "state", lambda _n: None) == []
    assert removed == [([("filter", "B")], "ipv6"), ([("filter", "A")], "ipv4")]
    for change in (changes.IptablesTable(table="filter", original="absent", netns="1",
                                         family="ipv6"),
                   changes.NftBaseChain(table="filter", chain="OUTPUT", original="absent",
                                        netns="1", family="ipv6"),
                   changes.IptablesTable(table="nat", original="absent", netns="1"),
                   changes.NftBaseChain(table="nat", chain="OUTPUT", original="absent",
                                        netns="1")):
        change.restore("absent")
    assert dropped == [("filter", "ipv6"), ("filter", "OUTPUT", "ipv6"),
                       ("nat", "ipv4"), ("nat", "OUTPUT", "ipv4")]
    assert changes.IptablesTable(table="filter", netns="1",
                                 family="ipv6").key().kind == "ip6tables-table"
