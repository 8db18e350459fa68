"""Apptainer: builds through spython, with spython's sharp edges handled; ``instance
start``, ``stop`` and ``list`` run directly (one process each, no spython import), since
they are on the paths users and monitoring wait for.

spython only runs an executable named ``singularity`` (Apptainer installs that link), logs a
failed ``instance start`` instead of raising, calls ``sys.exit`` on some paths, prints to
stdout, and streams builds with stderr on an unread pipe. Each is handled here, and every
failure becomes a typed :class:`~coldfront_launch.errors.ApptainerError` carrying stderr.

Beside the client: ``conf`` (apptainer.conf, the setuid starters), ``layers`` (the layered,
content-addressed build), ``imageinfo`` (what an image says about itself) and ``shutdown``
(the graceful stop of a booted instance).
"""

from __future__ import annotations

import itertools
import json
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

from coldfront_launch.errors import ApptainerError, ApptainerNotFound, BuildError, StartError
from coldfront_launch.types import InstanceInfo


def locate() -> str:
    """The ``apptainer`` executable; check that spython's ``singularity`` resolves to it."""
    apptainer = shutil.which("apptainer")
    singularity = shutil.which("singularity")
    if apptainer is None and singularity is None:
        raise ApptainerNotFound(
            "Apptainer is not installed (neither apptainer nor singularity is on PATH)",
            hint=_install_hint())
    if singularity is None:
        raise ApptainerNotFound(
            f"Apptainer is at {apptainer}, but the `singularity` link that spython runs is missing",
            hint=f"create it: ln -s {apptainer} {Path(str(apptainer)).parent}/singularity")
    return apptainer or str(singularity)


def _install_hint() -> str:
    from coldfront_launch.linux import (
        distro,  # only on this error path: reading os-release costs start-up time
    )
    return distro.install_hint("apptainer")


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


def start(image: Path, name: str, options: list[str], env: dict[str, str] | None = None,
          wrapper: Callable[[list[str]], list[str]] | None = None) -> InstanceInfo:
    """``apptainer --quiet instance start``, with ``env`` added to the environment that
    systemd inside inherits (and the command passed through ``wrapper``, e.g. into the
    unit's cgroup namespace); raise StartError if it did not start.

    Run directly, as spython runs it (stderr read; stdout not captured, since the
    instance's daemon must not hold a pipe of ours), without spython's import and its
    ``--version`` process: start's overhead over Apptainer's own time is what users wait
    for (figures in docs/architecture.md)."""
    cmd = [locate(), "--quiet", "instance", "start", *options, str(image), name]
    if wrapper is not None:
        cmd = wrapper(cmd)
    try:
        result = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, check=False,
                                env={**os.environ, **(env or {})})
    except OSError as err:
        raise StartError(f"apptainer instance start {name} failed: {err}") from None
    info = find(name)
    if info is None:
        logs = [str(p) for p in log_paths(name) if p.is_file() and p.stat().st_size]
        raise StartError(f"apptainer instance start {name} failed",
                         stderr=(result.stderr or "").strip(),
                         hint="Apptainer's log: " + ", ".join(logs) if logs else
                         "`cf-launch plan` shows the exact command")
    return info


def log_paths(name: str) -> tuple[Path, Path]:
    """Where Apptainer 1.4 keeps an instance's output and error log (they outlive it)."""
    folder = (Path.home() / ".apptainer" / "instances" / "logs" / socket.gethostname()
              / pwd.getpwuid(os.getuid()).pw_name)
    return folder / f"{name}.out", folder / f"{name}.err"


def list_instances() -> list[InstanceInfo]:
    """All running instances: one ``apptainer instance list --json``.

    Run directly rather than through spython, whose call adds a ``--version`` process and
    the import of spython itself (``status`` runs this every few seconds). Exit codes are
    read as spython reads them: 255 is a failure, any other non-zero means none running."""
    cmd = [locate(), "--quiet", "instance", "list", "--json"]
    try:
        result = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        raise ApptainerError("apptainer instance list failed (timed out after 60s)") from None
    if result.returncode == 255:
        raise ApptainerError("apptainer instance list failed", stderr=result.stderr.strip(),
                             hint="check the Apptainer installation: `apptainer instance list`")
    if result.returncode != 0:
        return []
    try:
        raw = json.loads(result.stdout or "{}").get("instances") or []
    except (ValueError, AttributeError):
        raise ApptainerError("apptainer instance list printed no JSON",
                             stderr=result.stdout[-2000:]) from None
    return [_info(item) for item in raw if isinstance(item, dict)]


def find(name: str) -> InstanceInfo | None:
    """The running instance called ``name``, if any."""
    return next((i for i in list_instances() if i.name == name), None)


def stop(name: str, timeout: int = 30, force: bool = False) -> None:
    """``apptainer instance stop`` (SIGTERM, SIGKILL after ``timeout``; ``force``: SIGKILL
    at once); a missing instance is not an error (idempotent).

    One process when it works; the list is asked only when the stop reported a failure
    (then the instance still running is the failure, its absence is not)."""
    if force:
        subprocess.run([locate(), "instance", "stop", "--force", name], capture_output=True,
                       stdin=subprocess.DEVNULL, check=False, timeout=60)
        return
    cmd = [locate(), "--quiet", "instance", "stop", "-t", str(timeout), name]
    try:
        result = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, timeout=timeout + 60, check=False)
    except subprocess.TimeoutExpired:
        raise ApptainerError(f"apptainer instance stop {name} did not return "
                             f"within {timeout + 60}s") from None
    if result.returncode != 0 and find(name) is not None:
        raise ApptainerError(f"apptainer instance stop {name} failed",
                             stderr=result.stderr.strip())


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
    return _capture([f"instance://{name}", *argv], argv, timeout)


def exec_image(image: Path, argv: list[str], options: tuple[str, ...] = (),
               timeout: float = 30) -> Probe:
    """:func:`exec_capture` in a throw-away container of ``image`` (``options``: e.g.
    ``--bind``, ``--env``)."""
    return _capture([*options, str(image), *argv], argv, timeout)


def _capture(target: list[str], argv: list[str], timeout: float) -> Probe:
    cmd = [locate(), "exec", "--pwd", "/", *target]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                check=False)
    except subprocess.TimeoutExpired:
        return Probe(124, "", f"timed out after {timeout:.0f}s: {' '.join(argv)}")
    return Probe(result.returncode, result.stdout.strip(), result.stderr.strip())


def booted_init(pid: int) -> bool:
    """Whether ``pid`` is a systemd in a mount namespace of its own (an instance booted
    with ``--boot``), so that ``nsenter`` asks the instance, never this host."""
    try:
        return (pid > 0 and Path(f"/proc/{pid}/comm").read_text().strip() == "systemd"
                and os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt"))
    except OSError:
        return False


#: Run by ``nsenter`` outside the instance's PID namespace; the command it forks is inside.
#: ``; exit`` keeps the shell from exec'ing the command in its own place.
_WAITER = '"$@"; exit $?'


def probe_inside(name: str, pid: int, argv: list[str], timeout: float = 30) -> Probe:
    """:func:`exec_capture`, but by entering the namespaces of the instance's systemd
    (``pid``) with ``nsenter`` when it is a booted instance and this process is root:
    about 6 ms against about 65 ms (mostly CPU) for ``apptainer exec``. Falls back to
    ``apptainer exec`` when ``nsenter`` cannot enter or prints nothing.

    nsenter does not fork (``--no-fork``): it execs the instance's ``sh``, still outside
    the PID namespace, and the shell forks the command inside it (systemd answers only
    clients in its PID namespace). nsenter's own fork would stop itself whenever the
    command is stopped, and systemd's shutdown stops every process before it kills them:
    the killed command would then stay a zombie of a stopped nsenter, and the instance's
    init could never exit. The shell only waits, and reaps."""
    if booted_init(pid) and os.geteuid() == 0:
        cmd = ["nsenter", "-t", str(pid), "-a", "-r", "-w", "--no-fork",
               "sh", "-c", _WAITER, "sh", *argv]
        try:
            result = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                                    text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return Probe(124, "", f"timed out after {timeout:.0f}s: {' '.join(argv)}")
        except OSError:
            result = None
        if result is not None and result.stdout.strip() and not result.stderr.startswith(
                "nsenter:"):
            return Probe(result.returncode, result.stdout.strip(), result.stderr.strip())
    return exec_capture(name, argv, timeout)


def exec_argv(name: str, argv: list[str], pwd: str = "") -> list[str]:
    """The argv that runs a command interactively inside the instance (in ``pwd``: else
    Apptainer tries the caller's folder, and warns when the image lacks it)."""
    return [locate(), "exec", *(["--pwd", pwd] if pwd else []), f"instance://{name}", *argv]


def shell_argv(name: str, pwd: str = "") -> list[str]:
    return [locate(), "shell", *(["--pwd", pwd] if pwd else []), f"instance://{name}"]
