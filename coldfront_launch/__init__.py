"""cf-launch: build, boot and network ColdFront in an Apptainer instance.

The names below are imported on first use (``import coldfront_launch`` alone loads
nothing heavy: no pyroute2, jinja2, pluggy or spython).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> the module that defines it
EXPORTS = {
    "ApptainerError": "errors", "ApptainerNotFound": "errors", "BuildError": "errors",
    "ConfigError": "errors", "HostChangeError": "errors", "LaunchError": "errors",
    "LockedError": "errors", "NotReadyError": "errors", "NotRunningError": "errors",
    "PluginError": "errors", "PreflightError": "errors", "StartError": "errors",
    "ExitCode": "exitcodes",
    "hookimpl": "plugins.spec",
    "HostChanges": "changes.host",
    "Launcher": "lifecycle.launcher", "Plan": "lifecycle.launcher", "Started": "lifecycle.launcher",
    "Settings": "config.settings", "load_settings": "config.settings",
    "Chain": "linux.netfilter", "Jump": "linux.netfilter", "Ruleset": "linux.netfilter",
    "Bind": "types", "Endpoint": "types", "InstanceInfo": "types", "LaunchContext": "types",
    "Problem": "types",
}
__all__ = [
    "ApptainerError", "ApptainerNotFound", "Bind", "BuildError", "Chain", "ConfigError", "Endpoint",
    "ExitCode", "HostChangeError", "HostChanges", "InstanceInfo", "Jump", "LaunchContext",
    "LaunchError", "Launcher", "LockedError", "NotReadyError", "NotRunningError", "Plan",
    "PluginError", "PreflightError", "Problem", "Ruleset", "Settings", "StartError", "Started",
    "hookimpl", "load_settings",
]

if TYPE_CHECKING:
    from coldfront_launch.changes.host import HostChanges
    from coldfront_launch.config.settings import Settings, load_settings
    from coldfront_launch.errors import (
        ApptainerError,
        ApptainerNotFound,
        BuildError,
        ConfigError,
        HostChangeError,
        LaunchError,
        LockedError,
        NotReadyError,
        NotRunningError,
        PluginError,
        PreflightError,
        StartError,
    )
    from coldfront_launch.exitcodes import ExitCode
    from coldfront_launch.lifecycle.launcher import Launcher, Plan, Started
    from coldfront_launch.linux.netfilter import Chain, Jump, Ruleset
    from coldfront_launch.plugins.spec import hookimpl
    from coldfront_launch.types import Bind, Endpoint, InstanceInfo, LaunchContext, Problem


def __getattr__(name: str) -> Any:
    module = EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
