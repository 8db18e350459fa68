"""How many gunicorn workers ColdFront gets: ``[coldfront] workers``, else 2 × the CPUs
the instance may use + 1, lowered so that they fit its memory limit. The image's
``coldfront-defaults`` applies the same rule at boot when cf-launch did not say."""

from __future__ import annotations

import math

from coldfront_launch.config.settings import Settings
from coldfront_launch.linux import cpus

MAX_WORKERS = 256
#: Memory of the rest of the instance (systemd, nginx, Redis, qcluster) and of one worker:
#: measured resident sizes (docs/production.md), rounded up.
BASE_MEMORY = 384 << 20
WORKER_MEMORY = 128 << 20


def rule(cpu_count: float, memory: int | None) -> int:
    """2 × CPUs + 1, at most what ``memory`` holds (at least one), at most 256."""
    workers = 2 * math.ceil(cpu_count) + 1
    if memory is not None:
        workers = min(workers, max(1, (memory - BASE_MEMORY) // WORKER_MEMORY))
    return max(1, min(MAX_WORKERS, workers))


def workers(settings: Settings) -> int:
    """The workers of this instance (see the module's docstring)."""
    if settings.coldfront.workers:
        return settings.coldfront.workers
    limits = settings.resources
    count: float = cpus.usable_cpus()
    if limits.cpus is not None:
        count = min(count, limits.cpus)
    memory = cpus.memory_limit()
    if limits.memory is not None:
        memory = min(memory, limits.memory) if memory is not None else limits.memory
    return rule(count, memory)
