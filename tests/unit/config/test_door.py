"""Every value is checked at the door (issue 26, item 3): no character a reader splits
lines at, no path Apptainer's --bind would split, no integer or nesting the code does not
expect, no settings file in another encoding, no capability the kernel does not know."""

from __future__ import annotations

import sys
import unicodedata
from pathlib import Path

import pytest

from coldfront_launch.coldfront import env as siteenv
from coldfront_launch.config import resources, security
from coldfront_launch.config import validate as v
from coldfront_launch.config.settings import read_toml, settings_from_mapping
from coldfront_launch.errors import ConfigError
from coldfront_launch.lifecycle.launcher import Launcher

#: One of each kind: Unicode separators, NEL, the ASCII line breaks, the file/group/record
#: separators, a C0 and a C1 control, DEL.
SPLITTERS = ["\u2028", "\u2029", "\x85", "\f", "\v", "\r", "\n", "\x1c", "\x1d", "\x1e",
             "\x07", "\x9b", "\x7f", "\t"]


def test_the_predicate_covers_every_line_splitter_and_control() -> None:
    """Whatever str.splitlines splits at, and every Cc character, is unsafe."""
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        splits = len(f"a{char}b".splitlines()) > 1
        if splits or unicodedata.category(char) in ("Cc", "Cs"):
            assert v.unsafe_character(f"ok{char}") == char, hex(code)
    assert v.unsafe_character("Zentrum für Höchstleistungsrechnen é ü 中心") == ""


def test_safe_text_names_the_setting_and_the_character_never_the_value() -> None:
    with pytest.raises(ConfigError) as err:
        v.safe_text("coldfront.center_name", "x\u2028SECRET_KEY=chosen", "env files")
    assert str(err.value) == ("coldfront.center_name: contains a line break, U+2028 (LINE "
                              "SEPARATOR), which splits lines in env files")
    assert "SECRET_KEY" not in str(err.value) + err.value.hint


@pytest.mark.parametrize("char", SPLITTERS, ids=[f"U+{ord(c):04X}" for c in SPLITTERS])
def test_coldfront_value_cannot_add_a_line_to_the_env_file(char: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings_from_mapping({"coldfront": {"center_name": f"x{char}SECRET_KEY=chosen"}})
    assert err.value.setting == "coldfront.center_name"
    assert f"U+{ord(char):04X}" in str(err.value)
    assert len(str(err.value).splitlines()) == 1


def _existing(tmp_path: Path, name: str) -> str:
    (tmp_path / name).write_text("x")
    return str(tmp_path / name)


# (setting named in the error, the raw settings with U+2028 in that one value)
STRING_SETTINGS = [
    ("image", lambda t: {"image": f"{t}/a\u2028.sif"}),
    ("state_root", lambda t: {"state_root": f"{t}/s\u2028"}),
    ("binds[0]", lambda t: {"binds": [f"{t}\u2028:/x"]}),
    ("binds[0]", lambda t: {"binds": [f"{t}:/x\u2028"]}),
    ("hooks[0]", lambda t: {"hooks": ["bridge\u2028"]}),
    ("build.layers[0]", lambda t: {"build": {"layers": ["coldfront\u2028"]}}),
    ("build.cache_dir", lambda t: {"build": {"cache_dir": f"{t}/c\u2028"}}),
    ("build.definitions_dir", lambda t: {"build": {"definitions_dir": f"{t}/d\u2028"}}),
    ("build.ca_bundle", lambda t: {"build": {"ca_bundle": f"{t}/ca\u2028.pem"}}),
    ("build.binds[0]", lambda t: {"build": {"binds": [f"{t}\u2028"]}}),
    ("hook.'a\\u2028b'", lambda t: {"hook": {"a\u2028b": {}}}),
    ("'x\\u2028y'", lambda t: {"x\u2028y": 1}),
    ("security.drop_capabilities[0]", lambda t: {"security": {"drop_capabilities":
                                                              ["CAP_SYS_TIME\u2028"]}}),
    ("coldfront.time_zone", lambda t: {"coldfront": {"time_zone": "UTC\u2028"}}),
    ("coldfront.allowed_hosts[0]", lambda t: {"coldfront": {"allowed_hosts":
                                                            ["[fe80::1%a\u2028b]"]}}),
    ("coldfront.url", lambda t: {"coldfront": {"url": "https://a.example.org\u2028"}}),
    ("coldfront.trusted_proxies[0]", lambda t: {"coldfront": {"trusted_proxies":
                                                              ["fe80::%a\u2028/64"]}}),
    ("coldfront.database_url", lambda t: {"coldfront": {"database_url": "psql://h/d\u2028"}}),
    ("coldfront.database_url_file", lambda t: {"coldfront": {"database_url_file":
                                                             f"{t}/u\u2028"}}),
    ("coldfront.email.host", lambda t: {"coldfront": {"email": {"host": "smtp\u2028"}}}),
    ("coldfront.email.sender", lambda t: {"coldfront": {"email": {"sender": "a@b\u2028"}}}),
    ("coldfront.email.user", lambda t: {"coldfront": {"email": {"user": "u\u2028"}}}),
    ("coldfront.email.password_file", lambda t: {"coldfront": {"email": {
        "password_file": f"{t}/p\u2028"}}}),
    ("coldfront.extra_env.PROJECT", lambda t: {"coldfront": {"extra_env": {
        "PROJECT": "a\u2028b"}}}),
    ("coldfront.extra_env.'A\\u2028B'", lambda t: {"coldfront": {"extra_env": {
        "A\u2028B": "x"}}}),
    ("coldfront.extra_env_files.TOKEN", lambda t: {"coldfront": {"extra_env_files": {
        "TOKEN": f"{t}/t\u2028"}}}),
    ("coldfront.tls.certificate", lambda t: {"coldfront": {"tls": {
        "certificate": f"{t}/c\u2028.pem", "key": f"{t}/k.pem"}}}),
]


@pytest.mark.parametrize(("setting", "raw"), STRING_SETTINGS,
                         ids=[f"{s}-{i}" for i, (s, _) in enumerate(STRING_SETTINGS)])
def test_every_string_setting_refuses_a_line_separator(tmp_path: Path, setting: str,
                                                       raw) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as err:
        settings_from_mapping(raw(tmp_path))
    assert err.value.setting == setting, str(err.value)
    # a value: the character named; a key: shown escaped (its repr)
    assert "U+2028 (LINE SEPARATOR)" in str(err.value) or "\\u2028" in str(err.value)
    assert len(str(err.value).splitlines()) == 1


@pytest.mark.parametrize(("section", "value", "setting"), [
    ("cni_config_dir", "/etc/cni\u2028", "hook.bridge.cni_config_dir"),
    ("external_interface", "eth\u20280", "hook.bridge.external_interface"),
    ("bridge", "br\x85", "hook.bridge.bridge"),
])
def test_bridge_strings_refuse_line_separators(make_settings, section: str, value: str,  # type: ignore[no-untyped-def]
                                               setting: str) -> None:
    with pytest.raises(ConfigError) as err:
        Launcher(make_settings(hook={"bridge": {section: value}})).plan()
    assert err.value.setting == setting and "contains a line break" in str(err.value)


def test_override_units_refuse_line_separators(make_settings) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(hooks=["override"], hook={"override": {
        "netns_path": "/proc/self/ns/net", "disable_units": ["a.service\u2029"]}})
    with pytest.raises(ConfigError) as err:
        Launcher(settings).plan()
    assert err.value.setting == "hook.override.disable_units[0]"
    assert "U+2029 (PARAGRAPH SEPARATOR)" in str(err.value)


def test_command_line_values_are_checked_too(tmp_path: Path) -> None:
    settings = settings_from_mapping({"state_root": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"^image: contains the byte 0x80, which is not"):
        settings.with_overrides(image=f"{tmp_path}/a\udc80.sif")
    with pytest.raises(ConfigError, match=r"^state_root: contains a line break, U\+0085"):
        settings.with_overrides(state_root=f"{tmp_path}/x\x85y")


@pytest.mark.parametrize("text", ["one\u2028SECRET_KEY=chosen\n", "a\x0bb", "a\x1eb\n"])
def test_secret_file_with_a_line_splitter_is_refused_unseen(tmp_path: Path, text: str) -> None:
    secret = tmp_path / "secret"
    secret.write_text(text)
    with pytest.raises(ConfigError) as err:
        siteenv.read_secret("coldfront.email.password_file", secret)
    assert "contains a line break" in str(err.value) and "SECRET_KEY" not in str(err.value)


def test_env_values_checked_where_they_are_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """What no setting gives (the host's own name) is checked before the env file too."""
    monkeypatch.setattr(siteenv, "host_names", lambda: ["localhost", "evil\u2028DEBUG=True"])
    with pytest.raises(ConfigError) as err:
        siteenv.values(settings_from_mapping({}))
    assert str(err.value).startswith("ColdFront's ALLOWED_HOSTS: contains a line break")


# --- paths Apptainer's --bind would split -----------------------------------------------

@pytest.mark.parametrize(("raw", "setting", "char"), [
    ({"state_root": "/var/lib/cf,launch"}, "state_root", ","),
    ({"state_root": "/var/lib/cf:launch"}, "state_root", ":"),
    ({"build": {"cache_dir": "/var/cache/cf:launch"}}, "build.cache_dir", ":"),
    ({"binds": ["/srv/a,b:/x"]}, "binds[0]", ","),
])
def test_paths_that_bind_refuse_apptainers_separators(raw: dict, setting: str,  # type: ignore[type-arg]
                                                      char: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings_from_mapping(raw)
    assert err.value.setting == setting
    assert f"contains {char!r}, which Apptainer's --bind reads as a separator" in str(err.value)


def test_ca_bundle_with_a_comma_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^build\.ca_bundle: .* contains ','"):
        settings_from_mapping({"build": {"ca_bundle": _existing(tmp_path, "ca,x.pem")}})


def test_state_root_override_with_a_colon_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^state_root: .* contains ':'"):
        settings_from_mapping({}).with_overrides(state_root=f"{tmp_path}/a:b")


# --- TOML files: integers, nesting, encodings ------------------------------------------

NESTED = "a = " + "[" * 10000 + "]" * 10000 + "\n"
TOML_FAILURES = [
    ("int-400", ("ready_timeout = 1" + "0" * 399 + "\n").encode(),
     "ready_timeout: a whole number of 400 digits is beyond the 64-bit range"),
    ("int-5000", ("stop_timeout = " + "9" * 5000 + "\n").encode(),
     "is beyond the 64-bit range of TOML integers"),
    ("int-2^63", b"[hook.bridge]\nmtu = 9223372036854775808\n",
     "hook.bridge.mtu: 9223372036854775808 is beyond the 64-bit range"),
    ("int-negative", b"[resources]\npids = -9223372036854775809\n", "resources.pids: "),
    ("nested-arrays-10000", NESTED.encode(), "invalid TOML: arrays or tables nested too"),
    ("nested-tables-10000", ("a = " + "{b = " * 10000 + "1" + "}" * 10000 + "\n").encode(),
     "invalid TOML: arrays or tables nested too"),
    ("nested-arrays-40", ("a = " + "[" * 40 + "]" * 40 + "\n").encode(),
     "nested more than 32 levels deep"),
    ("dotted-keys-40", (".".join(["k"] * 40) + " = 1\n").encode(),
     "nested more than 32 levels deep"),
    ("utf-16-le", 'name = "x"\n'.encode("utf-16"),
     "is not UTF-8 (it starts with a UTF-16 byte-order mark)"),
    ("utf-16-be", b"\xfe\xff" + 'name = "x"\n'.encode("utf-16-be"),
     "is not UTF-8 (it starts with a UTF-16 byte-order mark)"),
    ("utf-32", 'name = "x"\n'.encode("utf-32"),
     "is not UTF-8 (it starts with a UTF-32 byte-order mark)"),
    ("utf-16-no-bom", 'name = "x"\n'.encode("utf-16-le"), "it holds NUL bytes"),
    ("latin-1", '# Zentrum\ncenter = "Universität"\n'.encode("latin-1"),
     "is not UTF-8 (byte 0xe4 on line 2; Latin-1"),
    ("syntax", b"name = \n", "invalid TOML: "),
]


@pytest.mark.parametrize(("raw", "text"), [c[1:] for c in TOML_FAILURES],
                         ids=[c[0] for c in TOML_FAILURES])
def test_every_bad_settings_file_is_a_config_error(tmp_path: Path, raw: bytes,
                                                   text: str) -> None:
    config = tmp_path / "c.toml"
    config.write_bytes(raw)
    with pytest.raises(ConfigError) as err:
        read_toml(config)
    assert str(err.value).startswith(f"{config}: ") and text in str(err.value), str(err.value)
    assert len(str(err.value).splitlines()) == 1 and len(str(err.value)) < 400


def test_utf8_bom_and_64_bit_integers_are_fine(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_bytes(b"\xef\xbb\xbfname = \"cf\"\n[resources]\npids = 9223372036854775807\n")
    assert read_toml(config) == {"name": "cf", "resources": {"pids": 2 ** 63 - 1}}
    config.write_text("a = " + "[" * 30 + "]" * 30 + "\n")
    assert "a" in read_toml(config)


@pytest.mark.parametrize("check", [
    lambda: v.positive_number("ready_timeout", 10 ** 400),
    lambda: v.positive_number("ready_timeout", 1e300),
    lambda: v.interval("drift_check_interval", 10 ** 400),
    lambda: v.whole_number("hook.bridge.mtu", 10 ** 400, 576, 9216),
    lambda: v.port("hook.bridge.ports[0]", "1" * 5000),
    lambda: v.port_map("hook.bridge.ports[0]", "1" * 5000 + ":80"),
    lambda: v.port("hook.bridge.ports[0]", 10 ** 5000),
    lambda: resources.memory("resources.memory", "1" * 400 + "G"),
    lambda: resources.memory("resources.memory", 10 ** 400),
    lambda: resources.cpus("resources.cpus", 10 ** 400),
    lambda: settings_from_mapping({"stop_timeout": 10 ** 400}),
], ids=["timeout-int", "timeout-float", "interval", "whole", "port-digits", "port-map",
        "port-int", "memory-digits", "memory-int", "cpus", "settings"])
def test_huge_numbers_are_config_errors_with_a_short_message(check) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as err:
        check()
    assert len(str(err.value)) < 200, str(err.value)


# --- capabilities: the kernel's names ---------------------------------------------------

def _kernel(tmp_path: Path, last: str) -> Path:
    (tmp_path / "cap_last_cap").write_text(last)
    return tmp_path / "cap_last_cap"


def test_the_table_is_linuxs_numbering() -> None:
    names = security.CAPABILITIES
    assert (names.index("CAP_CHOWN"), names.index("CAP_SYS_ADMIN"), names.index("CAP_BPF"),
            names.index("CAP_CHECKPOINT_RESTORE")) == (0, 21, 39, 40)
    assert len(set(names)) == len(names) == 41
    assert set(security.DEFAULT_DROP) <= set(names)


@pytest.mark.parametrize(("name", "message", "hint"), [
    ("CAP_SYS_MODUL", "'CAP_SYS_MODUL' is not a capability Linux knows",
     "did you mean CAP_SYS_MODULE?"),
    ("CAP_NET_RAWW", "is not a capability Linux knows", "CAP_NET_RAW"),
    ("CAP_FOO", "'CAP_FOO' is not a capability Linux knows", "man 7 capabilities"),
    ("sys_time", "'sys_time' is not a capability name", "CAP_SYS_TIME"),
    ("cap_sys_admin", "CAP_SYS_ADMIN cannot be dropped", "sandboxing"),
])
def test_unknown_capability_is_refused_by_name(name: str, message: str, hint: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings_from_mapping({"security": {"drop_capabilities": ["CAP_SYS_TIME", name]}})
    assert err.value.setting == "security.drop_capabilities[1]"
    assert message in str(err.value) and hint in err.value.hint


def test_capabilities_in_any_case_are_upper_cased() -> None:
    settings = settings_from_mapping({"security": {"drop_capabilities": [
        "cap_sys_time", "Cap_Net_Raw", "CAP_SYS_TIME"]}})
    assert settings.security.drop_capabilities == ("CAP_SYS_TIME", "CAP_NET_RAW")


def test_an_older_kernel_knows_fewer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(security, "CAP_LAST_CAP", _kernel(tmp_path, "37\n"))
    assert security.kernel_capabilities()[-1] == "CAP_AUDIT_READ"
    with pytest.raises(ConfigError) as err:
        settings_from_mapping({"security": {"drop_capabilities": ["CAP_BPF"]}})
    assert "'CAP_BPF' is not a capability this kernel (it knows 38, up to CAP_AUDIT_READ)" \
        in str(err.value)
    dropped = settings_from_mapping({}).security.drop_capabilities
    assert "CAP_SYS_MODULE" in dropped and not {"CAP_BPF", "CAP_PERFMON",
                                                "CAP_CHECKPOINT_RESTORE"} & set(dropped)


def test_unreadable_cap_last_cap_means_the_whole_table(tmp_path: Path) -> None:
    assert security.kernel_capabilities(tmp_path / "none") == security.CAPABILITIES
    assert security.kernel_capabilities(_kernel(tmp_path, "junk")) == security.CAPABILITIES
    assert security.kernel_capabilities(_kernel(tmp_path, "45")) == security.CAPABILITIES
