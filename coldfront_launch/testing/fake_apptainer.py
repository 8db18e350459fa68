#!/usr/bin/env python3
"""A stand-in for the ``apptainer`` executable, for tests only (the process boundary).

Run as a program (never imported by cf-launch itself); it needs only the standard library.
Records argv (one JSON line per call) in ``$FAKE_APPTAINER_LOG`` and keeps instances in
``$FAKE_APPTAINER_STATE``. ``instance list --json`` answers as Apptainer 1.4 does.
Failure switches: ``FAKE_APPTAINER_FAIL_START``, ``FAKE_APPTAINER_FAIL_LIST``,
``FAKE_APPTAINER_FAIL_BUILD`` (stderr text), ``FAKE_APPTAINER_SYSTEM_STATE`` (what
``systemctl is-system-running`` prints). An instance started with ``--net`` gets an
address 10.22.0.N (or the ``IP=`` of ``--network-args``); others get none. ``build``
writes a minimal SIF (testing/sif.py) whose data is JSON: the definition, its sha256,
argv and the build's folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from typing import Any, NoReturn

STATE = os.environ.get("FAKE_APPTAINER_STATE", "/tmp/fake-apptainer-state.json")


def load() -> dict[str, Any]:
    try:
        with open(STATE) as fh:
            found: dict[str, Any] = json.load(fh)
            return found
    except FileNotFoundError:
        return {}


def save(state: dict[str, Any]) -> None:
    with open(STATE, "w") as fh:
        json.dump(state, fh)


def fail(message: str, code: int = 255) -> NoReturn:
    print(f"FATAL:   {message}", file=sys.stderr)
    sys.exit(code)


def instance_start(args: list[str]) -> None:
    if os.environ.get("FAKE_APPTAINER_FAIL_START"):
        print("INFO:    starting", file=sys.stderr)
        fail(os.environ["FAKE_APPTAINER_FAIL_START"])
    image, name = args[-2], args[-1]
    state = load()
    ip = ""
    if "--net" in args:
        ip = f"10.22.0.{2 + len(state)}"
        if "--network-args" in args:
            ip = args[args.index("--network-args") + 1].split("=", 1)[1]
    state[name] = {"instance": name, "pid": 4194305 + len(state), "img": image, "ip": ip,
                   "logErrPath": f"/tmp/{name}.err", "logOutPath": f"/tmp/{name}.out"}
    save(state)
    print("INFO:    instance started successfully", file=sys.stderr)


def instance_list(args: list[str]) -> None:
    if os.environ.get("FAKE_APPTAINER_FAIL_LIST"):
        fail(os.environ["FAKE_APPTAINER_FAIL_LIST"])
    names = [a for a in args[2:] if not a.startswith("-")]
    found = [v for k, v in load().items() if not names or k in names]
    print(json.dumps({"instances": found}, indent="\t"))


def instance_stop(args: list[str]) -> None:
    name = args[-1]
    state = load()
    if name not in state:
        fail(f"no instance found with name {name}")
    del state[name]
    save(state)


def running(target: str) -> str:
    name = target.replace("instance://", "")
    if name not in load():
        fail(f"instance {name} does not exist")
    return name


def exec_in(args: list[str]) -> None:
    if args[1] == "--pwd":
        os.chdir(args[2])
        args = args[:1] + args[3:]
    print("WARNING: a line Apptainer prints on stderr", file=sys.stderr)
    name = running(args[1])
    command = args[2:]
    if command[:2] == ["systemctl", "is-system-running"]:
        print(os.environ.get("FAKE_APPTAINER_SYSTEM_STATE", "running"))
    elif command[:1] == ["journalctl"]:
        print("journal of " + name + ": " + " ".join(command[1:]))
    elif command[:1] != ["systemctl"]:
        os.execvp(command[0], command)


def build(args: list[str]) -> None:
    definition, image = args[-1], args[-2]
    print(f"INFO:    Starting build of {definition}")
    for i in range(3):
        print(f"building step {i}")
        print(f"log line {i}", file=sys.stderr)
    if os.environ.get("FAKE_APPTAINER_FAIL_BUILD"):
        fail(os.environ["FAKE_APPTAINER_FAIL_BUILD"])
    with open(definition, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    built = json.dumps({"definition": definition, "sha256": digest, "args": args,
                        "cwd": os.getcwd()})
    with open(image, "wb") as fh:  # a SIF header, then what the build saw as its data
        fh.write(_sif().sif_bytes(built.encode()))
    print("INFO:    Build complete")


def _sif() -> Any:
    """coldfront_launch/testing/sif.py, beside this file, loaded by its path (this program
    runs with any Python, cf-launch importable or not)."""
    import importlib.util

    where = os.path.join(os.path.dirname(os.path.realpath(__file__)), "sif.py")
    spec = importlib.util.spec_from_file_location("_fake_apptainer_sif", where)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str]) -> None:
    log = os.environ.get("FAKE_APPTAINER_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(json.dumps([os.path.basename(argv[0])] + argv[1:]) + "\n")
    args = [a for a in argv[1:] if a not in ("--quiet", "--debug", "-q", "-d")]
    if args[:1] in (["--version"], ["version"]):
        print("apptainer version 1.4.5")
    elif args[:2] == ["instance", "start"]:
        instance_start(args)
    elif args[:2] == ["instance", "list"]:
        instance_list(args)
    elif args[:2] == ["instance", "stop"]:
        instance_stop(args)
    elif args[:1] == ["exec"]:
        exec_in(args)
    elif args[:1] == ["shell"]:
        where = args[2] if args[1] == "--pwd" else ""
        print(f"shell in {running(args[-1])}" + (f" at {where}" if where else ""))
    elif args[:1] == ["build"]:
        build(args)
    else:
        print(f"fake apptainer: unsupported call {args}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv)
