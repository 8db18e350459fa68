"""Benchmark: cf-launch beside raw Apptainer, in one run (issue 15, "Fast CLI").

In a sandbox namespace of the Apptainer test host (real Apptainer 1.4.5, CNI, iptables),
the driver (``fast_cli_driver.py``, run inside the test host) times from outside:

- start: ``apptainer instance start --boot`` against ``cf-launch start --no-wait`` (bridge);
- stop: ``apptainer instance stop`` against ``cf-launch stop``, and cf-launch's overhead
  (its wall time less the ``instance stop`` it ran, i.e. without the graceful shutdown);
- status: ``apptainer instance list --json`` against ``cf-launch status --json`` with one
  instance running, and ``status --all --json`` with N running;
- the import time and wall time of commands, against ``python -c pass``;
- readiness: how long after ColdFront first answered (an independent poller, every 10 ms)
  the ``cf-launch start`` process returned.

    sudo .venv/bin/python -m benchmarks.fast_cli [--rounds 5] [--instances 20] [--json F]

Needs root and the Apptainer test host (tests/host/provision.sh); stops what it starts.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from benchmarks.bridge_hook import STATE, build_base
from benchmarks.testhost import ready_host
from tests.host.harness import WORK, Sandbox, TestHost
from tests.integration.conftest import build_config

NET = 6
READY_PORT = 10080


def config(host: TestHost, name: str, image: str, port: int, extra: str = "") -> str:
    return host.write(f"{WORK}/{name}.toml", textwrap.dedent(f"""
        name = "{name}"
        image = "{image}"
        state_root = "{STATE}"
        {extra}
        [hook.bridge]
        ports = ["{port}:80"]
    """))


def machine(host: TestHost) -> str:
    cpus = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    mem = Path("/proc/meminfo").read_text().split()[1]
    version = host.run(["apptainer", "--version"]).stdout.strip()
    return (f"{cpus} cores, {int(mem) // 1024 // 1024 + 1} GB, kernel {platform.release()}, "
            f"{version}, Python in the test host: "
            + host.run(["/opt/cf-launch/bin/python", "-V"]).stdout.strip())


def run(rounds: int, instances: int, readiness: bool = True) -> dict[str, Any]:
    host = ready_host()
    base = build_base(host)
    coldfront = str(json.loads(host.cf(
        ["build", "--json"], build_config(host, ["debian-base", "coldfront"]),
        timeout=1800).stdout)["image"])
    box = Sandbox.create(net=NET)
    try:
        spec = {
            "rounds": rounds,
            "image": base,
            "configs": [config(host, f"fast{i}", base, 10100 + i) for i in range(instances)],
            "ready_config": config(host, "fastready", coldfront, READY_PORT,
                                   "ready_timeout = 300") if readiness else "",
            "ready_url": f"http://{box.host_addr}:{READY_PORT}/user/login",
        }
        host.write(f"{WORK}/fast-spec.json", json.dumps(spec))
        out = host.run(["/opt/cf-launch/bin/python", "/src/benchmarks/fast_cli_driver.py",
                        f"{WORK}/fast-spec.json"], netns=box.host, timeout=3600)
        result: dict[str, Any] = json.loads(out.stdout)
        result["machine"] = machine(host)
        return result
    finally:
        box.destroy()


def profile() -> str:
    """One bridge instance: where ``start --no-wait``, ``status --json`` and ``stop`` spend
    their time (benchmarks/profile_cli.py), with the import total of each."""
    from benchmarks.fast_cli_driver import import_ms
    host = ready_host()
    base = build_base(host)
    box = Sandbox.create(net=NET)
    parts = []
    try:
        conf = config(host, "fastprof", base, 10099)
        for args in (["start", "--no-wait", "--json"], ["status", "--json"],
                     ["stop", "--json"]):
            out = host.run(["/opt/cf-launch/bin/python", "-X", "importtime",
                            "/src/benchmarks/profile_cli.py", "--config", conf, *args],
                           netns=box.host)
            table = [line for line in out.stderr.splitlines() if line.startswith("|")]
            parts.append(f"`cf-launch {' '.join(args)}`: imports "
                         f"{import_ms(out.stderr):.0f} ms (`-X importtime`, top-level); "
                         f"the largest: {largest_imports(out.stderr)}\n\n"
                         + "\n".join(table) + "\n")
    finally:
        host.run(["/opt/cf-launch/bin/cf-launch", "--config", f"{WORK}/fastprof.toml", "stop"],
                 netns=box.host, check=False)
        box.destroy()
    return "\n".join(parts)


def largest_imports(stderr: str, count: int = 8) -> str:
    """The packages that took longest to import (cumulative ms, ``-X importtime``), each
    counted once at its outermost import."""
    found: dict[str, int] = {}
    for line in stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)$", line)
        if match and len(match.group(2)) <= 2:
            name = match.group(3)
            top = name if name.startswith("coldfront_launch") else name.split(".")[0]
            found[top] = max(found.get(top, 0), int(match.group(1)))
    ranked = sorted(found.items(), key=lambda kv: -kv[1])[:count]
    return ", ".join(f"{name} {us / 1000:.0f}" for name, us in ranked)


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ms"


def spread(values: list[float]) -> str:
    return f"{min(values) * 1000:.0f}–{max(values) * 1000:.0f}"


def diff(a: list[float], b: list[float]) -> list[float]:
    return [x - y for x, y in zip(a, b)]


def report(r: dict[str, Any]) -> str:
    s, st1, stn = r["start_stop"], r["status_1"], r["status_n"]
    n = r["status_n_count"]
    undo_n = r["stop_overhead_with_n"]
    lines = [
        f"Machine: {r['machine']}. Median of {len(s['raw_start'])} rounds (range in "
        "brackets, ms); raw and cf-launch alternate in one run. CPU: user + system seconds "
        "of the command and the processes it waited for (less sensitive to other load than "
        "wall time).",
        "",
        "| measure | raw Apptainer | cf-launch | overhead (wall) | CPU raw / cf-launch | goal |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| start (`instance start --boot` / `start --no-wait`, bridge) | {ms(s['raw_start'])} "
        f"({spread(s['raw_start'])}) | {ms(s['cf_start'])} ({spread(s['cf_start'])}) | "
        f"{ms(diff(s['cf_start'], s['raw_start']))} | {ms(s['raw_start_cpu'])} / "
        f"{ms(s['cf_start_cpu'])} | ≤ 150 ms |",
        f"| … of which Apptainer inside cf-launch (with CNI networking) | | "
        f"{ms(s['cf_apptainer_start'])} | {ms(diff(s['cf_start'], s['cf_apptainer_start']))}"
        " outside Apptainer | | |",
        f"| stop (`instance stop` / `stop`) | {ms(s['raw_stop'])} ({spread(s['raw_stop'])}) | "
        f"{ms(s['cf_stop'])} ({spread(s['cf_stop'])}) | "
        f"{ms(diff(s['cf_stop'], s['cf_apptainer_stop']))} without Apptainer's stop | "
        f"{ms(s['raw_stop_cpu'])} / {ms(s['cf_stop_cpu'])} | ≤ 150 ms |",
        f"| stop overhead, {n - 1} others running (first 5 stops) | | | "
        f"{ms(undo_n[:5])} ({spread(undo_n[:5])}) | | ≤ 300 ms |",
        f"| status, 1 running (`instance list --json` / `status --json`) | "
        f"{ms(st1['raw_list'])} | {ms(st1['cf_status'])} ({spread(st1['cf_status'])}) | "
        f"{ms(diff(st1['cf_status'], st1['raw_list']))} | {ms(st1['raw_list_cpu'])} / "
        f"{ms(st1['cf_status_cpu'])} | total ≤ 200 ms |",
        f"| … the first `status --json` after a start (computes the security report) | | "
        f"{ms(r['status_first'])} | | | |",
        f"| status of one, {n} running (`status --json`) | {ms(stn['raw_list'])} | "
        f"{ms(stn['cf_status'])} ({spread(stn['cf_status'])}) | "
        f"{ms(diff(stn['cf_status'], stn['raw_list']))} | {ms(stn['raw_list_cpu'])} / "
        f"{ms(stn['cf_status_cpu'])} | total ≤ 500 ms |",
        f"| status of all, {n} running (`status --all --json`) | {ms(stn['raw_list'])} | "
        f"{ms(stn['cf_status_all'])} ({spread(stn['cf_status_all'])}) | "
        f"{ms(diff(stn['cf_status_all'], stn['raw_list']))} | {ms(stn['raw_list_cpu'])} / "
        f"{ms(stn['cf_status_all_cpu'])} | total ≤ 500 ms |",
    ]
    if "readiness" in r:
        rd = r["readiness"]
        lines.append(f"| ready declared after ColdFront's first answer (independent poller) | "
                     f"| {ms(rd['latency'])} ({spread(rd['latency'])}) | | | ≤ 200 ms |")
    sp = r["spython"]
    lines += ["", "spython on the hot paths (one process, one instance running; median ms):", "",
              "| import spython.main | `instance list` through spython (first call / later) "
              "| the same call run directly |", "| --- | --- | --- |",
              f"| {ms(sp['import'])} | {ms(sp['spython_first_list'])} / "
              f"{ms(sp['spython_list'])} | {ms(sp['direct_list'])} |"]
    lines += ["", "| command | wall | CPU | imports (`-X importtime`) |",
              "| --- | --- | --- | --- |"]
    imp = r["imports"]
    for key in imp:
        if key.startswith("wall "):
            label = key[5:]
            lines.append(f"| `{label}` | {ms(imp[key])} ({spread(imp[key])}) | "
                         f"{ms(imp['cpu ' + label])} | {ms(imp['imports ' + label])} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--instances", type=int, default=20)
    parser.add_argument("--json", type=Path, help="Also write the raw figures here.")
    parser.add_argument("--profile", action="store_true",
                        help="Only profile one start, status and stop (where time goes).")
    parser.add_argument("--no-readiness", action="store_true",
                        help="Skip the readiness rounds (they boot ColdFront each time).")
    args = parser.parse_args()
    began = time.monotonic()
    if args.profile:
        print(profile())
        return
    result = run(max(5, args.rounds), max(2, args.instances), not args.no_readiness)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print(report(result))
    print(f"(benchmark took {time.monotonic() - began:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
