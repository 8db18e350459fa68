"""Bad input, the way admins type it: every case is refused before anything changes.

Each case runs the real CLI in a sandbox network namespace (so a setting that slipped
through could only touch that namespace), with the fake apptainer at the process boundary,
and checks: the exit code, one line that names the setting, a hint, no traceback, and that
the state root, the namespace's firewall, links, routes and sysctls are as they were.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from coldfront_launch.testing import FakeApptainer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creates a network namespace")

OVERRIDE = 'hooks = ["override"]\n'
# This sandbox cannot open /proc/1/ns/net (a real host can): name the namespace.
SELF_NS = 'netns_path = "/proc/self/ns/net"\n'
# (id, command-line after the global options, settings file or None, exit code, text)
CASES: list[tuple[str, list[str], str | None, int, str]] = [
    # --- command-line flags -------------------------------------------------------------
    ("name-dotdot", ["--name", "..", "plan"], None, 2, "name: '..' is not a valid"),
    ("name-dot", ["--name", ".", "start"], None, 2, "name: '.' is not a valid"),
    ("name-slash", ["--name", "a/b", "plan"], None, 2, "name: 'a/b'"),
    ("name-newline", ["--name", "cf\n", "plan"], None, 2, "name: 'cf\\n'"),
    ("name-dash-first", ["--name=-cf", "plan"], None, 2, "name: '-cf'"),
    ("name-too-long", ["--name", "c" * 64, "plan"], None, 2, "name: 'cccc"),
    ("name-empty", ["--name", "", "plan"], None, 2, "name: ''"),
    ("name-after-command", ["stop", "--name", "bad name"], None, 2, "name: 'bad name'"),
    ("state-root-is-file", ["--state-root", "{file}", "plan"], None, 2, "state_root:"),
    ("config-is-dir", ["--config", "{dir}", "plan"], None, 2, "--config: {dir} is a directory"),
    ("config-missing", ["--config", "{tmp}/nope.toml", "plan"], None, 2, "does not exist"),
    ("hook-unknown", ["plan", "--hook", "nat"], None, 2, "unknown hook 'nat'"),
    ("hook-empty", ["plan", "--hook", ""], None, 2, "hooks[0]: '' is not a plugin name"),
    ("hooks-conflict", ["plan", "--hook", "bridge", "--hook", "override"], None, 2,
     "both set up the network"),
    ("image-missing", ["start", "--image", "{tmp}/none.sif"], None, 2, "image:"),
    ("image-is-dir", ["start", "--image", "{dir}"], None, 2, "image: {dir} is not a file"),
    ("build-bind-missing", ["build", "--bind", "{tmp}/nope:/x"], None, 2, "build.binds[0]"),
    ("build-bind-shape", ["build", "--bind", "{dir}:/x:y:z"], None, 2, "build.binds[0]"),
    ("build-bind-relative-dst", ["build", "--bind", "{dir}:x"], None, 2, "build.binds[0]"),
    ("build-ca-missing", ["build", "--ca-bundle", "{tmp}/ca.pem"], None, 2,
     "build.ca_bundle"),
    ("build-ca-dir", ["build", "--ca-bundle", "{dir}"], None, 2, "build.ca_bundle"),
    ("build-layer-unknown", ["build", "--layer", "no-such-layer"], None, 2, "no-such-layer"),
    ("exec-bad-name", ["exec", "bad name", "--", "true"], None, 2, "NAME: 'bad name'"),
    # --- the settings file: top level -------------------------------------------------
    ("toml-syntax", ["plan"], "name = \n", 2, "invalid TOML"),
    ("workers-zero", ["start"], "[coldfront]\nworkers = 0\n", 2, "coldfront.workers: 0"),
    ("url-no-scheme", ["start"], '[coldfront]\nurl = "portal"\n', 2, "coldfront.url: 'portal'"),
    ("proxy-not-cidr", ["start"], '[coldfront]\ntrusted_proxies = ["lb.example.org"]\n', 2,
     "coldfront.trusted_proxies[0]: 'lb.example.org' is not a CIDR"),
    ("memory-lots", ["start"], '[resources]\nmemory = "lots"\n', 2,
     "resources.memory: 'lots' is not an amount of memory"),
    ("name-int", ["plan"], "name = 5\n", 2, "name: 5"),
    ("name-toml-dotdot", ["start"], 'name = ".."\n', 2, "name: '..'"),
    ("hooks-string", ["plan"], 'hooks = "bridge"\n', 2, "hooks: 'bridge'"),
    ("hooks-empty", ["plan"], "hooks = []\n", 2, "hooks: at least one"),
    ("hooks-int", ["plan"], "hooks = [1]\n", 2, "hooks: [1]"),
    ("state-root-int", ["plan"], "state_root = 5\n", 2, "state_root: 5"),
    ("state-root-empty", ["plan"], 'state_root = ""\n', 2, "state_root: ''"),
    ("timeout-nan", ["plan"], "ready_timeout = nan\n", 2, "ready_timeout: nan"),
    ("timeout-inf", ["start"], "ready_timeout = inf\n", 2, "ready_timeout: inf"),
    ("timeout-negative", ["plan"], "ready_timeout = -1\n", 2, "ready_timeout: -1"),
    ("timeout-string", ["plan"], 'ready_timeout = "10"\n', 2, "ready_timeout: '10'"),
    ("timeout-bool", ["plan"], "ready_timeout = true\n", 2, "ready_timeout: True"),
    ("drift-negative", ["plan"], "drift_check_interval = -1\n", 2, "drift_check_interval: -1"),
    ("drift-string", ["run"], 'drift_check_interval = "30"\n', 2, "drift_check_interval: '30'"),
    ("drift-inf", ["plan"], "drift_check_interval = inf\n", 2, "drift_check_interval: inf"),
    ("path-space", ["plan"], 'readiness_path = "/user login"\n', 2, "readiness_path:"),
    ("path-relative", ["plan"], 'readiness_path = "user/login"\n', 2, "readiness_path:"),
    ("path-int", ["plan"], "readiness_path = 5\n", 2, "readiness_path: 5"),
    ("tmpfs-string", ["plan"], 'writable_tmpfs = "yes"\n', 2, "writable_tmpfs:"),
    ("binds-missing", ["plan"], 'binds = ["/nonexistent-cf:/x"]\n', 2, "binds[0]"),
    ("binds-string", ["plan"], 'binds = "x"\n', 2, "binds: 'x'"),
    ("top-typo", ["plan"], "ready_timout = 5\n", 2, "ready_timout: unknown setting"),
    ("build-not-table", ["plan"], "build = 5\n", 2, "build: must be a table"),
    ("build-layers-empty", ["plan"], "[build]\nlayers = []\n", 2, "build.layers"),
    ("build-cache-file", ["plan"], '[build]\ncache_dir = "{file}"\n', 2, "build.cache_dir"),
    ("build-fakeroot-int", ["plan"], "[build]\nfakeroot = 1\n", 2, "build.fakeroot: 1"),
    ("build-typo", ["plan"], "[build]\nlayer = []\n", 2, "build.layer: unknown"),
    ("hook-not-table", ["plan"], "hook = 5\n", 2, "hook: must hold"),
    ("hook-section-unknown", ["plan"], "[hook.nat]\nx = 1\n", 2,
     "hook.nat: no plugin named 'nat'"),
    # --- [hook.bridge] ------------------------------------------------------------------
    ("bridge-typo", ["plan"], "[hook.bridge]\nport = [80]\n", 2, "hook.bridge.port: unknown"),
    ("bridge-ports-empty", ["plan"], "[hook.bridge]\nports = []\n", 2, "hook.bridge.ports"),
    ("bridge-port-zero", ["plan"], "[hook.bridge]\nports = [0]\n", 2,
     "hook.bridge.ports[0]: port 0"),
    ("bridge-port-half", ["plan"], '[hook.bridge]\nports = ["8080:"]\n', 2,
     "hook.bridge.ports[0]"),
    ("bridge-port-arabic", ["plan"], '[hook.bridge]\nports = ["\u0668\u0660"]\n', 2,
     "hook.bridge.ports[0]"),
    ("bridge-port-float", ["plan"], "[hook.bridge]\nports = [80.0]\n", 2,
     "hook.bridge.ports[0]: 80.0"),
    ("bridge-port-twice", ["plan"], '[hook.bridge]\nports = [80, "80:8080"]\n', 2,
     "listed twice"),
    ("bridge-subnet-loopback", ["plan"], '[hook.bridge]\nsubnet = "127.0.0.0/8"\n', 2,
     "loopback"),
    ("bridge-subnet-linklocal", ["plan"], '[hook.bridge]\nsubnet = "169.254.0.0/16"\n', 2,
     "link-local"),
    ("bridge-subnet-multicast", ["plan"], '[hook.bridge]\nsubnet = "224.0.0.0/4"\n', 2,
     "multicast"),
    ("bridge-subnet-hostbits", ["plan"], '[hook.bridge]\nsubnet = "10.22.0.1/16"\n', 2,
     "hook.bridge.subnet"),
    ("bridge-subnet-small", ["plan"], '[hook.bridge]\nsubnet = "10.22.0.0/30"\n', 2,
     "too small"),
    ("bridge-ip-outside", ["plan"], '[hook.bridge]\nsubnet = "10.22.0.0/16"\nip = "10.23.0.5"\n',
     2, "not inside"),
    ("bridge-ip-unfixed-subnet", ["plan"], '[hook.bridge]\nip = "10.22.0.5"\n', 2,
     "a fixed address needs a fixed subnet"),
    ("bridge-ip-gateway", ["plan"], '[hook.bridge]\nsubnet = "10.22.0.0/16"\nip = "10.22.0.1"\n',
     2, "gateway"),
    ("bridge-ip-int", ["plan"], '[hook.bridge]\nsubnet = "10.22.0.0/16"\nip = 5\n', 2,
     "hook.bridge.ip: 5"),
    ("bridge-name-long", ["plan"], f'[hook.bridge]\nbridge = "{"b" * 16}"\n', 2,
     "Linux allows 15"),
    ("bridge-name-bytes", ["plan"], '[hook.bridge]\nbridge = "\u00e9\u00e9\u00e9\u00e9\u00e9'
     '\u00e9\u00e9\u00e9"\n', 2, "16 bytes"),
    ("bridge-name-dotdot", ["plan"], '[hook.bridge]\nbridge = ".."\n', 2,
     "hook.bridge.bridge: '..'"),
    ("bridge-name-space", ["plan"], '[hook.bridge]\nbridge = "a b"\n', 2, "hook.bridge.bridge"),
    ("bridge-name-host-nic", ["plan"], '[hook.bridge]\nbridge = "lo"\n', 2,
     "lo is an existing"),
    ("bridge-network-path", ["plan"], '[hook.bridge]\nnetwork = "../x"\n', 2,
     "hook.bridge.network"),
    ("bridge-network-dotdot", ["plan"], '[hook.bridge]\nnetwork = ".."\n', 2,
     "hook.bridge.network"),
    ("bridge-mtu-nan", ["plan"], "[hook.bridge]\nmtu = nan\n", 2, "hook.bridge.mtu: nan"),
    ("bridge-mtu-small", ["plan"], "[hook.bridge]\nmtu = 100\n", 2, "hook.bridge.mtu: 100"),
    ("bridge-cni-dir-file", ["start"], '[hook.bridge]\ncni_config_dir = "{file}"\n', 2,
     "hook.bridge.cni_config_dir: {file} is not a directory"),
    ("bridge-offloads-string", ["plan"], '[hook.bridge]\noffloads = "no"\n', 2,
     "hook.bridge.offloads"),
    ("bridge-external-slash", ["plan"], '[hook.bridge]\nexternal_interface = "x/y"\n', 2,
     "hook.bridge.external_interface"),
    # --- [hook.override] ----------------------------------------------------------------
    ("override-ports-empty", ["start"], OVERRIDE + "[hook.override]\nports = []\n" + SELF_NS,
     2, "hook.override.ports"),
    ("override-port-mapped", ["plan"],
     OVERRIDE + '[hook.override]\nports = ["8080:80"]\n' + SELF_NS, 2,
     "hook.override.ports[0]: 8080:80 maps a port"),
    ("override-netns-file", ["plan"], OVERRIDE + '[hook.override]\nnetns_path = "{file}"\n',
     2, "is not a network namespace"),
    ("override-netns-missing", ["plan"], OVERRIDE +
     '[hook.override]\nnetns_path = "/nonexistent/ns"\n', 2, "hook.override.netns_path"),
    ("override-netraw-string", ["plan"],
     OVERRIDE + '[hook.override]\nkeep_net_raw = "x"\n' + SELF_NS, 2,
     "hook.override.keep_net_raw"),
    ("override-unit-bare", ["plan"],
     OVERRIDE + '[hook.override]\ndisable_units = ["foo"]\n' + SELF_NS, 2,
     "hook.override.disable_units[0]"),
    ("override-unit-path", ["plan"], OVERRIDE +
     '[hook.override]\ndisable_units = ["../x.service"]\n' + SELF_NS, 2, "disable_units[0]"),
    # --- [coldfront] --------------------------------------------------------------------
    ("coldfront-unknown-key", ["plan"], '[coldfront]\ncenter = "x"\n', 2,
     "coldfront.center: unknown setting"),
    ("coldfront-debug", ["start"], "[coldfront]\ndebug = true\n", 2, "coldfront.debug:"),
    ("coldfront-hosts-star", ["start"], '[coldfront]\nallowed_hosts = ["*"]\n', 2,
     "coldfront.allowed_hosts[0]: '*'"),
    ("coldfront-plugin-unknown", ["plan"], '[coldfront]\nplugins = ["slurmm"]\n', 2,
     "coldfront.plugins[0]: 'slurmm' is not a ColdFront plugin"),
    ("coldfront-email-table", ["plan"], '[coldfront]\nemail = "smtp"\n', 2,
     "coldfront.email: must be a table"),
    ("coldfront-password-missing", ["start"],
     '[coldfront.email]\npassword_file = "{tmp}/nope"\n', 2,
     "coldfront.email.password_file: {tmp}/nope does not exist"),
    ("coldfront-db-url-file-scheme", ["plan"], '[coldfront]\ndatabase_url_file = "{file}"\n',
     2, "coldfront.database_url_file: {file}: the URL's scheme '(none)'"),
    ("coldfront-extra-managed", ["plan"], '[coldfront.extra_env]\nDB_URL = "x"\n', 2,
     "coldfront.extra_env.DB_URL: DB_URL is set by cf-launch"),
    ("coldfront-tls-missing-key", ["plan"], '[coldfront.tls]\ncertificate = "{file}"\n', 2,
     "coldfront.tls: missing key"),
    # --- characters a reader splits lines at, controls (issue 26) ------------------------
    ("coldfront-u2028-secret-key", ["start"],
     '[coldfront]\ncenter_name = "x\u2028SECRET_KEY=chosen"\n', 2,
     "coldfront.center_name: contains a line break, U+2028 (LINE SEPARATOR), which splits "
     "lines in env files"),
    ("coldfront-u2029-escaped", ["plan"], '[coldfront]\ncenter_name = "x\\u2029y"\n', 2,
     "coldfront.center_name: contains a line break, U+2029 (PARAGRAPH SEPARATOR)"),
    ("coldfront-nel-email-host", ["start"],
     '[coldfront.email]\nhost = "smtp\\u0085DEBUG=True"\n', 2,
     "coldfront.email.host: contains a line break, U+0085 (NEXT LINE)"),
    ("coldfront-formfeed-sender", ["plan"], '[coldfront.email]\nsender = "a\\fb"\n', 2,
     "coldfront.email.sender: contains a line break, U+000C (FORM FEED)"),
    ("coldfront-vt-extra-env", ["plan"], '[coldfront.extra_env]\nPROJECT = "a\\u000bb"\n', 2,
     "coldfront.extra_env.PROJECT: contains a line break, U+000B (LINE TABULATION)"),
    ("coldfront-fs-time-zone", ["plan"], '[coldfront]\ntime_zone = "UTC\\u001c"\n', 2,
     "coldfront.time_zone: contains a line break, U+001C (FILE SEPARATOR)"),
    ("coldfront-c1-url", ["plan"], '[coldfront]\nurl = "https://a.example.org\\u009b"\n', 2,
     "coldfront.url: contains a control character, U+009B"),
    ("coldfront-del-center", ["plan"], '[coldfront]\ncenter_name = "a\\u007f"\n', 2,
     "coldfront.center_name: contains a control character, U+007F (DELETE)"),
    ("coldfront-host-ipv6-scope", ["start"],
     '[coldfront]\nallowed_hosts = ["[fe80::1%a\\u2028b]"]\n', 2,
     "coldfront.allowed_hosts[0]: contains a line break, U+2028"),
    ("image-u2028", ["start", "--image", "{tmp}/a\u2028.sif"], None, 2,
     "image: contains a line break, U+2028"),
    ("binds-u2028", ["plan"], 'binds = ["{dir}\\u2028:/x"]\n', 2,
     "binds[0]: contains a line break, U+2028"),
    ("hooks-nel", ["plan"], 'hooks = ["bridge\\u0085"]\n', 2,
     "hooks[0]: contains a line break, U+0085 (NEXT LINE)"),
    ("build-layer-nul", ["plan"], '[build]\nlayers = ["coldfront\\u0000"]\n', 2,
     "build.layers[0]: contains a control character, U+0000 (NUL)"),
    ("bridge-cni-dir-u2028", ["plan"], '[hook.bridge]\ncni_config_dir = "/etc\\u2028"\n', 2,
     "hook.bridge.cni_config_dir: contains a line break, U+2028"),
    ("override-unit-u2029", ["plan"],
     OVERRIDE + '[hook.override]\ndisable_units = ["a.service\\u2029"]\n' + SELF_NS, 2,
     "hook.override.disable_units[0]: contains a line break, U+2029"),
    ("key-u2028", ["plan"], '"a\\u2028b" = 1\n', 2, "'a\\u2028b': unknown setting"),
    # --- numbers, nesting and encodings of the file ------------------------------------
    ("int-400-digits", ["plan"], "ready_timeout = 1" + "0" * 399 + "\n", 2,
     "{tmp}/c.toml: ready_timeout: a whole number of 400 digits is beyond the 64-bit"),
    ("int-5000-digits", ["start"], "stop_timeout = " + "9" * 5000 + "\n", 2,
     "is beyond the 64-bit range of TOML integers"),
    ("int-port-huge", ["plan"], "[hook.bridge]\nports = [99999999999999999999]\n", 2,
     "{tmp}/c.toml: hook.bridge.ports[0]: 99999999999999999999 is beyond"),
    ("port-5000-digits", ["plan"], '[hook.bridge]\nports = ["' + "1" * 5000 + '"]\n', 2,
     "hook.bridge.ports[0]: '1111"),
    ("memory-400-digits", ["start"], '[resources]\nmemory = "' + "1" * 400 + 'G"\n', 2,
     "more memory than any host has"),
    ("timeout-1e300", ["plan"], "ready_timeout = 1e300\n", 2,
     "ready_timeout: 1e+300 is more than 1e+09"),
    ("toml-nested-10000", ["plan"], "a = " + "[" * 10000 + "]" * 10000 + "\n", 2,
     "{tmp}/c.toml: invalid TOML: arrays or tables nested too deeply"),
    ("toml-nested-40", ["plan"], "a = " + "[" * 40 + "]" * 40 + "\n", 2,
     "nested more than 32 levels deep"),
    ("toml-inline-tables-10000", ["plan"], "a = " + "{{b = " * 10000 + "1" + "}}" * 10000
     + "\n", 2, "{tmp}/c.toml: invalid TOML: arrays or tables nested too deeply"),
    ("config-nul-bytes", ["plan"], 'name = "x"\x00\n', 2,
     "{tmp}/c.toml: is not UTF-8 text (it holds NUL bytes"),
    # --- paths Apptainer's --bind would split ------------------------------------------
    ("state-root-comma", ["--state-root", "{tmp}/a,b", "plan"], None, 2,
     "state_root: {tmp}/a,b contains ',', which Apptainer's --bind reads as a separator"),
    ("state-root-colon-toml", ["plan"], 'state_root = "{tmp}/a:b"\n', 2,
     "state_root: {tmp}/a:b contains ':'"),
    ("build-cache-colon", ["plan"], '[build]\ncache_dir = "{tmp}/c:d"\n', 2,
     "build.cache_dir: {tmp}/c:d contains ':'"),
    ("binds-source-comma", ["plan"], 'binds = ["{tmp}/a,b:/x"]\n', 2,
     "contains ',', which Apptainer's --bind reads as a separator"),
    # --- capabilities: the kernel's names ----------------------------------------------
    ("caps-unknown", ["start"], '[security]\ndrop_capabilities = ["CAP_SYS_MODUL"]\n', 2,
     "security.drop_capabilities[0]: 'CAP_SYS_MODUL' is not a capability Linux knows"),
    ("caps-no-prefix", ["plan"], '[security]\ndrop_capabilities = ["sys_time"]\n', 2,
     "security.drop_capabilities[0]: 'sys_time' is not a capability name"),
    ("caps-admin-lower", ["plan"], '[security]\ndrop_capabilities = ["cap_sys_admin"]\n', 2,
     "security.drop_capabilities[0]: CAP_SYS_ADMIN cannot be dropped"),
    # --- backup --output never clobbers, [backup] keep (issue 26, item 4) ---------------
    ("backup-output-dev-null", ["backup", "--output", "/dev/null"], None, 2,
     "--output: /dev/null is under /dev, the kernel's own files"),
    ("backup-output-proc", ["backup", "--output", "/proc/self/cwd/x.tar.gz"], None, 2,
     "--output: /proc/self/cwd/x.tar.gz is under /proc"),
    ("backup-output-sys", ["backup", "--output", "/sys/x.tar.gz"], None, 2,
     "--output: /sys/x.tar.gz is under /sys"),
    ("backup-output-file-slash", ["backup", "--output", "{file}/"], None, 2,
     "--output: {file}/ names a folder, but {file} is a regular file"),
    ("backup-output-parent-missing", ["backup", "--output", "{tmp}/nope/new/"], None, 2,
     "--output: the folder {tmp}/nope does not exist"),
    ("backup-output-under-file", ["backup", "--output", "{file}/x.tar.gz"], None, 2,
     "--output: {file}/x.tar.gz is under something that is not a folder"),
    ("backup-output-empty", ["backup", "--output", ""], None, 2, "--output: an empty path"),
    ("backup-keep-zero", ["plan"], "[backup]\nkeep = 0\n", 2,
     "backup.keep: 0 is not a whole number from 1 to 1000"),
    ("backup-keep-huge", ["upgrade"], "[backup]\nkeep = 1001\n", 2,
     "backup.keep: 1001 is not a whole number from 1 to 1000"),
    ("backup-keep-string", ["backup"], '[backup]\nkeep = "3"\n', 2,
     "backup.keep: '3' is not a whole number"),
    ("backup-keep-typo", ["plan"], "[backup]\nkeeps = 3\n", 2,
     "backup.keeps: unknown setting"),
    # --- option values before any probe, image a SIF, files read to a bound (issue 26) --
    ("logs-lines-negative", ["logs", "-n", "-5"], None, 2,
     "--lines: -5 is not in the range 1<=x<=1000000"),
    ("logs-lines-word", ["logs", "--lines", "many"], None, 2,
     "--lines: 'many' is not a valid integer"),
    ("run-interval-nan", ["run", "--interval", "nan"], None, 2,
     "--interval: nan is not a number of seconds"),
    ("run-interval-zero", ["run", "--interval", "0"], None, 2,
     "--interval: 0.0 is not in the range 0.1<=x<=3600"),
    ("upgrade-timeout-inf", ["upgrade", "--ready-timeout", "inf"], None, 2,
     "--ready-timeout: inf is not in the range"),
    ("prepare-format-unknown", ["prepare", "--format", "yaml"], None, 2,
     "--format: 'yaml' is not one of 'shell', 'json', 'env'"),
    ("image-text-file", ["start", "--image", "{file}"], None, 2,
     "image: {file} is not a SIF image (no SIF magic number at byte 32; it holds text"),
    ("image-text-file-toml", ["start"], 'image = "{file}"\n', 2,
     "image: {file} is not a SIF image"),
    ("config-dev-zero", ["--config", "/dev/zero", "plan"], None, 2,
     "--config: /dev/zero is a character device, not a regular file"),
    ("admin-password-dev-zero", ["admin", "create", "--username", "a", "--email",
                                 "a@example.org", "--password-file", "/dev/zero"], None, 2,
     "--password-file: /dev/zero is a character device, not a regular file"),
    ("admin-password-dir", ["admin", "create", "--username", "a", "--email", "a@example.org",
                            "--password-file", "{dir}"], None, 2,
     "--password-file: {dir} is a directory, not a regular file"),
    ("secret-dev-zero", ["plan"], '[coldfront.email]\npassword_file = "/dev/zero"\n', 2,
     "coldfront.email.password_file: /dev/zero is not a file"),
]


_serial = itertools.count()


class Namespace:
    """A sandbox network namespace with a default route, like a small host."""

    def __init__(self) -> None:
        self.name = f"cfbad{os.getpid()}{next(_serial)}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        try:
            for argv in (["link", "set", "lo", "up"],
                         ["link", "add", "ext0", "type", "veth", "peer", "name", "ext1"],
                         ["link", "set", "ext0", "up"], ["link", "set", "ext1", "up"],
                         ["addr", "add", "192.0.2.2/24", "dev", "ext0"],
                         ["route", "add", "default", "via", "192.0.2.1"]):
                subprocess.run(["ip", "-n", self.name, *argv], check=True)
        except subprocess.CalledProcessError:
            self.close()
            raise

    def run(self, argv: list[str], timeout_override: float = 60,
            **kw) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
        return subprocess.run(["nsenter", f"--net=/run/netns/{self.name}", *argv],
                              capture_output=True, text=True, timeout=timeout_override, **kw)

    def snapshot(self) -> str:
        return self.run(["sh", "-c", SNAPSHOT]).stdout

    def close(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], check=False)


@pytest.fixture(scope="module")
def netns() -> Iterator[Namespace]:
    ns = Namespace()
    yield ns
    ns.close()


def _tree(path: Path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    return sorted((str(p), p.stat().st_mode) for p in [path, *path.rglob("*")])


# One child process in the sandbox namespace runs every case through cf-launch's own
# main() (what `python -m coldfront_launch.cli` runs), in turn: a fresh environment, working
# folder and plugin manager each, file descriptor 2 captured whole (a child process's
# stderr too), the namespace read before and after each. ~15 ms a case, not ~170 ms of
# interpreter start and imports; test_refused_through_python_m keeps the real entry point.
DRIVER = r"""
import json, os, sys, traceback
from coldfront_launch import plugins
from coldfront_launch.cli import main

SNAPSHOT = sys.argv[2]
def snapshot():
    import subprocess
    return subprocess.run(["sh", "-c", SNAPSHOT], capture_output=True, text=True).stdout

results = {}
for case in json.loads(open(sys.argv[1]).read()):
    before = snapshot()
    os.chdir(case["cwd"])
    os.environ.clear()
    os.environ.update(case["env"])
    plugins.reset()
    sys.argv = ["cf-launch", *case["args"]]
    err_path = os.path.join(case["cwd"], "stderr.txt")
    saved = os.dup(2)
    with open(err_path, "w") as err:
        os.dup2(err.fileno(), 2)
    code = 0
    try:
        main()
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
    results[case["id"]] = {"code": code, "stderr": open(err_path).read(),
                           "namespace_kept": snapshot() == before}
print(json.dumps(results))
"""


def _prepare(tmp_path: Path, argv: list[str], config: str | None
             ) -> tuple[dict[str, str], list[str], dict[str, str]]:
    """The case's folder (a file, a folder, the fake apptainer); its words, argv, env."""
    words = {"tmp": str(tmp_path), "file": str(tmp_path / "a-file"),
             "dir": str(tmp_path / "a-dir")}
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "a-dir").mkdir()
    bindir = tmp_path / "bin"
    # The kit's launchers run the fake with this Python; a symlink to FAKES/apptainer runs
    # `/usr/bin/env python3`, which can be a slow shim (pyenv: ~0.1 s on every call).
    FakeApptainer.create(tmp_path)
    state = tmp_path / "state"
    args = ["--state-root", str(state)]
    if config is not None:
        (tmp_path / "c.toml").write_text(config.format(**words))
        args += ["--config", str(tmp_path / "c.toml")]
    args += [a.format(**words) for a in argv]
    if "{file}" in argv:  # the state root itself is the case
        args = args[2:]
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}",
           "CF_LAUNCH_SYSTEM_CONFIG": str(tmp_path / "none"),
           "FAKE_APPTAINER_STATE": str(tmp_path / "instances.json")}
    return words, args, env


def _check(code: int, text: str, words: dict[str, str], tmp_path: Path, result_code: int,
           stderr: str) -> None:
    lines = stderr.strip().splitlines()
    assert result_code == code, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith("cf-launch: error: ") and text.format(**words) in lines[0], lines
    assert lines[-1].startswith("hint: ") and len(lines) == 2, lines
    assert _tree(tmp_path / "state") == [], "nothing was created under the state root"
    assert _tree(tmp_path / "a-file") == [(str(tmp_path / "a-file"),
                                           (tmp_path / "a-file").stat().st_mode)]
    assert (tmp_path / "a-file").read_text() == "x"


@pytest.fixture(scope="module")
def refusals(netns: Namespace, tmp_path_factory: pytest.TempPathFactory
             ) -> dict[str, tuple[Path, dict[str, str], dict[str, object]]]:
    """Every case, run once in the sandbox namespace: id -> (folder, words, outcome)."""
    import json

    cases, folders = [], {}
    for case_id, argv, config, _code, _text in CASES:
        folder = tmp_path_factory.mktemp("bad")
        words, args, env = _prepare(folder, argv, config)
        folders[case_id] = folder, words
        cases.append({"id": case_id, "args": args, "env": env, "cwd": str(folder)})
    plan = tmp_path_factory.mktemp("bad-driver") / "cases.json"
    plan.write_text(json.dumps(cases))
    before = netns.snapshot()
    run = netns.run([sys.executable, "-c", DRIVER, str(plan), SNAPSHOT], timeout_override=600)
    assert run.returncode == 0 and not run.stderr, run.stdout[-4000:] + run.stderr[-4000:]
    assert netns.snapshot() == before
    outcomes = json.loads(run.stdout)
    return {k: (*folders[k], outcomes[k]) for k in folders}


SNAPSHOT = ("iptables-save | grep -v '^#'; ip -br link; ip route; "
            "cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/conf/*/rp_filter")


@pytest.mark.parametrize(("case_id", "code", "text"), [(c[0], c[3], c[4]) for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_is_refused_before_any_change(refusals, case_id: str, code: int,  # type: ignore[no-untyped-def]
                                                text: str) -> None:
    folder, words, outcome = refusals[case_id]
    _check(code, text, words, folder, outcome["code"], outcome["stderr"])
    assert outcome["namespace_kept"], "the namespace's firewall, links, routes and sysctls"


@pytest.mark.parametrize("case_id", ["name-dotdot", "timeout-inf", "bridge-name-host-nic"])
def test_refused_through_python_m(netns: Namespace, tmp_path: Path, case_id: str) -> None:
    """The same refusal from `python -m coldfront_launch.cli`, a process of its own."""
    [(_id, argv, config, code, text)] = [c for c in CASES if c[0] == case_id]
    words, args, env = _prepare(tmp_path, argv, config)
    before = netns.snapshot()
    result = netns.run([sys.executable, "-m", "coldfront_launch.cli", *args], cwd=tmp_path,
                       env=env)
    _check(code, text, words, tmp_path, result.returncode, result.stderr)
    assert netns.snapshot() == before


def test_at_least_sixty_cases() -> None:
    assert len(CASES) >= 60
