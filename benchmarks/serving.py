"""Benchmark: serving like a production site (issue 25). Same run, same image, same sandbox.

- **boot**: a plain `apptainer instance start --boot` (the baseline) against `cf-launch
  start`, each to the first HTTP 200 an independent poller sees, with a resolver that
  answers (NXDOMAIN at once) and with one that never answers; `start --json`'s phases;
  and what `socket.getfqdn()` (cf-launch 0.1's default `allowed_hosts`) costs under each.
- **logins**: logins (form GET + POST) at a concurrency, against 2 workers (the old fixed
  count) and the default workers.
- **sqlite**: 20 threads x 20 read-then-write transactions in one Django process inside
  the instance, on a rollback-journal database with deferred transactions (the old
  settings) and on the image's settings (WAL, IMMEDIATE).

    sudo .venv/bin/python -m benchmarks.serving [--rounds 3] [--logins 400]

Needs root and the Apptainer test host (tests/host/provision.sh).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from benchmarks.testhost import coldfront_config, ready_host
from tests.host.harness import WORK, Sandbox, TestHost

STATE = f"{WORK}/bench-state"
NAME = "benchserve"
DNS = "10.255.255.53"  # the test host's resolv.conf
DATA = f"{WORK}/bench-plain-data"

#: A resolver in the client namespace: silent, or NXDOMAIN for every query.
RESOLVER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
while True:
    data, peer = s.recvfrom(4096)
    if sys.argv[2] == "answer":
        s.sendto(data[:2] + b"\x81\x83" + data[4:], peer)
"""

#: First 200 of a URL, in seconds after argv[2] (a time.time()), polled every 20 ms.
POLLER = r"""
import sys, time, urllib.request
url, t0 = sys.argv[1], float(sys.argv[2])
while True:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            if r.status == 200:
                print(f"{time.time() - t0:.3f}")
                break
    except Exception:
        time.sleep(0.02)
"""

#: Logins through nginx at a concurrency; prints "ok failed seconds".
LOGINS = r"""
import http.client, re, sys, threading, time
from urllib.parse import urlencode
ip, user, password, total, concurrency = sys.argv[1], sys.argv[2], sys.argv[3], \
    int(sys.argv[4]), int(sys.argv[5])
done, lock = {"ok": 0, "failed": 0}, threading.Lock()
def login():
    c = http.client.HTTPConnection(ip, 80, timeout=60)
    c.request("GET", "/user/login", headers={"Host": ip})
    r = c.getresponse(); page = r.read().decode()
    cookie = re.search(r"csrftoken=([^;]+)", r.getheader("Set-Cookie")).group(1)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    c.request("POST", "/user/login", urlencode({"csrfmiddlewaretoken": token,
              "username": user, "password": password}),
              {"Host": ip, "Cookie": f"csrftoken={cookie}", "Referer": f"http://{ip}/",
               "Content-Type": "application/x-www-form-urlencoded"})
    r = c.getresponse(); r.read()
    return r.status == 302
def worker(n):
    for _ in range(n):
        try:
            good = login()
        except Exception:
            good = False
        with lock:
            done["ok" if good else "failed"] += 1
t0 = time.time()
threads = [threading.Thread(target=worker, args=(total // concurrency,))
           for _ in range(concurrency)]
[t.start() for t in threads]; [t.join() for t in threads]
print(done["ok"], done["failed"], f"{time.time() - t0:.2f}")
"""

#: Read-then-write transactions on two databases: the old settings and the image's.
SQLITE = r"""
import threading
from django.core.management import call_command
from django.db import connections, transaction
base = dict(connections.databases["default"])
for alias, options in (("old", {"timeout": 5}), ("new", dict(base.get("OPTIONS", {})))):
    connections.databases[alias] = {**base, "NAME": f"/srv/coldfront/data/bench-{alias}.db",
                                    "OPTIONS": options}
    call_command("migrate", "auth", database=alias, verbosity=0)
    if alias == "old":
        with connections["old"].cursor() as c:
            c.execute("PRAGMA journal_mode=DELETE")
    from django.contrib.auth.models import Group
    counts = {"ok": 0, "failed": 0}
    lock = threading.Lock()
    def work(t):
        for i in range(20):
            try:
                with transaction.atomic(using=alias):
                    Group.objects.using(alias).count()
                    Group.objects.using(alias).create(name=f"g-{t}-{i}")
                good = True
            except Exception:
                good = False
            with lock:
                counts["ok" if good else "failed"] += 1
        connections[alias].close()
    threads = [threading.Thread(target=work, args=(t,)) for t in range(20)]
    [t.start() for t in threads]; [t.join() for t in threads]
    with connections[alias].cursor() as c:
        c.execute("PRAGMA journal_mode")
        print(alias, counts["ok"], counts["failed"], c.fetchone()[0])
"""


def in_ns(netns: str, code: str, *args: str) -> str:
    """Python ``code`` in a sandbox namespace (this machine's Python); its stdout."""
    return subprocess.run(["nsenter", f"--net=/run/netns/{netns}", sys.executable, "-c", code,
                           *args], capture_output=True, text=True, check=True).stdout


def poll(netns: str, url: str, t0: float) -> subprocess.Popen[str]:
    """The independent poller, started in the background."""
    return subprocess.Popen(["nsenter", f"--net=/run/netns/{netns}", sys.executable, "-c",
                             POLLER, url, str(t0)], stdout=subprocess.PIPE, text=True)


def first_200(poller: subprocess.Popen[str]) -> float:
    out, _ = poller.communicate(timeout=600)
    return float(out.strip())


def boot_round(host: TestHost, box: Sandbox, config: str) -> dict[str, float]:
    """One plain boot and one cf-launch start, each to its first 200."""
    t0 = time.time()
    host.run(["apptainer", "instance", "start", "--boot", "--writable-tmpfs", "--bind",
              f"{DATA}:/srv/coldfront/data", "/var/cache/cf-launch/images/coldfront.sif",
              "benchplain"], netns=box.host)
    listed = json.loads(host.run(["apptainer", "instance", "list", "--json"],
                                 netns=box.host).stdout)["instances"]
    ip = next(i["ip"] for i in listed if i["instance"] == "benchplain")
    plain = first_200(poll(box.host, f"http://{ip}/user/login", t0))
    host.run(["apptainer", "instance", "stop", "benchplain"], netns=box.host)
    t0 = time.time()
    poller = poll(box.client, f"http://{box.host_addr}/user/login", t0)
    started = json.loads(host.cf(["start", "--json"], config, box.host).stdout)
    launched = first_200(poller)
    host.cf(["stop"], config, box.host)
    return {"plain boot to first 200": plain, "cf-launch start to first 200": launched,
            **{f"phase {k}": v for k, v in started["timings"].items()}}


def getfqdn_cost(host: TestHost, netns: str) -> float:
    code = "import socket, time; t = time.time(); socket.getfqdn(); print(time.time() - t)"
    out = host.run(["unshare", "--uts", "sh", "-c",
                    f"hostname bench-nodns && python3 -c '{code}'"], netns=netns).stdout
    return float(out.strip().splitlines()[-1])


def boots(host: TestHost, box: Sandbox, config: str, rounds: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    for mode in ("answering", "silent"):
        resolver = subprocess.Popen(["nsenter", f"--net=/run/netns/{box.client}",
                                     sys.executable, "-c", RESOLVER, DNS,
                                     "answer" if mode == "answering" else "silent"])
        try:
            time.sleep(0.3)
            samples = [boot_round(host, box, config) for _ in range(rounds)]
            row = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
            row["socket.getfqdn() (cf-launch 0.1)"] = getfqdn_cost(host, box.host)
            results[mode] = row
        finally:
            resolver.kill()
    return results


def logins(host: TestHost, box: Sandbox, config: str, total: int) -> dict[str, str]:
    results = {}
    for label, workers in (("2 workers (before)", 2), ("default workers", 0)):
        body = f"\n[coldfront]\nworkers = {workers}\n" if workers else ""
        text = host.path(config).read_text().split("\n[coldfront]")[0] + body
        host.path(config).write_text(text)
        host.cf(["start"], config, box.host)
        host.write(f"{WORK}/bench.pw", "bench-pw-0")
        host.cf(["admin", "create", "--username", "bench", "--email", "b@example.org",
                 "--password-file", f"{WORK}/bench.pw", "--exist-ok"], config, box.host)
        status = json.loads(host.cf(["status", "--json"], config, box.host).stdout)
        ok, failed, seconds = in_ns(box.client, LOGINS, box.host_addr, "bench", "bench-pw-0",
                                    str(total), "40").split()
        results[f"{label}: {status['serving']['workers']}"] = (
            f"{ok} ok, {failed} failed, {int(ok) / float(seconds):.1f} logins/s")
        if not workers:
            results[f"{label} with backups running"] = with_backups(
                host, config, box, lambda: in_ns(box.client, LOGINS, box.host_addr, "bench",
                                                 "bench-pw-0", str(total), "40"))
            sqlite = host.cf(["manage", "--", "shell", "-c", SQLITE], config, box.host)
            results["sqlite"] = sqlite.stdout
        host.cf(["stop"], config, box.host)
    return results


def with_backups(host: TestHost, config: str, box: Sandbox,
                 load: Callable[[], str]) -> str:
    """``load`` (the logins) while ``cf-launch backup`` runs again and again beside it."""
    done, made, failed = threading.Event(), [0], [0]

    def backups() -> None:
        while not done.is_set():
            result = host.cf(["backup", "--output", f"{WORK}/bench-backup.tar.gz"], config,
                             box.host, check=False)
            (made if result.returncode == 0 else failed)[0] += 1
    runner = threading.Thread(target=backups)
    runner.start()
    try:
        ok, bad, seconds = load().split()
    finally:
        done.set()
        runner.join()
    return (f"{ok} ok, {bad} failed, {int(ok) / float(seconds):.1f} logins/s; "
            f"{made[0]} backups made, {failed[0]} failed")


def critical_chain(host: TestHost, box: Sandbox, config: str) -> str:
    host.cf(["start"], config, box.host)
    try:
        return host.cf(["exec", NAME, "--", "systemd-analyze", "critical-chain",
                        "coldfront-gunicorn.service", "--no-pager"], config, box.host).stdout
    finally:
        host.cf(["stop"], config, box.host)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--logins", type=int, default=400)
    args = parser.parse_args()
    host = ready_host()
    config = coldfront_config(host, NAME, STATE)
    host.run(["sh", "-c", f"rm -rf {DATA}; install -d -o 8801 -g 8801 -m 0700 {DATA}"])
    box = Sandbox.create(net=5)
    subprocess.run(["ip", "-n", box.client, "addr", "add", f"{DNS}/32", "dev", "lo"],
                   check=True)
    try:
        # First boots (database created) before anything is timed.
        boot_round(host, box, config)
        report = {"boot (median of rounds, seconds)": boots(host, box, config, args.rounds),
                  "critical chain": critical_chain(host, box, config),
                  "logins": logins(host, box, config, args.logins)}
    finally:
        host.cf(["stop"], config, box.host, check=False)
        host.run(["sh", "-c", f"apptainer instance stop benchplain; rm -rf {DATA} {STATE}"],
                 netns=box.host, check=False)
        box.destroy()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
