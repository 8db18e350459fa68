"""A test plugin that records which hooks ran, in order, and makes real (tmp) host changes."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from coldfront_launch import hookimpl
from coldfront_launch.types import Bind, Endpoint, Problem

LOG = "RECORDER_LOG"


def _note(name: str) -> None:
    path = os.environ.get(LOG)
    if path:
        with open(path, "a") as fh:
            fh.write(name + "\n")


@hookimpl
def cf_launch_validate(ctx):  # type: ignore[no-untyped-def]
    _note("validate")


@hookimpl
def cf_launch_preflight(ctx):  # type: ignore[no-untyped-def]
    _note("preflight")
    return []


@hookimpl
def cf_launch_start_options(ctx):  # type: ignore[no-untyped-def]
    _note("start_options")
    return ["--hostname", "recorder"]


@hookimpl
def cf_launch_binds(ctx):  # type: ignore[no-untyped-def]
    _note("binds")
    return [Bind("/etc/recorder.conf", content="recorded=1\n")]


@hookimpl
def cf_launch_pre_start(ctx, host):  # type: ignore[no-untyped-def]
    from coldfront_launch.linux import sysctl
    if str(sysctl.SYSCTL_ROOT) == "/proc/sys":
        raise AssertionError("unit tests must never set this machine's real sysctls")
    _note("pre_start")
    target = os.environ.get("RECORDER_FILE")
    if target:
        host.write_file(Path(target), "made by recorder\n")
    host.set_sysctl("net.ipv4.ip_forward", "1")


@hookimpl
def cf_launch_check_instance(ctx, instance):  # type: ignore[no-untyped-def]
    _note("check_instance")
    return [Problem("recorder", "told to refuse", fatal=True)] \
        if os.environ.get("RECORDER_REFUSE_ATTACH") else []


@hookimpl
def cf_launch_post_start(ctx, host, instance):  # type: ignore[no-untyped-def]
    _note("post_start")
    if os.environ.get("RECORDER_KILL_IN_POST_START") and not ctx.planning:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("RECORDER_HANG_IN_POST_START") and not ctx.planning:
        Path(os.environ["RECORDER_HANG_IN_POST_START"]).touch()
        time.sleep(60)


@hookimpl
def cf_launch_readiness_endpoint(ctx, instance):  # type: ignore[no-untyped-def]
    _note("readiness_endpoint")
    endpoint = json.loads(os.environ.get("RECORDER_ENDPOINT", '["127.0.0.1", 9]'))
    return Endpoint(endpoint[0], endpoint[1])


def _misbehave(hook: str) -> None:
    """RECORDER_FAIL=<hook>:raise|exit|interrupt: a plugin bug in that hook."""
    wanted, _, how = os.environ.get("RECORDER_FAIL", "").partition(":")
    if wanted != hook:
        return
    if how == "exit":
        raise SystemExit(3)
    if how == "interrupt":
        raise KeyboardInterrupt
    raise RuntimeError(f"recorder told to fail in {hook}")


@hookimpl
def cf_launch_pre_stop(ctx, instance):  # type: ignore[no-untyped-def]
    _note("pre_stop")
    _misbehave("pre_stop")


@hookimpl
def cf_launch_post_stop(ctx):  # type: ignore[no-untyped-def]
    _note("post_stop")
    _misbehave("post_stop")
