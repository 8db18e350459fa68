"""The ``[resources]`` settings: the instance's CPU, memory and process limits, given to
Apptainer as ``--cpus``, ``--memory`` and ``--pids-limit`` (cgroups; docs/production.md).
Validation only."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from coldfront_launch.config import validate as v
from coldfront_launch.errors import ConfigError

SECTION = "resources"
KEYS = {"cpus", "memory", "pids"}
MEMORY = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?", re.IGNORECASE)
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
#: Less than this and ColdFront (gunicorn, nginx, Redis, systemd) cannot boot.
MIN_MEMORY = 256 << 20
MAX_CPUS = 4096


@dataclass(frozen=True)
class ResourceSettings:
    """Limits of the whole instance; None: no limit (Apptainer's default)."""

    cpus: float | None = None
    memory: int | None = None  # bytes
    pids: int | None = None

    def apptainer_options(self) -> list[str]:
        """The ``instance start`` options that apply the limits."""
        options: list[str] = []
        if self.cpus is not None:
            options += ["--cpus", f"{self.cpus:g}"]
        if self.memory is not None:
            options += ["--memory", str(self.memory)]
        if self.pids is not None:
            options += ["--pids-limit", str(self.pids)]
        return options

    @property
    def limited(self) -> bool:
        return (self.cpus, self.memory, self.pids) != (None, None, None)

    def to_raw(self) -> dict[str, Any]:
        return {k: val for k, val in vars(self).items() if val is not None}


def memory(setting: str, value: Any) -> int:
    """Bytes: a whole number, or ``"512M"``, ``"2G"``, ``"1.5GiB"`` (powers of 1024)."""
    number: float
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and (found := MEMORY.fullmatch(value.strip())):
        number = float(found.group(1)) * UNITS[found.group(2).upper()]  # inf: too much
    else:
        raise ConfigError(setting, f"{v.shown(value)} is not an amount of memory",
                          'e.g. "4G", "512M" or a number of bytes')
    if number > 1 << 50:
        raise ConfigError(setting, f"{v.shown(value)} is more memory than any host has",
                          'e.g. "4G"')
    if number < MIN_MEMORY:
        raise ConfigError(setting, f"{int(number)} bytes is less than ColdFront needs to "
                          "boot", f"give at least {MIN_MEMORY >> 20}M")
    return int(number)


def cpus(setting: str, value: Any) -> float:
    """A number of CPUs above 0 (fractions allowed: ``1.5``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(setting, f"{v.shown(value)} is not a number of CPUs",
                          "e.g. 2 or 1.5")
    if not 0.01 <= value <= MAX_CPUS:
        raise ConfigError(setting, f"{v.shown(value)} is outside 0.01-{MAX_CPUS}",
                          "e.g. 2 or 1.5")
    return float(value)


def resources_from_mapping(data: Any) -> ResourceSettings:
    """Validate the ``[resources]`` table."""
    data = v.table(SECTION, data, KEYS)
    return ResourceSettings(
        cpus=cpus(f"{SECTION}.cpus", data["cpus"]) if "cpus" in data else None,
        memory=memory(f"{SECTION}.memory", data["memory"]) if "memory" in data else None,
        pids=v.whole_number(f"{SECTION}.pids", data["pids"], 32, 4194304)
        if "pids" in data else None,
    )
