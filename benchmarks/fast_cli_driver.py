"""The timing half of ``benchmarks/fast_cli.py``: runs inside the Apptainer test host, in
the sandbox namespace, with the standard library only. Times every command from outside
(``time.perf_counter`` around the process), raw Apptainer and cf-launch alternately, and
prints one JSON object. Every instance it starts, it stops (also on failure).

    python fast_cli_driver.py SPEC.json
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any

CF = "/opt/cf-launch/bin/cf-launch"
PY = "/opt/cf-launch/bin/python"
BASE_OPTIONS = ["--boot", "-B", "/sys/fs/cgroup", "--writable-tmpfs"]


#: CPU seconds (user + system) of the last timed command and the children it waited for:
#: unlike wall time, hardly changed by other load on the machine.
CPU: list[float] = [0.0]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], env: dict[str, str] | None = None
          ) -> tuple[float, subprocess.CompletedProcess[str]]:
    cpu = _children_cpu()
    began = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=900,
                            env={**os.environ, **(env or {})}, cwd="/")
    seconds = time.perf_counter() - began
    CPU[0] = _children_cpu() - cpu
    if result.returncode not in (0, 8):
        raise RuntimeError(f"{argv} exited {result.returncode}: {result.stderr[-2000:]}")
    return seconds, result


def cf(config: str, *args: str, env: dict[str, str] | None = None
       ) -> tuple[float, subprocess.CompletedProcess[str]]:
    return timed([CF, "--config", config, *args], env)


def import_ms(stderr: str) -> float:
    """Total of the top-level imports ``-X importtime`` reports (ms)."""
    total = 0
    for line in stderr.splitlines():
        found = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S.*)$", line)
        if found and not found.group(2).startswith(" "):
            total += int(found.group(1))
    return total / 1000


def start_stop(spec: dict[str, Any], rounds: int) -> dict[str, list[float]]:
    """start/stop of one instance, raw and through cf-launch, alternately."""
    rows: dict[str, list[float]] = {k: [] for k in (
        "raw_start", "cf_start", "cf_apptainer_start", "raw_stop", "cf_stop",
        "cf_apptainer_stop", "raw_start_cpu", "cf_start_cpu", "raw_stop_cpu", "cf_stop_cpu")}
    config = spec["configs"][0]
    for i in range(rounds):
        name = f"rawbench{i}"
        seconds, _ = timed(["apptainer", "--quiet", "instance", "start", *BASE_OPTIONS,
                            spec["image"], name])
        rows["raw_start"].append(seconds)
        rows["raw_start_cpu"].append(CPU[0])
        time.sleep(1)
        seconds, _ = timed(["apptainer", "--quiet", "instance", "stop", "-t", "30", name])
        rows["raw_stop"].append(seconds)
        rows["raw_stop_cpu"].append(CPU[0])
        seconds, out = cf(config, "start", "--no-wait", "--json")
        rows["cf_start"].append(seconds)
        rows["cf_start_cpu"].append(CPU[0])
        rows["cf_apptainer_start"].append(json.loads(out.stdout)["timings"]["apptainer_start"])
        time.sleep(1)
        seconds, out = cf(config, "stop", "--json")
        rows["cf_stop"].append(seconds)
        rows["cf_stop_cpu"].append(CPU[0])
        rows["cf_apptainer_stop"].append(json.loads(out.stdout)["timings"]["apptainer_stop"])
    return rows


def status(spec: dict[str, Any], rounds: int, count: int) -> dict[str, list[float]]:
    """``instance list --json`` against ``status --json`` (one instance, with ``count``
    running) and ``status --all --json``. The first ``status`` after a start computes the
    security report (kept per instance start); it is timed apart as ``cf_status_first``."""
    rows: dict[str, list[float]] = {k: [] for k in (
        "raw_list", "cf_status", "cf_status_all", "raw_list_cpu", "cf_status_cpu",
        "cf_status_all_cpu")}
    for _ in range(rounds):
        rows["raw_list"].append(timed(["apptainer", "instance", "list", "--json"])[0])
        rows["raw_list_cpu"].append(CPU[0])
        seconds, out = cf(spec["configs"][0], "status", "--json")
        data = json.loads(out.stdout)
        assert data["running"] and data["drift"] == [], data
        rows["cf_status"].append(seconds)
        rows["cf_status_cpu"].append(CPU[0])
        seconds, out = cf(spec["configs"][0], "status", "--all", "--json")
        assert sum(r["running"] for r in json.loads(out.stdout)) >= count
        rows["cf_status_all"].append(seconds)
        rows["cf_status_all_cpu"].append(CPU[0])
    return rows


SPYTHON_PROBE = """
import json, subprocess, time
t0 = time.perf_counter()
from spython.main import Client
from spython.logger import bot
bot.level = -10
t1 = time.perf_counter()
Client.instances(return_json=True, quiet=True)
t2 = time.perf_counter()
subprocess.run(["apptainer", "--quiet", "instance", "list", "--json"], capture_output=True,
               stdin=subprocess.DEVNULL, check=False)
t3 = time.perf_counter()
Client.instances(return_json=True, quiet=True)
t4 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "spython_list": t4 - t3, "direct_list": t3 - t2,
                  "spython_first_list": t2 - t1}))
"""


def spython_cost(rounds: int) -> dict[str, list[float]]:
    """What spython adds to a hot path: its import, and ``instance list`` through spython
    against the same call run directly, in one process (one instance running)."""
    rows: dict[str, list[float]] = {}
    for _ in range(rounds):
        _s, out = timed([PY, "-c", SPYTHON_PROBE])
        for key, value in json.loads(out.stdout).items():
            rows.setdefault(key, []).append(value)
    return rows


def imports(spec: dict[str, Any], rounds: int) -> dict[str, list[float]]:
    """Wall time and import time of ``python -c pass`` and of cf-launch commands."""
    commands = {"python -c pass": [PY, "-c", "pass"],
                "--help": [CF, "--help"], "--version": [CF, "--version"],
                "status (stopped)": [CF, "--config", spec["configs"][-1], "status"],
                "hooks": [CF, "hooks"],
                "plan": [CF, "--config", spec["configs"][0], "plan", "--json"]}
    rows: dict[str, list[float]] = {}
    for label, argv in commands.items():
        for _ in range(rounds):
            seconds, _out = timed(argv)
            rows.setdefault(f"wall {label}", []).append(seconds)
            rows.setdefault(f"cpu {label}", []).append(CPU[0])
            _s, out = timed(argv, {"PYTHONPROFILEIMPORTTIME": "1"})
            rows.setdefault(f"imports {label}", []).append(import_ms(out.stderr) / 1000)
    return rows


def poll_first_ok(url: str, stop: threading.Event, found: list[float]) -> None:
    """The independent poller: GET every 10 ms; note when the first 2xx/3xx came."""
    while not stop.is_set():
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310
                code = response.status
        except urllib.error.HTTPError as err:
            code = err.code
        except (urllib.error.URLError, OSError):
            code = 0
        if 200 <= code < 400:
            found.append(time.perf_counter())
            return
        time.sleep(0.01)


def readiness(spec: dict[str, Any], rounds: int) -> dict[str, list[float]]:
    """How long after ColdFront first answered did the `cf-launch start` process exit
    (it exits right after declaring ready), seen by a poller beside it."""
    rows: dict[str, list[float]] = {"latency": [], "to_ready": []}
    config, url = spec["ready_config"], spec["ready_url"]
    for _ in range(rounds):
        stop, found = threading.Event(), []
        poller = threading.Thread(target=poll_first_ok, args=(url, stop, found))
        began = time.perf_counter()
        poller.start()
        process = subprocess.run([CF, "--config", config, "start", "--json"],
                                 capture_output=True, text=True, timeout=600, check=False,
                                 cwd="/")
        ended = time.perf_counter()
        stop.set()
        poller.join()
        try:
            if process.returncode != 0:
                raise RuntimeError(f"start exited {process.returncode}: {process.stderr}")
            if not found:
                raise RuntimeError("the poller never saw an answer")
            rows["latency"].append(ended - found[0])
            rows["to_ready"].append(ended - began)
        finally:
            cf(config, "stop")
    return rows


def main() -> None:
    with open(sys.argv[1]) as fh:
        spec = json.loads(fh.read())
    rounds = int(spec["rounds"])
    out: dict[str, Any] = {}
    started: list[str] = []
    try:
        out["start_stop"] = start_stop(spec, rounds)
        out["imports"] = imports(spec, rounds)
        cf(spec["configs"][0], "start", "--no-wait")
        started.append(spec["configs"][0])
        time.sleep(2)
        out["status_first"] = [cf(spec["configs"][0], "status", "--json")[0]]
        out["status_1"] = status(spec, rounds, 1)
        out["spython"] = spython_cost(rounds)
        for config in spec["configs"][1:]:
            cf(config, "start", "--no-wait")
            started.append(config)
        time.sleep(5)
        for config in spec["configs"][1:]:
            cf(config, "status", "--json")  # each instance's first status (security report)
        out["status_n"] = status(spec, rounds, len(started))
        out["status_n_count"] = len(started)
        for config in reversed(started[1:]):
            cf(config, "stop")
            started.remove(config)
        undo_n = []
        # stop with the others all running: undo measured from outside minus Apptainer's stop
        for config in spec["configs"][1:]:
            cf(config, "start", "--no-wait")
            started.append(config)
        for config in list(reversed(started)):
            seconds, result = cf(config, "stop", "--json")
            undo_n.append(seconds - json.loads(result.stdout)["timings"]["apptainer_stop"])
            started.remove(config)
        out["stop_overhead_with_n"] = undo_n
        if spec.get("ready_config"):
            out["readiness"] = readiness(spec, rounds)
    finally:
        for config in started:
            subprocess.run([CF, "--config", config, "stop"], capture_output=True, check=False)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
