"""Benchmark: the bridge hook's own time against Apptainer's `instance start`, same run.

Boots N instances of the Debian base image one after another with `cf-launch start
--hook bridge` in a sandbox namespace (real Apptainer, CNI, iptables), then stops them
all. `start --json`/`stop --json` report per-phase seconds measured inside cf-launch:
pre_start and post_start (the hook's own work), apptainer_start (the baseline), and on
stop undo (the hook's teardown) against apptainer_stop.

    sudo .venv/bin/python -m benchmarks.bridge_hook [--instances 20] [--markdown FILE]

Needs root and the Apptainer test host (tests/host/provision.sh).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import textwrap
import time
from pathlib import Path

from benchmarks.testhost import ready_host
from tests.host.harness import WORK, Sandbox, TestHost

STATE = f"{WORK}/bench-state"


def build_base(host: TestHost) -> str:
    config = host.write(f"{WORK}/bench-build.toml", textwrap.dedent("""
        [build]
        layers = ["debian-base"]
        fakeroot = true
        cache_dir = "/var/cache/cf-launch"
    """))
    return str(json.loads(host.cf(["build", "--json"], config).stdout)["image"])


def instance_config(host: TestHost, index: int, image: str) -> str:
    return host.write(f"{WORK}/bench-{index}.toml", textwrap.dedent(f"""
        name = "bench{index}"
        image = "{image}"
        state_root = "{STATE}"
        [hook.bridge]
        ports = ["{10000 + index}:80"]
    """))


def run(instances: int) -> dict[str, list[float]]:
    host = ready_host()
    image = build_base(host)
    box = Sandbox.create(net=5)
    configs = [instance_config(host, i, image) for i in range(instances)]
    rows: dict[str, list[float]] = {k: [] for k in
                                    ("pre_start", "post_start", "apptainer_start",
                                     "undo", "apptainer_stop")}
    started: list[str] = []
    try:
        for config in configs:
            out = json.loads(host.cf(["start", "--no-wait", "--json"], config, box.host).stdout)
            started.append(config)
            for key in ("pre_start", "post_start", "apptainer_start"):
                rows[key].append(out["timings"][key])
        for config in configs:
            out = json.loads(host.cf(["stop", "--json"], config, box.host).stdout)
            started.remove(config)
            rows["undo"].append(out["timings"]["undo"])
            rows["apptainer_stop"].append(out["timings"]["apptainer_stop"])
    finally:
        for config in started:
            host.cf(["stop"], config, box.host, check=False)
        box.destroy()
    return rows


def ms(value: float) -> str:
    return f"{value * 1000:.0f} ms"


def report(rows: dict[str, list[float]]) -> str:
    hook = [a + b for a, b in zip(rows["pre_start"], rows["post_start"])]
    base = rows["apptainer_start"]
    n = len(hook)
    share = [h / b for h, b in zip(hook, base)]
    head, tail = slice(0, min(5, n)), slice(max(0, n - 5), n)
    lines = [
        f"Instances started one after another: {n} (each stays up until all are started).",
        "",
        "| measure | first instance | median of all | mean of first 5 | mean of last 5 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, values in (("hook pre_start", rows["pre_start"]),
                          ("hook post_start", rows["post_start"]),
                          ("hook total (pre + post)", hook),
                          ("apptainer instance start (baseline)", base),
                          ("hook stop (undo journal)", rows["undo"]),
                          ("apptainer instance stop", rows["apptainer_stop"])):
        lines.append(f"| {label} | {ms(values[0])} | {ms(statistics.median(values))} | "
                     f"{ms(statistics.mean(values[head]))} | {ms(statistics.mean(values[tail]))} |")
    lines.append(f"| hook share of apptainer start | {share[0]:.0%} | "
                 f"{statistics.median(share):.0%} | {statistics.mean(share[head]):.0%} | "
                 f"{statistics.mean(share[tail]):.0%} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=20)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    began = time.monotonic()
    rows = run(args.instances)
    text = report(rows)
    print(text)
    print(f"(benchmark took {time.monotonic() - began:.0f} s)", file=sys.stderr)
    if args.markdown:
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
