"""Serving like a production site (issue 25), with the real Apptainer, ColdFront, nginx and
systemd: the image on its own (no cf-launch), Apptainer's conventions, no DNS on any
command's path (a resolver that never answers, counting what it is asked), a TLS load
balancer in front (its headers, from its address only), workers from the CPUs, and SQLite
under concurrent read-then-write transactions with a backup running."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.host.harness import FOREIGN_CWD, HERE, ROOT, SRC, VENV, WORK, Sandbox, TestHost
from tests.integration.conftest import STATE_ROOT, instance_config

pytestmark = pytest.mark.integration

NAME = "serve"
PORTAL = "portal.example.test"
SILENT_DNS = "10.255.255.53"  # the test host's resolv.conf names it
PASSWORD = "serve-pw-5d1c9e0b"
PLAIN = f"{WORK}/plain-data"
DATA = "/srv/coldfront/data"

#: Counts the DNS queries that reach SILENT_DNS, and never answers one.
LISTENER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
n = 0
while True:
    s.recv(4096)
    n += 1
    with open(sys.argv[2], "w") as fh:
        fh.write(str(n))
"""

#: A browser's login through a TLS-terminating load balancer: GET the form, POST it with
#: the headers an ALB adds. Cookies by hand (they are Secure; the hop is plain http).
LOGIN = r"""
import http.client, json, re, sys
from urllib.parse import urlencode
ip, host, origin, proto, user, password = sys.argv[1:7]
def req(method, path, body=None, cookies=None):
    c = http.client.HTTPConnection(ip, 80, timeout=30)
    h = {"Host": host, "X-Forwarded-Proto": proto, "X-Forwarded-For": "203.0.113.9"}
    if cookies:
        h["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    if body is not None:
        h.update({"Content-Type": "application/x-www-form-urlencoded", "Origin": origin,
                  "Referer": origin + "/user/login"})
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    return r.status, r.getheader("Location"), r.headers.get_all("Set-Cookie") or [], \
        r.read().decode(errors="replace")
code, _, set_cookies, page = req("GET", "/user/login")
out = {"get": code}
if code == 200:
    cookies = dict(re.match(r"([^=]+)=([^;]*)", c).groups() for c in set_cookies)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    code, where, more, _ = req("POST", "/user/login", urlencode(
        {"csrfmiddlewaretoken": token, "username": user, "password": password}), cookies)
    out.update(post=code, location=where,
               secure=all("; secure" in c.lower() for c in set_cookies + more))
print(json.dumps(out))
"""

#: 20 threads x 20 transactions that read, then write, as ColdFront's forms do.
CONCURRENT = r"""
import threading
from django.contrib.auth.models import Group
from django.db import connection, transaction
ok, failed, errors = [0], [0], set()
lock = threading.Lock()
def worker(t):
    for i in range(20):
        try:
            with transaction.atomic():
                Group.objects.filter(name__startswith="load-").count()
                Group.objects.create(name=f"load-{t}-{i}")
            with lock: ok[0] += 1
        except Exception as err:
            with lock:
                failed[0] += 1
                errors.add(str(err)[:80])
    connection.close()
threads = [threading.Thread(target=worker, args=(t,)) for t in range(20)]
print("begin", flush=True)
[t.start() for t in threads]
[t.join() for t in threads]
with connection.cursor() as c:
    c.execute("PRAGMA journal_mode")
    mode = c.fetchone()[0]
print(f"committed {ok[0]} failed {failed[0]} mode {mode} errors {sorted(errors)}")
"""


def instances(host: TestHost, netns: str) -> dict[str, dict[str, object]]:
    out = host.run(["apptainer", "instance", "list", "--json"], netns=netns).stdout
    return {i["instance"]: i for i in json.loads(out)["instances"]}


def inside(host: TestHost, pid: object, netns: str, command: str) -> str:
    return host.run(["nsenter", "-t", str(pid), "-a", "sh", "-c", command], netns=netns,
                    check=False).stdout


def wait_http(host: TestHost, netns: str, url: str, timeout: float = 240) -> int:
    deadline = time.monotonic() + timeout
    code = 0
    while time.monotonic() < deadline:
        out = host.run(["curl", "-s", "-o", "/dev/null", "-m", "3", "-w", "%{http_code}", url],
                       netns=netns, check=False).stdout
        code = int(out or 0)
        if code == 200:
            return code
        time.sleep(0.5)
    return code


def plain_boot(host: TestHost, box: Sandbox, name: str, options: list[str]
               ) -> dict[str, object]:
    """`apptainer instance start --boot [options] coldfront.sif NAME`: nothing else."""
    host.run(["apptainer", "instance", "start", "--boot", *options,
              "/var/cache/cf-launch/images/coldfront.sif", name], netns=box.host)
    info = instances(host, box.host)[name]
    assert wait_http(host, box.host, f"http://{info['ip']}/user/login") == 200
    return info


def test_the_image_serves_on_its_own(testhost: TestHost, coldfront_image: str) -> None:
    """Read-only image, --writable-tmpfs, and a bound data folder across two boots."""
    box = Sandbox.create(net=31)
    try:
        for options, lost in (([], "read-only in the image"),
                              (["--writable-tmpfs"], "the image's own folder")):
            info = plain_boot(testhost, box, "plain", options)
            state = inside(testhost, info["pid"], box.host,
                           "systemctl is-system-running; ps -o user= -C gunicorn | sort -u; "
                           "journalctl -b -u coldfront-defaults --no-pager")
            assert state.startswith("running\n"), state
            assert "coldfront\n" in state and "root\n" not in state, "gunicorn as coldfront"
            assert lost in state and "lost when the instance stops" in state, state
            testhost.run(["apptainer", "instance", "stop", "plain"], netns=box.host)
        testhost.run(["sh", "-c", f"rm -rf {PLAIN}; install -d -o 8801 -g 8801 -m 0700 "
                      f"{PLAIN}"])
        keys, migrations = [], []
        for _ in range(2):
            info = plain_boot(testhost, box, "plain", ["--bind", f"{PLAIN}:{DATA}"])
            log = inside(testhost, info["pid"], box.host,
                         "journalctl -b -u coldfront-gunicorn -u coldfront-defaults "
                         "--no-pager; systemctl is-system-running")
            assert log.rstrip().endswith("running"), log
            assert "lost when" not in log, "a bound data folder keeps the data"
            migrations.append("Operations to perform" in log)
            keys.append(testhost.path(f"{PLAIN}/.secret_key").read_text())
            testhost.run(["apptainer", "instance", "stop", "plain"], netns=box.host)
        assert keys[0] == keys[1] and len(keys[0].strip()) >= 40, "SECRET_KEY kept"
        assert oct(testhost.path(f"{PLAIN}/.secret_key").stat().st_mode & 0o777) == "0o600"
        # First boot: coldfront-setup migrated and recorded it; second: nothing to do.
        assert migrations == [False, False], migrations
        assert testhost.path(f"{PLAIN}/.cf-launch-migrations").is_file()
        testhost.path(f"{PLAIN}/.cf-launch-migrations").write_text("older image\n")
        info = plain_boot(testhost, box, "plain", ["--bind", f"{PLAIN}:{DATA}"])
        log = inside(testhost, info["pid"], box.host,
                     "journalctl -b -u coldfront-gunicorn --no-pager")
        assert "Operations to perform" in log, "another migration set: migrate runs"
        testhost.run(["apptainer", "instance", "stop", "plain"], netns=box.host)
    finally:
        testhost.run(["sh", "-c", "apptainer instance stop plain; rm -rf " + PLAIN],
                     netns=box.host, check=False)
        box.destroy()


def test_apptainer_conventions(testhost: TestHost, coldfront_image: str) -> None:
    labels = json.loads(testhost.run(["apptainer", "inspect", "--labels", "--json",
                                      coldfront_image]).stdout)
    found = labels["data"]["attributes"]["labels"]
    assert found["org.coldfront-launch.coldfront.version"] == "1.1.10", found
    assert found["org.opencontainers.image.version"] == "1.1.10"
    assert re.fullmatch(r"5\.\d+(\.\d+)?", found["org.coldfront-launch.django.version"])
    assert re.fullmatch(r"[0-9a-f]{16}", found["org.coldfront-launch.layer.key"]), found
    assert found["org.coldfront-launch.version"] != "unknown"
    helped = testhost.run(["apptainer", "run-help", coldfront_image]).stdout
    assert "--boot" in helped and DATA in helped and "/etc/coldfront/coldfront.env" in helped
    assert testhost.run(["apptainer", "run", coldfront_image]).stdout.strip() == \
        helped.strip()
    tested = testhost.run(["sh", "-c", f"cd / && apptainer test {coldfront_image}"])
    for step in ("python imports", "django checks", "nginx configuration", "systemd units"):
        assert f"{step}: ok" in tested.stdout, tested.stdout


@dataclass
class Served:
    box: Sandbox
    config: str
    started: dict[str, object]
    status: dict[str, object]
    queries: list[int]


def _nodns_argv(config: str, *args: str) -> list[str]:
    """cf-launch under a host name that is in no /etc/hosts: any lookup of it goes to DNS.
    (Apptainer keeps instances per host name: every command of the test runs so.)"""
    script = (f'hostname cf-nodns-test && mkdir -p {FOREIGN_CWD} && cd {FOREIGN_CWD} && '
              f'exec {VENV}/bin/cf-launch --config "$0" "$@"')
    return ["unshare", "--uts", "sh", "-c", script, config, *args]


def _cf_nodns(host: TestHost, config: str, netns: str, *args: str
              ) -> subprocess.CompletedProcess[str]:
    return host.run(_nodns_argv(config, *args), netns=netns, check=False)


@pytest.fixture(scope="module")
def served(testhost: TestHost, coldfront_image: str) -> Iterator[Served]:
    box = Sandbox.create(net=32)
    counter = Path(f"/tmp/cf-dns-{box.client}")
    counter.write_text("0")
    subprocess.run(["ip", "-n", box.client, "addr", "add", f"{SILENT_DNS}/32", "dev", "lo"],
                   check=True)
    listener = subprocess.Popen(["nsenter", f"--net=/run/netns/{box.client}", sys.executable,
                                 "-c", LISTENER, SILENT_DNS, str(counter)])
    config = instance_config(testhost, NAME, coldfront_image, f"""
        [coldfront]
        url = "https://{PORTAL}"
        trusted_proxies = ["{box.client_addr}/32"]
    """)
    try:
        # The listener hears what a lookup asks: the test could fail.
        for _ in range(10):
            testhost.run(["timeout", "2", "getent", "hosts", "probe.nodns.test"],
                         netns=box.host, check=False)
            if int(counter.read_text()):
                break
        assert int(counter.read_text()) > 0, "the silent resolver hears lookups"
        counter.write_text("0")
        queries = []
        for args in (["plan", "--json"], ["prepare"], ["start", "--json"],
                     ["status", "--json"]):
            if args[0] == "prepare":
                result = _cf_nodns(testhost, config, box.host, "prepare", "--format", "json")
                _cf_nodns(testhost, config, box.host, "detach")
            else:
                result = _cf_nodns(testhost, config, box.host, *args)
            assert result.returncode == 0, result.stderr
            time.sleep(0.2)
            queries.append(int(counter.read_text()))
            if args[0] == "start":
                started = json.loads(result.stdout)
            if args[0] == "status":
                status = json.loads(result.stdout)
        yield Served(box, config, started, status, queries)
    finally:
        stopped = _cf_nodns(testhost, config, box.host, "stop")
        print(stopped.stderr)
        listener.kill()
        testhost.run(["rm", "-rf", f"{STATE_ROOT}/{NAME}"])
        box.destroy()


def test_no_dns_query_on_any_command(served: Served) -> None:
    """plan, prepare (+ detach), start, status: the resolver never heard a query."""
    assert served.queries == [0, 0, 0, 0], served.queries
    assert served.started["ready"] is True
    phases = served.started.get("timings", {})
    assert sum(phases.values()) < 30, phases  # not seconds per lookup


def test_workers_follow_the_cpus(testhost: TestHost, served: Served) -> None:
    serving = served.status["serving"]
    cpus = len(os.sched_getaffinity(0))
    assert serving["workers"] == 2 * math.ceil(cpus) + 1, serving
    pid = served.status["instance"]["pid"]
    count = inside(testhost, pid, served.box.host, "ps -o args= -C gunicorn | wc -l")
    assert int(count) == serving["workers"] + 1, "the master and its workers"


def test_login_through_a_tls_load_balancer(testhost: TestHost, served: Served) -> None:
    testhost.write(f"{WORK}/serve.pw", PASSWORD)
    made = _cf_nodns(testhost, served.config, served.box.host, "admin", "create",
                     "--username", "lbadmin", "--email", "a@example.org",
                     "--password-file", f"{WORK}/serve.pw", "--exist-ok")
    assert made.returncode == 0, made.stderr
    box = served.box

    def login(netns: str, ip: str, host: str, origin: str) -> dict[str, object]:
        out = testhost.run(["python3", "-c", LOGIN, ip, host, origin, "https", "lbadmin",
                            PASSWORD], netns=netns).stdout
        return dict(json.loads(out))

    # The balancer (the client namespace, a trusted proxy) forwards the browser's login.
    through = login(box.client, box.host_addr, PORTAL, f"https://{PORTAL}")
    assert through["get"] == 200 and through["post"] == 302, through
    assert not str(through["location"]).startswith("http:"), "the redirect stays https"
    assert through["secure"] is True, "cookies are Secure behind https"
    # X-Forwarded-Proto is believed from the balancer only: the same request from another
    # address, for an allowed host with no trusted origin, fails Django's origin check.
    ip = str(served.status["instance"]["ip"])
    trusted = login(box.client, box.host_addr, box.host_addr, f"https://{box.host_addr}")
    assert trusted["post"] == 302, trusted
    untrusted = login(box.host, ip, box.host_addr, f"https://{box.host_addr}")
    assert untrusted["get"] == 200 and untrusted["post"] == 403, untrusted
    foreign = login(box.client, box.host_addr, "evil.example.net", "https://evil.example.net")
    assert foreign["get"] == 400, foreign


SETTINGS = r"""
from django.conf import settings as s
db = s.DATABASES["default"]["OPTIONS"]
print("catch_up", s.Q_CLUSTER["catch_up"], "origins", s.CSRF_TRUSTED_ORIGINS,
      "secure", s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "samesite",
      s.SESSION_COOKIE_SAMESITE, "mode", db["transaction_mode"], "timeout", db["timeout"])
"""


def test_what_django_is_told(testhost: TestHost, served: Served) -> None:
    """Scheduled tasks run once; the public URL's origin; SQLite's transaction mode."""
    out = _cf_nodns(testhost, served.config, served.box.host, "manage", "--", "shell", "-c",
                    SETTINGS).stdout
    assert (f"catch_up False origins ['https://{PORTAL}'] secure True True samesite Strict "
            "mode IMMEDIATE timeout 30") in out, out


def test_sqlite_takes_concurrent_transactions_with_a_backup_running(
        testhost: TestHost, served: Served) -> None:
    load = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{served.box.host}", str(HERE / "enter.sh"),
         *_nodns_argv(served.config, "manage", "--", "shell", "-c", CONCURRENT)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "CF_TESTHOST_BINDS": f"{ROOT}:{SRC}"})
    assert load.stdout is not None
    lines = iter(load.stdout.readline, "")
    assert any(line == "begin\n" for line in lines), "the load runs while the backup does"
    backup = _cf_nodns(testhost, served.config, served.box.host, "backup", "--output",
                       f"{WORK}/serve-backup.tar.gz", "--json")
    out, err = load.communicate(timeout=600)
    assert "committed 400 failed 0 mode wal" in out, out + err
    assert backup.returncode == 0, backup.stderr
    made = json.loads(backup.stdout)["manifest"]["database"]
    assert made["integrity_check"] == "ok" and made["journal_mode"] == "wal", made


def _instance_limit(controller: str, path: str, name: str) -> int:
    """``name`` of the instance's own cgroup (cgroup v1, the cgroupfs manager's
    ``/apptainer/<pid>``; systemd inside moves itself below it, to ``init.scope``)."""
    own = re.match(r"/apptainer/\d+", path)
    assert own, path
    return int((Path("/sys/fs/cgroup") / controller / own.group(0).lstrip("/") / name
                ).read_text())


def test_resource_limits_reach_the_instance(testhost: TestHost, coldfront_image: str) -> None:
    """[resources] → --cpus/--memory/--pids-limit, in the instance's cgroup (the cgroupfs
    manager: PID 1 here is not systemd, which `plan` says first)."""
    box = Sandbox.create(net=33)
    conf = f"{WORK}/apptainer-cgroupfs.conf"
    testhost.run(["sh", "-c", "sed 's/^systemd cgroups = yes/systemd cgroups = no/' "
                  f"/etc/apptainer/apptainer.conf > {conf}"])
    config = instance_config(testhost, "limits", coldfront_image,
                             '[resources]\ncpus = 1\nmemory = "1G"\npids = 2048\n')
    try:
        refused = testhost.cf(["plan"], config, box.host, check=False)
        assert refused.returncode != 0 and "systemd cgroups = yes" in refused.stdout, \
            refused.stdout + refused.stderr
        env = {"APPTAINER_CONFIG_FILE": conf}
        started = testhost.run([f"{VENV}/bin/cf-launch", "--config", config, "start"],
                               netns=box.host, env=env, check=False)
        assert started.returncode == 0, started.stderr
        status = json.loads(testhost.run([f"{VENV}/bin/cf-launch", "--config", config,
                                          "status", "--json"], netns=box.host, env=env).stdout)
        assert status["serving"]["workers"] == 3, status["serving"]  # 2 x 1 CPU + 1
        assert status["serving"]["limits"] == {"cpus": 1.0, "memory": 1 << 30, "pids": 2048}
        pid = status["instance"]["pid"]
        groups = dict(line.split(":", 2)[1:] for line in
                      Path(f"/proc/{pid}/cgroup").read_text().splitlines())
        assert _instance_limit("memory", groups["memory"], "memory.limit_in_bytes") == 1 << 30
        assert _instance_limit("pids", groups["pids"], "pids.max") == 2048
        assert _instance_limit("cpu", groups["cpu"], "cpu.cfs_quota_us") == \
            _instance_limit("cpu", groups["cpu"], "cpu.cfs_period_us"), "one CPU"
    finally:
        testhost.run([f"{VENV}/bin/cf-launch", "--config", config, "stop"], netns=box.host,
                     env={"APPTAINER_CONFIG_FILE": conf}, check=False)
        testhost.run(["rm", "-rf", f"{STATE_ROOT}/limits", conf])
        box.destroy()
