"""Two cf-launch "hosts" serving one ColdFront (issue 29, item 4), with the real
Apptainer, ColdFront and PostgreSQL: two sandbox host namespaces on one LAN (the client's
namespace, which routes to the database host), one instance each, the same
``database_url_file`` and ``secret_key_file``, ``scheduler = false`` on the second.
A client logs in on one host; its session is valid on the other (a load balancer would
send it to either); exactly one django-q2 cluster runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from coldfront_launch.coldfront.appdata import parse_env
from tests.host.database import DatabaseHost
from tests.host.harness import WORK, Sandbox, TestHost, network_snapshot
from tests.integration.conftest import STATE_ROOT, instance_config, self_signed_certificate
from tests.integration.test_bridge_e2e import coldfront_python

pytestmark = pytest.mark.integration

PASSWORD = "multi-host-pw-41d7"
#: On the client: log in at the first URL, then read the profile page at both with the
#: session cookie it got (a bogus cookie as the control). Prints one JSON line.
CLIENT = r"""
import json, re, ssl, sys, urllib.error, urllib.parse, urllib.request
first, second, user, password = sys.argv[1:5]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx), NoRedirect())
def call(url, cookies, data=None, referer=None):
    req = urllib.request.Request(url, data=urllib.parse.urlencode(data).encode()
                                 if data is not None else None)
    req.add_header("Cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()))
    if referer:
        req.add_header("Referer", referer)
    try:
        resp = opener.open(req, timeout=60)
    except urllib.error.HTTPError as err:
        resp = err
    for header in resp.headers.get_all("Set-Cookie") or []:
        name, _, rest = header.partition("=")
        cookies[name.strip()] = rest.split(";")[0]
    return resp.status if hasattr(resp, "status") else resp.code, resp.read().decode()
jar = {}
_, page = call(first + "/user/login", jar)
token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
login, _ = call(first + "/user/login", jar, {"csrfmiddlewaretoken": token, "username": user,
                "password": password}, first + "/user/login")
session = {"sessionid": jar.get("sessionid", "")}
out = {"login": login, "session": bool(session["sessionid"])}
for key, base in (("first", first), ("second", second)):
    code, body = call(base + "/user/user-profile/", dict(session))
    out[key] = [code, user in body]
out["bogus"] = call(second + "/user/user-profile/", {"sessionid": "x" * 32})[0]
print(json.dumps(out))
"""


@dataclass
class Hosts:
    first: Sandbox
    second: Sandbox  # its client is the first's: one LAN


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    first = Sandbox.create(net=71)
    second = Sandbox(first.host[:-1] + "b", first.client, 72)
    _ip("netns", "add", second.host)
    try:
        subprocess.run(["nsenter", f"--net=/run/netns/{second.host}", "sysctl", "-qw",
                        "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0"],
                       check=True)
        _ip("-n", second.host, "link", "set", "lo", "up")
        _ip("-n", second.host, "link", "add", "ext0", "type", "veth", "peer", "name", "ext1",
            "netns", second.client)
        _ip("-n", second.host, "addr", "add", f"{second.host_addr}/24", "dev", "ext0")
        _ip("-n", second.client, "addr", "add", f"{second.client_addr}/24", "dev", "ext1")
        _ip("-n", second.host, "link", "set", "ext0", "up")
        _ip("-n", second.client, "link", "set", "ext1", "up")
        _ip("-n", second.host, "route", "add", "default", "via", second.client_addr)
        second.settle()  # its link-local IPv6 address in place: snapshots are final
        yield Hosts(first, second)
    finally:
        subprocess.run(["ip", "netns", "del", second.host], capture_output=True, check=False)
        first.destroy()


def test_two_hosts_one_database_one_session_one_scheduler(
        testhost: TestHost, coldfront_image: str, hosts: Hosts) -> None:
    database = DatabaseHost.attach(hosts.first)  # the client routes to it: both hosts reach it
    names = ("cfmulti1", "cfmulti2")
    url_file = testhost.write(f"{WORK}/cfmulti-db-url", database.url + "\n")
    key_file = testhost.write(f"{WORK}/cfmulti-secret-key", os.urandom(24).hex() + "\n")
    for secret in (url_file, key_file):
        os.chmod(testhost.path(secret), 0o600)
    shared = (f'[coldfront]\ndatabase_url_file = "{url_file}"\n'
              f'secret_key_file = "{key_file}"\n')
    configs = [instance_config(testhost, names[0], coldfront_image, shared),
               instance_config(testhost, names[1], coldfront_image,
                               shared + "scheduler = false\n")]
    boxes = (hosts.first, hosts.second)
    before = [network_snapshot(box.host, testhost) for box in boxes]
    try:
        for name, config, box in zip(names, configs, boxes):
            testhost.run(["rm", "-rf", f"{STATE_ROOT}/{name}"])
            self_signed_certificate(testhost, coldfront_image,
                                    f"{STATE_ROOT}/{name}/letsencrypt")
            started = json.loads(testhost.cf(["start", "--json"], config, box.host).stdout)
            assert started["ready"] is True, started
        coldfront_python(testhost, names[0], "from django.contrib.auth.models import User; "
                         f"User.objects.create_user('multi', password='{PASSWORD}'); print(1)")
        client = subprocess.run(
            ["nsenter", f"--net=/run/netns/{hosts.first.client}", sys.executable, "-c", CLIENT,
             f"https://{hosts.first.host_addr}", f"https://{hosts.second.host_addr}", "multi",
             PASSWORD], capture_output=True, text=True, timeout=180, check=False)
        assert client.returncode == 0, client.stderr
        seen = json.loads(client.stdout)
        assert seen["login"] == 302 and seen["session"], seen
        assert seen["first"] == [200, True], "logged in on the first host"
        assert seen["second"] == [200, True], "the same session is valid on the second"
        assert seen["bogus"] == 302, "the second host does check sessions"
        clusters = [testhost.run(["apptainer", "exec", f"instance://{name}", "systemctl",
                                  "is-active", "coldfront-qcluster.service"],
                                 check=False).stdout.strip() for name in names]
        assert clusters == ["active", "inactive"], "exactly one scheduler"
        keys = [parse_env(testhost.path(f"{STATE_ROOT}/{name}/coldfront.env").read_text())
                ["SECRET_KEY"] for name in names]
        assert keys[0] == keys[1], "one SECRET_KEY"
    finally:
        for config, box in zip(configs, boxes):
            testhost.cf(["stop"], config, box.host, check=False)
        database.destroy()
    assert [network_snapshot(box.host, testhost) for box in boxes] == before
