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
    "hookimpl": "hookspecs",
    "HostChanges": "host",
    "Launcher": "launcher", "Plan": "launcher", "Started": "launcher",
    "Settings": "settings", "load_settings": "settings",
    "Bind": "types", "Endpoint": "types", "InstanceInfo": "types", "LaunchContext": "types",
    "Problem": "types",
}
__all__ = [
    "ApptainerError", "ApptainerNotFound", "Bind", "BuildError", "ConfigError", "Endpoint",
    "ExitCode", "HostChangeError", "HostChanges", "InstanceInfo", "LaunchContext",
    "LaunchError", "Launcher", "LockedError", "NotReadyError", "NotRunningError", "Plan",
    "PluginError", "PreflightError", "Problem", "Settings", "StartError", "Started",
    "hookimpl", "load_settings",
]

if TYPE_CHECKING:
    from .errors import (
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
    from .exitcodes import ExitCode
    from .hookspecs import hookimpl
    from .host import HostChanges
    from .launcher import Launcher, Plan, Started
    from .settings import Settings, load_settings
    from .types import Bind, Endpoint, InstanceInfo, LaunchContext, Problem


def __getattr__(name: str) -> Any:
    module = EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
