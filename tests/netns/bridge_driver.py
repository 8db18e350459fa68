"""Run the bridge hook's host side in the current (sandbox) namespace, with the real CNI
bridge plugin standing in for Apptainer's network setup. Used by test_bridge_netns.py.

    python -m tests.netns.bridge_driver start STATE_ROOT CONTAINER_NS PID [--kill]
        [--allow-metadata]
    python -m tests.netns.bridge_driver stop STATE_ROOT CONTAINER_NS
    python -m tests.netns.bridge_driver drift|repair STATE_ROOT CONTAINER_NS
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from coldfront_launch import hookimpl, plugins
from coldfront_launch.changes.host import RealHost
from coldfront_launch.changes.undo import undo_all
from coldfront_launch.config.settings import settings_from_mapping
from coldfront_launch.hooks.bridge import cni as bridge_cni
from coldfront_launch.hooks.bridge.settings import parse
from coldfront_launch.lifecycle.launcher import Launcher
from coldfront_launch.types import InstanceInfo, LaunchContext

CNI_PATH = "/usr/lib/cni"
NAME = "netnstest"


class Killer:
    """Runs after the bridge's post_start (trylast) and kills the process: a crash."""

    @hookimpl(trylast=True)
    def cf_launch_post_start(self, ctx, host, instance):  # type: ignore[no-untyped-def]
        os.kill(os.getpid(), signal.SIGKILL)


def launcher(state_root: str, hooks: list[str], allow_metadata: bool = False) -> Launcher:
    section = {"cni_config_dir": f"{state_root}/cni", "ports": [80, "8443:443"],
               "allow_metadata": allow_metadata}
    if os.environ.get("CF_TEST_SUBNET6"):  # IPv6 beside IPv4 (test_bridge_ipv6_netns.py)
        section["subnet6"] = os.environ["CF_TEST_SUBNET6"]
    settings = settings_from_mapping({
        "name": NAME, "state_root": state_root, "hooks": hooks, "hook": {"bridge": section},
    })
    return Launcher(settings)


def cni(command: str, state_root: str, container_ns: str) -> dict:  # type: ignore[type-arg]
    """Invoke the real CNI bridge plugin with the conflist the hook wrote, as a runtime would."""
    lch = launcher(state_root, ["bridge"])
    settings = parse(lch.context())
    conflist = json.loads(bridge_cni.conflist_path(settings).read_text()) \
        if command == "ADD" else json.loads(Path(state_root, "conflist.json").read_text())
    if command == "ADD":
        Path(state_root, "conflist.json").write_text(json.dumps(conflist))
    plugin = dict(conflist["plugins"][0], name=conflist["name"],
                  cniVersion=conflist["cniVersion"])
    plugin["ipam"] = dict(plugin["ipam"], dataDir=f"{state_root}/ipam")  # keep leases local
    env = {**os.environ, "CNI_COMMAND": command, "CNI_CONTAINERID": NAME,
           "CNI_NETNS": f"/run/netns/{container_ns}", "CNI_IFNAME": "eth0", "CNI_PATH": CNI_PATH}
    result = subprocess.run([f"{CNI_PATH}/bridge"], input=json.dumps(plugin), env=env,
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"CNI {command} failed: {result.stdout} {result.stderr}")
    return json.loads(result.stdout) if result.stdout.strip() else {}


def checked(ctx: LaunchContext, hooks: list[str]) -> plugins.Hooks:
    """The plugins' validate and preflight, as the launcher runs them (without the core's
    checks: no Apptainer here); a fatal problem ends the driver."""
    runner = plugins.Hooks(tuple(hooks), internal=False)
    runner.validate(ctx)
    fatal = [p for p in runner.preflight(ctx) if p.fatal]
    if fatal:
        raise SystemExit("; ".join(f"{p.message} (hint: {p.hint})" for p in fatal))
    return runner


def start(state_root: str, container_ns: str, pid: int, kill: bool,
          allow_metadata: bool = False) -> None:
    hooks = ["bridge"]
    if kill:
        plugins.register(Killer(), "killer")
        hooks.append("killer")
    lch = launcher(state_root, hooks, allow_metadata)
    ctx = lch.context()
    runner = checked(ctx, hooks)
    host = RealHost(lch.state, lch.settings.state_root)
    with lch.state.locked():
        runner.pre_start(ctx, host)
        if not Path(state_root, "conflist.json").exists():
            host.track_instance(NAME)  # as the launcher does
            result = cni("ADD", state_root, container_ns)
            Path(state_root, "ip").write_text(result["ips"][0]["address"].split("/")[0])
        ip = Path(state_root, "ip").read_text()
        runner.post_start(ctx, host, InstanceInfo(NAME, pid, "none.sif", ip))
    print(json.dumps({"ip": ip, "changes": [c.to_json() for c in host.changes]}))


def stop(state_root: str, container_ns: str) -> None:
    lch = launcher(state_root, ["bridge"])
    with lch.state.locked():
        failures = undo_all(lch.state, lch.settings.state_root,
                            lambda _name: cni("DEL", state_root, container_ns) and None)
    if failures:
        raise SystemExit("; ".join(failures))


def inspect(state_root: str, verb: str) -> None:
    """``drift`` or ``repair``, as `cf-launch status`/`repair` run them, printed as JSON."""
    lch = launcher(state_root, ["bridge"])
    print(json.dumps(lch.drift() if verb == "drift" else lch.repair()))


if __name__ == "__main__":
    verb, root, ns = sys.argv[1:4]
    if verb in ("drift", "repair"):
        inspect(root, verb)
    elif verb == "start":
        start(root, ns, int(sys.argv[4]), "--kill" in sys.argv, "--allow-metadata" in sys.argv)
    else:
        stop(root, ns)
