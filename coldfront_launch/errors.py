"""Typed errors: each carries a one-line cause and a hint for the administrator."""

from __future__ import annotations

from coldfront_launch.exitcodes import ExitCode


class Terminated(SystemExit):
    """SIGTERM to cf-launch (exit 128 + 15): unlike a plugin's own ``sys.exit``, which
    cf-launch reports and never takes as its exit, this one ends the command (a start in
    progress undoes what it did)."""


class LaunchError(Exception):
    """Base class. ``str(err)`` is the one-line cause; ``hint`` says what to do.

    A subclass names its exit code as a class keyword:
    ``class NotReadyError(LaunchError, exit_code=ExitCode.NOT_READY)``."""

    exit_code: ExitCode = ExitCode.FAILURE
    hint = "run `cf-launch doctor` for a check of the host and settings"
    #: Extra lines shown after the one-line cause (e.g. failed units, a journal tail).
    details: str = ""

    def __init_subclass__(cls, exit_code: ExitCode | None = None, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if exit_code is not None:
            cls.exit_code = exit_code

    def __init__(self, message: str, hint: str = "", details: str = "") -> None:
        super().__init__(message)
        if hint:
            self.hint = hint
        if details:
            self.details = details


class ConfigError(LaunchError, exit_code=ExitCode.CONFIG):
    """A setting is invalid. Nothing on the host was changed."""

    def __init__(self, setting: str, message: str, hint: str = "") -> None:
        super().__init__(f"{setting}: {message}",
                         hint or f"correct {setting} (settings: docs/configuration.md)")
        self.setting = setting


class PluginError(LaunchError):
    """A plugin's hook raised something other than a cf-launch error: a plugin bug (or,
    in ``validate``, a setting the plugin could not read)."""

    def __init__(self, plugin: str, hook: str, error: BaseException) -> None:
        super().__init__(f"plugin {plugin} failed in {hook}: {type(error).__name__}: {error}",
                         f"check the [hook.{plugin}] settings, or report it to the "
                         f"plugin's authors (`cf-launch hooks` shows where it comes from)")
        self.plugin = plugin
        self.exit_code = ExitCode.CONFIG if hook == "cf_launch_validate" else \
            ExitCode.INTERNAL


class PreflightError(LaunchError, exit_code=ExitCode.PREFLIGHT):
    """The host is not ready for the requested action. Nothing was changed."""


class ApptainerError(LaunchError, exit_code=ExitCode.APPTAINER):
    """An Apptainer command failed; ``stderr`` holds what Apptainer printed."""

    def __init__(self, message: str, stderr: str = "", hint: str = "") -> None:
        cause = message
        last = _last_meaningful_line(stderr)
        if last:
            cause = f"{message}: {last}"
        super().__init__(cause, hint)
        self.stderr = stderr


class ApptainerNotFound(ApptainerError):
    """Neither ``apptainer`` nor the ``singularity`` link spython runs is on PATH."""


class BuildError(ApptainerError):
    """``apptainer build`` failed for one layer."""


class StartError(ApptainerError):
    """``apptainer instance start`` failed; everything done before it was undone."""


class NotReadyError(LaunchError, exit_code=ExitCode.NOT_READY):
    """The instance started but did not become ready in time."""


class HostChangeError(LaunchError, exit_code=ExitCode.HOST_CHANGE):
    """A change to the host (file, sysctl, firewall, link) failed."""


class LockedError(LaunchError, exit_code=ExitCode.LOCKED):
    """Another cf-launch process holds this instance's lock."""


class NotRunningError(LaunchError, exit_code=ExitCode.NOT_RUNNING):
    """The named instance is not running."""


class InstanceRunningError(LaunchError, exit_code=ExitCode.RUNNING):
    """The instance runs, and the command needs it stopped. Nothing was changed."""


class ArchiveError(LaunchError, exit_code=ExitCode.BAD_ARCHIVE):
    """A backup archive is damaged, unsafe or not a cf-launch backup. Nothing was changed."""
    hint = "nothing was changed; use another backup (`cf-launch backup` makes one)"


class DataExistsError(LaunchError, exit_code=ExitCode.DATA_EXISTS):
    """``restore`` would replace existing data and ``--force`` was not given."""


class RolledBackError(LaunchError, exit_code=ExitCode.ROLLED_BACK):
    """``upgrade``: the new image failed, and the previous image (and data) run again."""


class RollbackFailedError(LaunchError, exit_code=ExitCode.ROLLBACK_FAILED):
    """``upgrade``: the new image failed, and so did the rollback."""


class UnsupportedDatabaseError(LaunchError):
    """The site's database is not a SQLite file in the data folder (out of scope for now)."""


def _last_meaningful_line(text: str) -> str:
    """The last line of Apptainer's stderr that states an error, else the last non-empty one."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith(("FATAL", "ERROR")):
            return line
    return lines[-1] if lines else ""
