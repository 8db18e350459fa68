"""Drive the real Apptainer test host: commands inside its root file system, network
sandboxes made of namespaces and veth pairs, and snapshots to compare before/after."""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
HOST_DIR = Path(os.environ.get("CF_TESTHOST_DIR", "/var/cache/cf-launch-testhost"))
ROOTFS = HOST_DIR / "rootfs"
SRC = "/src"                       # the working tree, as the test host sees it
VENV = "/opt/cf-launch"            # cf-launch installed from the working tree
WORK = "/var/lib/cf-launch-tests"  # configs and state of the tests, on the rootfs's disk
FOREIGN_CWD = "/opt/site-deploy"   # where cf-launch runs from: a folder absent in the image


class TestHost:
    """The Debian 13 root file system with Apptainer 1.4.5 (tests/host/provision.sh)."""

    def lock(self) -> int:
        """Hold the test host for this run (one lock): two runs never share it at once."""
        HOST_DIR.mkdir(parents=True, exist_ok=True)
        fd = os.open(HOST_DIR / ".run.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    def run(self, argv: list[str], netns: str | None = None, check: bool = True,
            timeout: float = 900, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        if netns is None and "instance start" in " ".join(argv):
            # Apptainer sets up a CNI bridge and rules in the namespace it runs in.
            raise AssertionError("apptainer instance start must run in a sandbox netns")
        cmd = ["nsenter", f"--net=/run/netns/{netns}"] if netns else []
        cmd += [str(HERE / "enter.sh")]
        if env:
            cmd += ["env", *(f"{k}={v}" for k, v in env.items())]
        cmd += argv
        environ = {**os.environ, "CF_TESTHOST_BINDS": f"{ROOT}:{SRC}"}
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                env=environ, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {result.returncode}\n"
                                 f"stdout: {result.stdout[-3000:]}\n"
                                 f"stderr: {result.stderr[-3000:]}")
        return result

    def cf(self, args: list[str], config: str, netns: str | None = None, check: bool = True,
           timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """Run cf-launch (installed from the working tree) inside the test host, from a
        folder the image does not have, as admins do (Apptainer then warns on stderr)."""
        return self.run(["sh", "-c", f'mkdir -p {FOREIGN_CWD} && cd {FOREIGN_CWD} && exec "$@"',
                         "cf-launch", f"{VENV}/bin/cf-launch", "--config", config, *args],
                        netns=netns, check=check, timeout=timeout)

    def spawn(self, args: list[str], config: str, netns: str,
              env: dict[str, str]) -> subprocess.Popen[str]:
        """Start cf-launch (e.g. ``run``) in the background, as :meth:`cf` runs it; its
        output is in the returned process's pipes."""
        cmd = ["nsenter", f"--net=/run/netns/{netns}", str(HERE / "enter.sh"), "env",
               *(f"{k}={v}" for k, v in env.items()),
               "sh", "-c", f'mkdir -p {FOREIGN_CWD} && cd {FOREIGN_CWD} && exec "$@"',
               "cf-launch", f"{VENV}/bin/cf-launch", "--config", config, *args]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "CF_TESTHOST_BINDS": f"{ROOT}:{SRC}"})

    def path(self, inside: str) -> Path:
        """The machine's path of a file inside the test host."""
        return ROOTFS / inside.lstrip("/")

    def write(self, inside: str, text: str) -> str:
        target = self.path(inside)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        return inside

    def reset(self) -> None:
        """Forget what an interrupted earlier run left: its instances (their sandbox
        namespaces are gone), test state, CNI leases and cf-launch's conflist. Only under
        the run lock; nothing here is outside the test host."""
        self.run(["sh", "-c", "apptainer instance stop --all >/dev/null 2>&1; "
                  f"rm -rf {WORK}/state {WORK}/bench-state /var/lib/cni/networks; "
                  "rm -f /etc/apptainer/network/50_cf-launch.conflist"])

    def install_project(self) -> None:
        self.run(["bash", "-euc",
                  f"[ -x {VENV}/bin/pip ] || python3 -m venv {VENV}; "
                  f"{VENV}/bin/pip install -q --disable-pip-version-check '{SRC}[dbus]'; "
                  f"{VENV}/bin/pip install -q --no-deps --force-reinstall {SRC}; "
                  # the test seams work only in a marked venv (config/seams.py)
                  f"{VENV}/bin/python -c 'from coldfront_launch.config.seams import "
                  "mark_this_venv; mark_this_venv()'"])


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class Sandbox:
    """A stand-in host namespace with an external interface, and an external client.

    host ``ext0`` = 198.18.<n>.1/24 with its default route via the client (.2).
    """

    host: str
    client: str
    net: int

    @classmethod
    def create(cls, net: int) -> Sandbox:
        tag = uuid.uuid4().hex[:6]
        box = cls(f"cfl{tag}h", f"cfl{tag}c", net)
        _ip("netns", "add", box.host)
        _ip("netns", "add", box.client)
        for ns in (box.host, box.client):
            # No IPv6 duplicate-address detection: addresses settle at once, so a snapshot
            # taken right after set-up is final.
            subprocess.run(["nsenter", f"--net=/run/netns/{ns}", "sysctl", "-qw",
                            "net.ipv6.conf.default.accept_dad=0",
                            "net.ipv6.conf.all.accept_dad=0"], check=True)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", box.host, "link", "add", "ext0", "type", "veth", "peer", "name", "ext0",
            "netns", box.client)
        _ip("-n", box.host, "addr", "add", f"{box.host_addr}/24", "dev", "ext0")
        _ip("-n", box.client, "addr", "add", f"{box.client_addr}/24", "dev", "ext0")
        for ns in (box.host, box.client):
            _ip("-n", ns, "link", "set", "ext0", "up")
        _ip("-n", box.host, "route", "add", "default", "via", box.client_addr)
        box.settle()
        return box

    def settle(self) -> None:
        """Wait until ext0's IPv6 link-local address is in place in both namespaces."""
        for _ in range(50):
            routes = [subprocess.run(["ip", "-n", ns, "-6", "route", "show", "table", "local"],
                                     capture_output=True, text=True, check=False).stdout
                      for ns in (self.host, self.client)]
            if all("fe80::" in r and "ext0" in r for r in routes):
                return
            time.sleep(0.1)

    @property
    def host_addr(self) -> str:
        return f"198.18.{self.net}.1"

    @property
    def client_addr(self) -> str:
        return f"198.18.{self.net}.2"

    def destroy(self) -> None:
        for ns in (self.client, self.host):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)

    def client_get(self, url: str, timeout: float = 10) -> tuple[int, str]:
        """An HTTP GET from the external client namespace (status, body)."""
        result = subprocess.run(
            ["nsenter", f"--net=/run/netns/{self.client}", "curl", "-s", "-m", str(timeout),
             "-o", "-", "-w", "\n%{http_code}", url], capture_output=True, text=True, check=False)
        body, _, code = result.stdout.rpartition("\n")
        return int(code or 0), body


def network_snapshot(netns: str | None, testhost: TestHost | None = None) -> dict[str, str]:
    """Links, addresses, routes, firewall (IPv4 and IPv6) and forwarding sysctls of a namespace.

    ``netns=None`` reads this machine's own namespace (read-only commands only)."""
    prefix = ["nsenter", f"--net=/run/netns/{netns}"] if netns else []

    def out(argv: list[str]) -> str:
        return subprocess.run(prefix + argv, capture_output=True, text=True,
                              check=False).stdout

    links = json.loads(out(["ip", "-j", "link"]) or "[]")
    snap = {
        "links": "\n".join(sorted(f"{link['ifname']} {link.get('operstate')} {link.get('mtu')}"
                                  for link in links)),
        "addresses": out(["ip", "-br", "addr"]),
        "routes": out(["ip", "route", "show", "table", "all"]),
        "nft": re.sub(r"counter packets \d+ bytes \d+", "counter",
                      out(["nft", "list", "ruleset"])) if _has("nft") else "",
    }
    for tool in ("iptables", "ip6tables"):
        if testhost is not None:
            saved = testhost.run([f"{tool}-save"], netns=netns).stdout
        else:
            saved = out([f"{tool}-save"]) if _has(f"{tool}-save") else ""
        snap[tool] = "\n".join(line.split(" [")[0] if line.startswith(":") else line
                               for line in saved.splitlines() if not line.startswith("#"))
    sysctls = ["net/ipv4/ip_forward", "net/ipv4/conf/all/rp_filter",
               "net/ipv4/conf/default/rp_filter", "net/ipv6/conf/all/forwarding"]
    snap["sysctl"] = out(["cat", *(f"/proc/sys/{k}" for k in sysctls)])
    return snap


def _has(tool: str) -> bool:
    return subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True,
                          check=False).returncode == 0
