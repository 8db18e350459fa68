"""``cf-launch doctor``: every check before a start, and on a running instance its
security report and drift, each as a :class:`~coldfront_launch.types.Problem` with a fix."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from coldfront_launch import apptainer, plugins
from coldfront_launch.coldfront import hardening
from coldfront_launch.config.settings import Settings
from coldfront_launch.errors import ConfigError, LaunchError
from coldfront_launch.lifecycle import readiness
from coldfront_launch.lifecycle.sequence import LaunchSequence
from coldfront_launch.types import LaunchContext, Problem


def check(settings: Settings, sequence: Callable[[], LaunchSequence],
          context: Callable[[], LaunchContext], drift: Callable[[], list[str]]
          ) -> list[Problem]:
    """Core and plugin checks (an empty list: ready to start). ``sequence`` builds the
    plugins to run (it raises ConfigError for bad settings: then the core's own checks run
    alone, on ``context``); ``drift`` reads a running instance's drift."""
    problems: list[Problem] = []
    loaded = plugins.load()
    for name, error in loaded.failed.items():
        problems.append(Problem(f"plugin {name}", f"failed to load: {error}",
                                "fix or uninstall it", fatal=name in settings.hooks))
    try:
        seq = sequence()
        problems += seq.validate()
        problems += seq.preflight()
    except ConfigError as err:
        problems.append(Problem("config", str(err), err.hint))
        problems += plugins.Hooks(()).preflight(context())  # the core's own checks
    with contextlib.suppress(LaunchError):  # no Apptainer: the core's check says so
        running = apptainer.find(settings.name)
        if running is not None:
            booted = readiness.system_state_of(running.name, running.pid) in readiness.BOOTED
            problems += hardening.problems(
                hardening.cached_report(settings.state_dir, running, booted))
            problems += [Problem("drift", found, "`cf-launch repair` puts it back",
                                 fatal=False) for found in drift()]
    return problems
