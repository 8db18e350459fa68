"""Seconds per phase, for ``start --json``, ``stop --json`` and the benchmarks."""

from __future__ import annotations

import time


class Stopwatch:
    """Laps between marks, and the total since creation."""

    def __init__(self) -> None:
        self.began = self.mark = time.monotonic()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps[name] = now - self.mark
        self.mark = now

    def total(self) -> float:
        return time.monotonic() - self.began
