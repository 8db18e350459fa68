"""Apptainer through spython, with spython's sharp edges handled.

spython only runs an executable named ``singularity`` (Apptainer installs that link), logs a
failed ``instance start`` instead of raising, calls ``sys.exit`` on some paths, prints to
stdout, and streams builds with stderr on an unread pipe. Each is handled here, and every
failure becomes a typed :class:`~coldfront_launch.errors.ApptainerError` carrying stderr.
"""

from __future__ import annotations

import ast
import itertools
import os
import pwd
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from . import distro
from .errors import ApptainerError, ApptainerNotFound, BuildError, StartError
from .types import InstanceInfo


def locate() -> str:
    """The ``apptainer`` executable; check that spython's ``singularity`` resolves to it."""
    apptainer = shutil.which("apptainer")
    singularity = shutil.which("singularity")
    if apptainer is None and singularity is None:
        raise ApptainerNotFound(
            "Apptainer is not installed (neither apptainer nor singularity is on PATH)",
            hint=distro.install_hint("apptainer"))
    if singularity is None:
        raise ApptainerNotFound(
            f"Apptainer is at {apptainer}, but the `singularity` link that spython runs is missing",
            hint=f"create it: ln -s {apptainer} {Path(str(apptainer)).parent}/singularity")
    return apptainer or str(singularity)


@contextmanager
def _spython_guard(action: str, error: type[ApptainerError] = ApptainerError
                   ) -> Iterator[list[str]]:
    """Silence spython's logger, collect what it would log as errors, trap ``sys.exit``."""
    from spython.logger import bot

    captured: list[str] = []
    saved_level = bot.level
    bot.level = -10  # below every level: spython prints nothing of its own
    bot.error = lambda message: captured.append(str(message))
    bot.exit = _raise_exit(action, error)
    try:
        yield captured
    except SystemExit as err:
        raise error(f"{action} failed (spython exited with {err.code})") from None
    finally:
        bot.level = saved_level
        for name in ("error", "exit"):
            bot.__dict__.pop(name, None)


def _raise_exit(action: str, error: type[ApptainerError]) -> Any:
    def _exit(message: str, return_code: int = 1) -> None:
        raise error(f"{action} failed", stderr=str(message))
    return _exit


def _client() -> Any:
    locate()
    from spython.main import Client
    return Client


def _stderr_of(messages: list[str]) -> str:
    """spython logs ``"[stderr lines] : return code N"``; recover the text."""
    text = "\n".join(messages)
    text = text.rsplit(" : return code", 1)[0]
    if text.startswith("[") and text.endswith("]"):
        try:
            return "".join(str(p) for p in ast.literal_eval(text))
        except (ValueError, SyntaxError):
            pass
    return text


def build(definition: Path, output: Path, options: list[str], cwd: Path,
          on_line: Callable[[str], None]) -> None:
    """Build one image with ``Client.build``, calling ``on_line`` with each output line.

    The build runs in ``cwd`` (``%files`` sources are relative to the definition's
    folder); ``on_line`` always runs in the caller's own working directory."""
    client = _client()
    tail: list[str] = []
    with _spython_guard(f"building {definition.name}", BuildError):
        try:
            for line in _started_build(client, definition, output, options, cwd):
                tail = (tail + [line])[-40:]
                on_line(line)
        except subprocess.CalledProcessError:
            raise BuildError(f"apptainer build of {definition.name} failed",
                             stderr="\n".join(tail),
                             hint="the lines above show Apptainer's output; "
                                  "rerun with --verbose for all of it") from None


def _started_build(client: Any, definition: Path, output: Path, options: list[str],
                   cwd: Path) -> Iterator[str]:
    """Start ``apptainer build`` in ``cwd``; return its output lines.

    spython streams stdout only and leaves stderr on a pipe it reads at the end, so a
    chatty build fills that pipe and deadlocks: its ``stream_command`` is patched to merge
    stderr for this call. spython has no cwd parameter, so the process changes folder
    to start the build. Both last only until the build process exists."""
    import spython.main.build as spython_build
    from spython.utils import stream_command

    original = spython_build.stream_command
    previous_cwd = os.getcwd()
    spython_build.stream_command = partial(stream_command, output_type="both")
    try:
        os.chdir(cwd)
        _image, lines = client.build(recipe=str(definition), image=str(output), sudo=False,
                                     stream=True, options=options, quiet=True, force=True)
        first = next(lines, None)  # the process starts here, in cwd
    finally:
        spython_build.stream_command = original
        os.chdir(previous_cwd)
    head = [] if first is None else [first]
    return (line.rstrip("\n") for line in itertools.chain(head, lines))


def start(image: Path, name: str, options: list[str],
          env: dict[str, str] | None = None) -> InstanceInfo:
    """``apptainer instance start`` through spython, with ``env`` added to the environment
    that systemd inside inherits; raise StartError if it did not start."""
    client = _client()
    with _spython_guard(f"starting instance {name}", StartError) as errors:
        instance = client.instance(str(image), name=name, start=False, options=options)
        instance.start(options=list(options), quiet=True,
                       environ={**os.environ, **(env or {})})
    info = find(name)
    if info is None:
        logs = [str(p) for p in log_paths(name) if p.is_file() and p.stat().st_size]
        raise StartError(f"apptainer instance start {name} failed", stderr=_stderr_of(errors),
                         hint="Apptainer's log: " + ", ".join(logs) if logs else
                         "`cf-launch plan` shows the exact command")
    return info


def log_paths(name: str) -> tuple[Path, Path]:
    """Where Apptainer 1.4 keeps an instance's output and error log (they outlive it)."""
    folder = (Path.home() / ".apptainer" / "instances" / "logs" / socket.gethostname()
              / pwd.getpwuid(os.getuid()).pw_name)
    return folder / f"{name}.out", folder / f"{name}.err"


def list_instances() -> list[InstanceInfo]:
    """All running instances (``instance list --json``)."""
    client = _client()
    with _spython_guard("listing instances") as errors:
        raw = client.instances(return_json=True, quiet=True)
    if errors:  # spython logs a failed list and returns [], which would read as "none running"
        raise ApptainerError("apptainer instance list failed", stderr=_stderr_of(errors),
                             hint="check the Apptainer installation: `apptainer instance list`")
    if isinstance(raw, dict):  # spython unwraps a single match
        raw = [raw]
    return [_info(item) for item in raw or []]


def find(name: str) -> InstanceInfo | None:
    """The running instance called ``name``, if any."""
    return next((i for i in list_instances() if i.name == name), None)


def stop(name: str, timeout: int = 30, force: bool = False) -> None:
    """``apptainer instance stop`` (SIGTERM, SIGKILL after ``timeout``; ``force``: SIGKILL
    at once); a missing instance is not an error (idempotent)."""
    if find(name) is None:
        return
    if force:
        subprocess.run([locate(), "instance", "stop", "--force", name], capture_output=True,
                       check=False, timeout=60)
        return
    client = _client()
    with _spython_guard(f"stopping instance {name}") as errors:
        instance = client.instance(f"instance://{name}", name=name, start=False)
        code = instance.stop(timeout=timeout, quiet=True)
    if code not in (0, None) and find(name) is not None:
        raise ApptainerError(f"apptainer instance stop {name} failed", stderr=_stderr_of(errors))


def _info(item: dict[str, Any]) -> InstanceInfo:
    return InstanceInfo(
        name=item.get("instance") or item.get("daemon_name") or "",
        pid=int(item.get("pid") or 0),
        image=item.get("img") or item.get("container_image") or "",
        ip=item.get("ip") or "",
        log_out=item.get("logOutPath") or "",
        log_err=item.get("logErrPath") or "",
    )


@dataclass(frozen=True)
class Probe:
    """What a command inside the instance printed: parse ``out``; ``err`` is diagnostics
    (Apptainer's own warnings land there too)."""

    code: int
    out: str
    err: str


def exec_capture(name: str, argv: list[str], timeout: float = 30) -> Probe:
    """Run a command inside the instance, in ``/`` whatever the caller's folder (a folder
    missing in the image makes Apptainer warn, and must not change the answer)."""
    cmd = [locate(), "exec", "--pwd", "/", f"instance://{name}", *argv]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                check=False)
    except subprocess.TimeoutExpired:
        return Probe(124, "", f"timed out after {timeout:.0f}s: {' '.join(argv)}")
    return Probe(result.returncode, result.stdout.strip(), result.stderr.strip())


def exec_argv(name: str, argv: list[str]) -> list[str]:
    """The argv that runs a command interactively inside the instance."""
    return [locate(), "exec", f"instance://{name}", *argv]


def shell_argv(name: str) -> list[str]:
    return [locate(), "shell", f"instance://{name}"]
