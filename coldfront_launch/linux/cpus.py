"""How many CPUs and how much memory this process may use: its CPU affinity and the
limits of its cgroup and every cgroup above it (cgroup v2 ``cpu.max``/``memory.max``; v1
``cpu.cfs_quota_us``/``memory.limit_in_bytes``). Under ``cf-launch@NAME.service`` that is
the unit's ``CPUQuota=``/``MemoryMax=``, not the host's count."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
UNLIMITED_V1 = 1 << 62


def usable_cpus(root: Path = CGROUP_ROOT, proc: Path = Path("/proc/self/cgroup")) -> int:
    """Whole CPUs: the affinity mask's size, lowered by a CPU quota (rounded up)."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)
    quota = _cpu_quota(root, proc)
    return max(1, min(count, math.ceil(quota))) if quota else max(1, count)


def memory_limit(root: Path = CGROUP_ROOT, proc: Path = Path("/proc/self/cgroup")
                 ) -> int | None:
    """The lowest memory limit (bytes) on this process's cgroup path; None: none."""
    found = [value for folder in _folders(root, proc, ("memory",))
             for value in (_number(folder / "memory.max"),
                           _number(folder / "memory.limit_in_bytes"))
             if value is not None and value < UNLIMITED_V1]
    return min(found) if found else None


def _cpu_quota(root: Path, proc: Path) -> float | None:
    quotas = []
    for folder in _folders(root, proc, ("cpu", "cpu,cpuacct")):
        try:
            quota, _, period = (folder / "cpu.max").read_text().partition(" ")
            if quota != "max":
                quotas.append(int(quota) / int(period))
            continue
        except (OSError, ValueError):
            pass
        v1_quota = _number(folder / "cpu.cfs_quota_us")
        v1_period = _number(folder / "cpu.cfs_period_us")
        if v1_quota is not None and v1_quota > 0 and v1_period:
            quotas.append(v1_quota / v1_period)
    return min(quotas) if quotas else None


def _folders(root: Path, proc: Path, controllers: tuple[str, ...]) -> list[Path]:
    """This process's cgroup folder and its parents, for the v2 hierarchy and the v1
    hierarchy of ``controllers``."""
    try:
        lines = proc.read_text().splitlines()
    except OSError:
        return []
    folders = []
    for line in lines:
        _, names, path = line.split(":", 2)
        if names == "":
            base = root
        elif names in controllers:
            base = root / names
        else:
            continue
        current = (base / path.lstrip("/")) if path != "/" else base
        while True:
            folders.append(current)
            if current == base or base not in current.parents:
                break
            current = current.parent
    return folders


def _number(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
