"""cf-launch: build, boot and network ColdFront in an Apptainer instance."""

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
    PreflightError,
    StartError,
)
from .hookspecs import hookimpl
from .host import HostChanges
from .launcher import Launcher, Plan, Started
from .settings import Settings, load_settings
from .types import Bind, Endpoint, LaunchContext, Problem

__all__ = [
    "ApptainerError", "ApptainerNotFound", "Bind", "BuildError", "ConfigError", "Endpoint",
    "HostChangeError", "HostChanges", "LaunchContext", "LaunchError", "Launcher", "LockedError",
    "NotReadyError", "NotRunningError", "Plan", "PreflightError", "Problem", "Settings",
    "StartError", "Started", "hookimpl", "load_settings",
]
