"""A stand-in for the cloud's link-local services, behind a sandbox's client namespace.

The sandbox host's default route goes via the client (its "VPC router"); the client routes
the link-local service addresses, and one stand-in for the internet, on to a "cloud"
namespace, as a cloud's network does; IPv6 too, for AWS's ``fd00:ec2::254``. A fake
metadata HTTP server there answers on every address, saying which one was asked and by
whom. Everything lives in namespaces this
helper creates; nothing touches the machine's own namespace.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field

from tests.host.harness import Sandbox

IMDS = "169.254.169.254"       # AWS, GCP and Azure instance metadata
ECS_CREDENTIALS = "169.254.170.2"
AWS_DNS = "169.254.169.253"    # link-local too, and must stay reachable
INTERNET = "203.0.113.10"      # any other destination out there
ADDRESSES = (IMDS, ECS_CREDENTIALS, AWS_DNS, INTERNET)
IMDS6 = "fd00:ec2::254"        # AWS's IPv6 endpoint, routed from the host via the client

SERVER = """
import http.server, socket
def plain(addr):
    return addr.removeprefix("::ffff:")
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        asked = plain(self.connection.getsockname()[0])
        body = f"metadata {asked} for {plain(self.client_address[0])}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())
    def log_message(self, *a): pass
class Dual(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()
Dual(("::", 80), H).serve_forever()
"""


def _ns(ns: str, *argv: str) -> None:
    subprocess.run(["nsenter", f"--net=/run/netns/{ns}", *argv], check=True,
                   capture_output=True, text=True)


@dataclass
class Cloud:
    """The cloud namespace, linked to ``box.client`` over 198.19.<net>.0/24."""

    box: Sandbox
    name: str
    server: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @classmethod
    def attach(cls, box: Sandbox) -> Cloud:
        cloud = cls(box, box.host[:-1] + "m")
        subprocess.run(["ip", "netns", "add", cloud.name], check=True)
        try:
            cloud._wire()
        except BaseException:
            cloud.destroy()
            raise
        return cloud

    def _wire(self) -> None:
        net, client, cloud = self.box.net, self.box.client, self.name
        _ns(client, "ip", "link", "add", "cld0", "type", "veth", "peer", "name", "cld0",
            "netns", cloud)
        _ns(client, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        _ns(client, "ip", "addr", "add", f"198.19.{net}.1/24", "dev", "cld0")
        _ns(client, "ip", "link", "set", "cld0", "up")
        _ns(cloud, "ip", "link", "set", "lo", "up")
        _ns(cloud, "ip", "addr", "add", f"198.19.{net}.2/24", "dev", "cld0")
        _ns(cloud, "ip", "link", "set", "cld0", "up")
        _ns(cloud, "ip", "route", "add", "default", "via", f"198.19.{net}.1")
        for addr in ADDRESSES:
            _ns(cloud, "ip", "addr", "add", f"{addr}/32", "dev", "lo")
            _ns(client, "ip", "route", "add", f"{addr}/32", "via", f"198.19.{net}.2")
        self._wire_ipv6()
        self.server = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{cloud}", sys.executable, "-c", SERVER],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(50):
            listening = subprocess.run(["nsenter", f"--net=/run/netns/{cloud}", "ss", "-Hltn"],
                                       capture_output=True, text=True, check=False).stdout
            if ":80 " in listening:
                return
            time.sleep(0.1)
        raise AssertionError("the fake metadata server did not start")

    def _wire_ipv6(self) -> None:
        """ULA links host-client and client-cloud; fd00:ec2::254 on the cloud's lo."""
        net, host, client, cloud = self.box.net, self.box.host, self.box.client, self.name
        outer, inner = f"fd00:cf:{net}:1::", f"fd00:cf:{net}:2::"
        _ns(host, "ip", "addr", "add", f"{outer}1/64", "dev", "ext0", "nodad")
        _ns(client, "ip", "addr", "add", f"{outer}2/64", "dev", "ext0", "nodad")
        _ns(client, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        _ns(client, "ip", "addr", "add", f"{inner}1/64", "dev", "cld0", "nodad")
        _ns(cloud, "ip", "addr", "add", f"{inner}2/64", "dev", "cld0", "nodad")
        _ns(cloud, "ip", "addr", "add", f"{IMDS6}/128", "dev", "lo")
        _ns(cloud, "ip", "-6", "route", "add", "default", "via", f"{inner}1")
        _ns(client, "ip", "-6", "route", "add", f"{IMDS6}/128", "via", f"{inner}2")
        _ns(host, "ip", "-6", "route", "add", f"{IMDS6}/128", "via", f"{outer}2")

    def destroy(self) -> None:
        if self.server is not None:
            self.server.terminate()
            self.server.wait()
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)


def curl(url: str, timeout: float = 3) -> list[str]:
    """The curl command line whose output :func:`answer` reads."""
    return ["curl", "-g", "-s", "-m", str(timeout), "-o", "-", "-w", "\n%{http_code}", url]


def answer(result: subprocess.CompletedProcess[str]) -> tuple[int, str, int]:
    """(HTTP status, body, curl's exit code: 7 refused or rejected, 28 timed out)."""
    body, _, code = result.stdout.rpartition("\n")
    return int(code or 0), body, result.returncode


def http_get(prefix: list[str], url: str, timeout: float = 3) -> tuple[int, str, int]:
    """GET with curl under ``prefix`` (nsenter, setpriv, ...); see :func:`answer`."""
    return answer(subprocess.run([*prefix, *curl(url, timeout)], capture_output=True,
                                 text=True, check=False, timeout=timeout + 60))
