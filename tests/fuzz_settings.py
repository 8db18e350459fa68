"""Random settings files against ``plan`` and ``start`` (fake apptainer): never exit 70,
never a traceback. Run only inside a sandbox network namespace, by test_fuzz_settings.py:

    nsenter --net=/run/netns/NS python -m tests.fuzz_settings WORKDIR EXAMPLES

Paths are drawn only from inside WORKDIR (or are of the wrong type), so no random value
can point cf-launch at this machine's own files.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coldfront_launch.cli import cli
from coldfront_launch.exitcodes import ExitCode
from coldfront_launch.testing.sif import write_minimal_sif

WORK = Path(sys.argv[1]).resolve()
EXAMPLES = int(sys.argv[2])

junk = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                 st.booleans(), st.text(max_size=20), st.lists(st.integers(), max_size=3),
                 st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))
word = st.text(st.characters(codec="utf-8"), max_size=20)


def mostly(good: list[Any], bad: list[Any]) -> st.SearchStrategy[Any]:
    """Usually a valid value (so that deeper code runs), one time in 15 a near miss or
    junk: a whole file is then valid about half the time."""
    wrong = st.one_of(st.sampled_from(bad), junk, word)
    return st.integers(0, 14).flatmap(lambda i: st.sampled_from(good) if i < 14 else wrong)


def in_work(*names: str) -> list[str]:
    return [str(WORK / n) for n in names]


BAD_PATHS = in_work("a-file/below", "x:y", "missing/x") + ["", 5]
PORTS = st.lists(st.integers(0, 14).flatmap(
    lambda i: st.sampled_from([80, 443, 8080, "8443:443", "9"]) if i < 14 else
    st.one_of(st.integers(-5, 70000), word)), min_size=0, max_size=3)
TOP = {
    "name": mostly(["coldfront", "cf-1", "a.b"], ["..", ".", "a/b", "x" * 70, "cf\n"]),
    "image": mostly(in_work("x.sif"), in_work("a-dir", "missing.sif") + BAD_PATHS),
    "hooks": mostly([["bridge"], ["override"], ["bridge", "bridge"]],
                    [[], ["nat"], [""], ["bridge", "override"], "bridge"]),
    "ready_timeout": mostly([1, 0.5, 300], [0, -1, math.nan, math.inf, "10", True]),
    "drift_check_interval": mostly([0, 1, 30, 0.5], [-1, math.nan, math.inf, 86401, "30",
                                                     True]),
    "readiness_path": mostly(["/user/login", "/a?b=c", "/"],
                             ["/user login", "user", "/%zz\n", ""]),
    "writable_tmpfs": mostly([True, False], ["yes", 1]),
    "binds": mostly([[], [f"{WORK / 'a-dir'}:/mnt"]], [[f"{WORK}/missing:/x"], ["a:b:c:d"]]),
}
BUILD = {
    "layers": mostly([["debian-base", "coldfront"]], [[], ["../x"], "coldfront"]),
    "cache_dir": mostly(in_work("cache"), BAD_PATHS),
    "fakeroot": mostly([True, False], [1]),
    "binds": mostly([[]], [[f"{WORK}/missing:/x"], [5]]),
    "ca_bundle": mostly(in_work("a-file"), in_work("a-dir") + BAD_PATHS),
}
BRIDGE = {
    "network": mostly(["cf-launch", "cf.test"], ["..", "a/b", "n" * 80, ""]),
    "bridge": mostly(["sbr9", "cfbr0"], ["lo", "ext0", "..", "a b", "b" * 16,
                                         "\u00e9" * 8]),
    "subnet": mostly(["10.22.0.0/16", "10.77.0.0/24"],
                     ["127.0.0.0/8", "169.254.0.0/16", "10.22.0.1/16", "0.0.0.0/0",
                      "10.22.0.0/30", "255.255.255.255/32", "224.0.0.0/4"]),
    "ip": mostly(["10.22.0.9", ""], ["10.22.0.1", "10.99.0.1", "10.22.0.0"]),
    "ports": st.integers(0, 14).flatmap(lambda i: PORTS if i < 14 else junk),
    "external_interface": mostly(["ext0", ""], ["nope0", "x/y", "lo"]),
    "mtu": mostly([1500, 9000, 576], [0, 20000, math.nan, "1500"]),
    # always given, never empty: the default folder is this machine's /etc
    "cni_config_dir": mostly(in_work("cni"), in_work("a-file") + BAD_PATHS[:3] + [5]),
    "offloads": mostly([True, False], ["no"]),
}
OVERRIDE = {  # netns_path always given: this sandbox cannot open /proc/1/ns/net
    "netns_path": mostly(["/proc/self/ns/net"], in_work("a-file", "missing", "a-dir") + [5]),
    "ports": st.integers(0, 14).flatmap(lambda i: PORTS if i < 14 else junk),
    "keep_net_raw": mostly([True, False], ["x"]),
    "disable_units": mostly([["a.service"], []], [["foo"], ["../x.service"], "a.service"]),
}
SECRET = in_work("a-file")  # its content, "x", is no database URL: refused, never shown
COLDFRONT = {
    "center_name": mostly(["Example Research Computing", ""], ["a\nb", "$X", 5]),
    "allowed_hosts": mostly([["cf.example.org", "198.18.0.1"], [".example.org"], []],
                            [["*"], ["a b"], "x.org", [""]]),
    "time_zone": mostly(["UTC", "Europe/Berlin"], ["../x", "a b"]),
    "debug": mostly([False], [True, "no"]),
    "debug_force": mostly([True, False], ["yes"]),
    "plugins": mostly([[], ["slurm", "api"]], [["nope"], ["freeipa"], ["auth_oidc"], "slurm"]),
    "email": mostly([{}, {"enabled": True, "port": 587, "password_file": SECRET[0]}],
                    [{"port": 0}, {"tls": True}, {"password_file": BAD_PATHS[2]}, "smtp"]),
    "database_url": mostly(["sqlite:////srv/coldfront/data/x.db"],
                           ["mysql://u:p@h/d", "nope", ""]),
    "extra_env": mostly([{}, {"PROJECT_CODE": "CF"}],
                        [{"DB_URL": "x"}, {"lower": "x"}, {"A": "$B"}, "x"]),
}
# Rarely, and never valid: a database URL file holding no URL, a TLS pair that is no PEM.
COLDFRONT_BAD = {
    "database_url_file": st.sampled_from(SECRET + in_work("a-dir") + BAD_PATHS),
    "tls": st.sampled_from([{}, "x", {"certificate": SECRET[0], "key": SECRET[0]}]),
}


def subset(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


def section(fields: dict[str, st.SearchStrategy[Any]], always: str
            ) -> st.SearchStrategy[dict[str, Any]]:
    """A plugin's table; ``always`` is a key whose default must never be used here."""
    return st.fixed_dictionaries({always: fields[always]},
                                 optional={k: v for k, v in fields.items() if k != always})


config = st.builds(lambda top, build, bridge, override, unknown, coldfront: {
    **top, **({"build": build} if build else {}),
    **({"coldfront": coldfront} if coldfront else {}),
    "hook": {"bridge": bridge, **({"override": override} if override else {}), **unknown}},
    subset(TOP), subset(BUILD), section(BRIDGE, "cni_config_dir"),
    section(OVERRIDE, "netns_path"),
    st.integers(0, 14).flatmap(lambda i: st.just({}) if i < 14 else st.dictionaries(
        st.sampled_from(["nat", "Bridge"]), st.just({}), max_size=1)),
    st.integers(0, 14).flatmap(lambda i: subset(COLDFRONT) if i < 4 else
                               subset({**COLDFRONT, **COLDFRONT_BAD}) if i == 4 else
                               st.just({})))


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return '"' + "".join(c if 0x20 <= ord(c) != 0x7f and c not in '"\\' else
                             f"\\u{ord(c):04x}" for c in value) + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{toml_value(str(k))} = {toml_value(v)}"
                           for k, v in value.items()) + "}"


def toml(data: dict[str, Any]) -> str:
    return "".join(f"{k} = {toml_value(v)}\n" for k, v in data.items())


runner = CliRunner()
seen: dict[int, int] = {}


@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(config)
def check(data: dict[str, Any]) -> None:
    path = WORK / "c.toml"
    path.write_text(toml(data))
    base = ["--config", str(path), "--state-root", str(WORK / "state")]
    for command in (["plan"], ["start", "--no-wait"]):
        result = runner.invoke(cli, [*base, *command], catch_exceptions=True)
        code = result.exit_code
        seen[code] = seen.get(code, 0) + 1
        output = result.output
        assert code != ExitCode.INTERNAL and "Traceback" not in output, \
            f"{command} exited {code} on\n{path.read_text()}\n{output}"
        assert result.exception is None or isinstance(result.exception, SystemExit), \
            f"{command} raised {result.exception!r} on\n{path.read_text()}"
        if command[0] == "start" and code == 0:
            stopped = runner.invoke(cli, [*base, "stop"])
            assert stopped.exit_code == 0, stopped.output


if __name__ == "__main__":
    (WORK / "a-file").write_text("x")
    (WORK / "a-dir").mkdir(exist_ok=True)
    write_minimal_sif(WORK / "x.sif")
    os.chdir(WORK)
    check()
    print("exit codes seen:", json.dumps({int(k): v for k, v in sorted(seen.items())}))
