"""Run the override hook's host side in the current (sandbox) namespace, no Apptainer:
validate, preflight, then pre_start on the real host (the metadata rule); stop undoes it.
Used by test_metadata_netns.py.

    python -m tests.netns.override_driver start STATE_ROOT NETNS_PATH [--allow-metadata]
    python -m tests.netns.override_driver stop STATE_ROOT NETNS_PATH
"""

from __future__ import annotations

import json
import sys

from coldfront_launch.changes.host import RealHost
from coldfront_launch.changes.undo import undo_all
from coldfront_launch.config.settings import settings_from_mapping
from coldfront_launch.lifecycle.launcher import Launcher
from tests.netns.bridge_driver import checked

NAME = "netnsover"


def launcher(state_root: str, netns_path: str, allow_metadata: bool) -> Launcher:
    return Launcher(settings_from_mapping({
        "name": NAME, "state_root": state_root, "hooks": ["override"],
        "hook": {"override": {"netns_path": netns_path, "ports": [65006],
                              "allow_metadata": allow_metadata}},
    }))


def start(state_root: str, netns_path: str, allow_metadata: bool) -> None:
    lch = launcher(state_root, netns_path, allow_metadata)
    ctx = lch.context()
    runner = checked(ctx, ["override"])
    host = RealHost(lch.state, lch.settings.state_root)
    with lch.state.locked():
        runner.pre_start(ctx, host)
    print(json.dumps([c.to_json() for c in host.changes]))


def stop(state_root: str, netns_path: str) -> None:
    lch = launcher(state_root, netns_path, False)
    with lch.state.locked():
        failures = undo_all(lch.state, lch.settings.state_root, lambda _name: None)
    if failures:
        raise SystemExit("; ".join(failures))


if __name__ == "__main__":
    verb, root, path = sys.argv[1:4]
    if verb == "start":
        start(root, path, "--allow-metadata" in sys.argv)
    else:
        stop(root, path)
