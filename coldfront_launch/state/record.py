"""The launch record (``launch.json`` in the state folder): which plugins and image an
instance was started with, so ``stop`` and ``status`` use those, not today's settings."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coldfront_launch import atomic

FILE = "launch.json"


@dataclass(frozen=True)
class LaunchRecord:
    """``mode``: ``started`` (cf-launch started it), ``prepared`` (``prepare`` ran; the
    site starts it) or ``attached`` (``attach`` finished the host for it)."""

    hooks: tuple[str, ...] = ()
    image: str = ""
    pid: int = 0
    mode: str = ""
    #: Where ColdFront answers, once the instance runs ("" until then, or from older
    #: versions): ``status`` reads it instead of loading the plugins to ask.
    url: str = ""
    #: How far ``start`` got: ``pre_start`` (the host being prepared), ``instance`` (the
    #: instance runs; post_start not done), ``done``; "" from older versions (done).
    phase: str = ""

    @property
    def unfinished(self) -> bool:
        """The instance was started, but cf-launch's start never finished it."""
        return self.mode == "started" and self.phase in ("pre_start", "instance")

    @property
    def starter_alive(self) -> bool:
        """The process that wrote the record still runs (a start still in progress)."""
        try:
            os.kill(self.pid, 0)
        except (OSError, OverflowError):
            return False
        return self.pid > 0 and self.pid != os.getpid()

    def hooks_or(self, default: tuple[str, ...]) -> tuple[str, ...]:
        """The plugins the instance was started with; ``default`` if unrecorded."""
        return self.hooks or default

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"hooks": list(self.hooks), "image": self.image,
                                "pid": self.pid, "mode": self.mode}
        if self.url:
            data["url"] = self.url
        if self.phase:
            data["phase"] = self.phase
        return data


def write(state_dir: Path, hooks: tuple[str, ...], image: Path, mode: str = "started",
          phase: str = "") -> None:
    record = LaunchRecord(tuple(hooks), str(image), os.getpid(), mode, phase=phase)
    atomic.write_json(state_dir / FILE, record.to_json())


def read(state_dir: Path) -> LaunchRecord:
    """The record, or an empty one when there is none (or it is unreadable)."""
    try:
        data = json.loads((state_dir / FILE).read_text())
        return LaunchRecord(tuple(data.get("hooks") or ()), str(data.get("image") or ""),
                            int(data.get("pid") or 0), str(data.get("mode") or "started"),
                            str(data.get("url") or ""), str(data.get("phase") or ""))
    except (OSError, ValueError, TypeError, AttributeError):
        return LaunchRecord()


def set_url(state_dir: Path, url: str) -> None:
    """Add where ColdFront answers to the record (atomically; no record, nothing done)."""
    launched = read(state_dir)
    if launched.hooks or launched.image:
        data = {**launched.to_json(), "url": url}
        atomic.write_json(state_dir / FILE, data)


def set_phase(state_dir: Path, phase: str) -> None:
    """Record how far ``start`` got (atomically; no record, nothing done)."""
    launched = read(state_dir)
    if launched.hooks or launched.image:
        atomic.write_json(state_dir / FILE, {**launched.to_json(), "phase": phase,
                                             "pid": os.getpid()})


def remove(state_dir: Path) -> None:
    (state_dir / FILE).unlink(missing_ok=True)
