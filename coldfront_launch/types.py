"""The values passed between the core and the hooks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coldfront_launch.config.settings import Settings

# What ``cf-launch plan`` hands hooks for the instance's address, unknown until it runs.
PLACEHOLDER_IP = "<instance-ip>"


@dataclass(frozen=True)
class LaunchContext:
    """What every hook call receives.

    :ivar settings: the validated launcher settings.
    :ivar hooks: the hooks active for this launch, in the order given.
    :ivar state_dir: this instance's state folder on the host.
    :ivar planning: True under ``cf-launch plan``: describe, do not inspect live instances.
    """

    settings: Settings
    hooks: tuple[str, ...]
    state_dir: Path
    planning: bool = False

    def section(self, hook: str) -> dict[str, Any]:
        """The ``[hook.<hook>]`` settings table."""
        return self.settings.hook_section(hook)


@dataclass(frozen=True)
class InstanceInfo:
    """One running instance, from ``apptainer instance list --json``.

    :ivar ip: its address on a CNI network, with the prefix length (``10.22.0.5/16``);
        empty when it has none (the ``override`` plugin shares the host's network).
    """

    name: str
    pid: int
    image: str
    ip: str = ""
    log_out: str = ""
    log_err: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "pid": self.pid, "image": self.image, "ip": self.ip,
                "log_out": self.log_out, "log_err": self.log_err}


@dataclass(frozen=True)
class Bind:
    """A file to bind into the container.

    Give ``content`` (cf-launch writes it into the state folder and removes it on stop) or
    ``source`` (any existing host file or folder, e.g. ``/dev/null`` to mask a unit).
    Binds are read-only unless ``readonly=False``. ``mode`` is the written file's mode.
    """

    target: str
    content: str | None = None
    source: Path | None = None
    readonly: bool = True
    mode: int = 0o644


@dataclass(frozen=True)
class Endpoint:
    """Where the readiness probe sends its HTTP request; ``fallback``: an address of the
    other family, asked when nothing answers at ``host`` (whichever answers is used)."""

    host: str
    port: int = 80
    scheme: str = "http"
    fallback: str = ""

    def url(self, path: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{path}"

    def fallback_url(self, path: str) -> str:
        """The same URL at ``fallback`` ("" without one)."""
        return Endpoint(self.fallback, self.port, self.scheme).url(path) if self.fallback \
            else ""


@dataclass(frozen=True)
class Problem:
    """One finding of a preflight check.

    :ivar check: a short name of what was checked (``"ports"``).
    :ivar message: what is wrong, one line.
    :ivar hint: how to fix it.
    :ivar fatal: ``True`` (the default) stops ``start``; ``False`` is a warning.
    """

    check: str
    message: str
    hint: str = ""
    fatal: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "message": self.message, "hint": self.hint,
                "fatal": self.fatal}
