"""Benchmark: graceful stop against today's `apptainer instance stop`, and the SQLite
database after many start/write/stop cycles. Same run, same image, same sandbox.

For an idle ColdFront (the real image, bridge hook, sandbox namespace), each round starts
the instance twice:
- **baseline**: `apptainer instance stop NAME` (what cf-launch's stop ran before: SIGTERM to
  systemd inside, which re-executes itself, then Apptainer's kill), timed around that
  command, then `cf-launch stop` only undoes the host changes;
- **graceful**: `cf-launch stop`, whose `apptainer_stop` is the poweroff inside and the
  wait for the instance to exit.
Then `--cycles` rounds of start, one write through Django (a new user), graceful stop;
then `PRAGMA integrity_check` and a count of the users written.

    sudo .venv/bin/python -m benchmarks.graceful_stop [--rounds 5] [--cycles 20]

Needs root and the Apptainer test host (tests/host/provision.sh); builds the ColdFront
image if the cache lacks it.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import time

from benchmarks.testhost import coldfront_config, ready_host
from tests.host.harness import WORK, Sandbox

STATE = f"{WORK}/bench-state"
NAME = "benchgrace"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cycles", type=int, default=20)
    args = parser.parse_args()
    host = ready_host()
    config = coldfront_config(host, NAME, STATE)
    box = Sandbox.create(net=6)
    baseline: list[float] = []
    graceful: list[float] = []
    try:
        for _ in range(args.rounds):
            host.cf(["start", "--json"], config, box.host)
            began = time.monotonic()
            host.run(["apptainer", "instance", "stop", NAME])
            baseline.append(time.monotonic() - began)
            host.cf(["stop"], config, box.host)
            host.cf(["start", "--json"], config, box.host)
            stopped = json.loads(host.cf(["stop", "--json"], config, box.host).stdout)
            if stopped["shutdown"] != "poweroff":
                raise SystemExit(f"graceful stop fell back: {stopped}")
            graceful.append(stopped["timings"]["apptainer_stop"])
        for cycle in range(args.cycles):
            host.cf(["start", "--json"], config, box.host)
            host.run(["/opt/cf-launch/bin/cf-launch", "exec", NAME, "--",
                      "/srv/coldfront/venv/bin/coldfront", "shell", "-c",
                      "from django.contrib.auth.models import User; "
                      f"User.objects.create_user('bench{cycle}', password='x')"])
            stopped = json.loads(host.cf(["stop", "--json"], config, box.host).stdout)
            if stopped["shutdown"] != "poweroff":
                raise SystemExit(f"cycle {cycle}: graceful stop fell back: {stopped}")
    finally:
        host.cf(["stop"], config, box.host, check=False)
        box.destroy()
    database = host.path(f"{STATE}/{NAME}/data/coldfront.db")
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        check = db.execute("PRAGMA integrity_check").fetchone()[0]
        users = db.execute("SELECT count(*) FROM auth_user WHERE username LIKE 'bench%'"
                           ).fetchone()[0]
    base, grace = statistics.median(baseline), statistics.median(graceful)
    print(f"| stop of an idle ColdFront ({args.rounds} rounds) | median | min | max |")
    print("| --- | --- | --- | --- |")
    for label, rows in (("apptainer instance stop (baseline)", baseline),
                        ("graceful: poweroff inside until the instance is gone", graceful)):
        print(f"| {label} | {statistics.median(rows):.2f} s | {min(rows):.2f} s | "
              f"{max(rows):.2f} s |")
    print(f"\ngraceful − baseline: {grace - base:+.2f} s (goal: at most +1 s)")
    print(f"{args.cycles} start/write/stop cycles: integrity_check = {check}, "
          f"{users} of {args.cycles} users present")


if __name__ == "__main__":
    main()
