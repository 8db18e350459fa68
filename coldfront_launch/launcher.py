"""The Python API: everything the CLI does, as methods of :class:`Launcher`."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import appdata, apptainer, builder, plugins, readiness, record, status
from .changes import HostChange
from .errors import ConfigError, HostChangeError, LaunchError, NotRunningError, PreflightError
from .host import RealHost, RecordingHost
from .sequence import LaunchSequence
from .settings import Settings
from .state import InstanceState
from .timing import Stopwatch
from .types import PLACEHOLDER_IP, Endpoint, InstanceInfo, LaunchContext, Problem
from .undo import check_namespace, undo_all

Report = Callable[[str], None]


@dataclass
class Plan:
    """What ``start`` would do: the exact command and every host change."""

    command: list[str]
    binds: list[str]
    changes: list[HostChange]
    problems: list[Problem] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "command_line": shlex.join(self.command),
            "binds": self.binds,
            "changes": [c.to_json() for c in self.changes],
            "problems": [p.to_json() for p in self.problems],
        }


@dataclass
class Started:
    """The result of ``start``."""

    instance: InstanceInfo
    readiness: readiness.Readiness | None
    changes: list[HostChange] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        ready = self.readiness
        return {
            "instance": self.instance.to_json(),
            "changes": [c.to_json() for c in self.changes],
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "ready": ready is not None,
            "system_state": ready.system_state if ready else "",
            "failed_units": ready.failed_units if ready else [],
            "url": ready.url if ready else "",
            "seconds_to_ready": round(ready.seconds, 1) if ready else None,
        }


class Launcher:
    """Build, plan, start, stop and inspect one ColdFront instance."""

    def __init__(self, settings: Settings, report: Report | None = None) -> None:
        self.settings = settings
        self.state = InstanceState(settings.state_dir)
        self.report: Report = report or (lambda _message: None)

    def context(self, hooks: tuple[str, ...] | None = None,
                planning: bool = False) -> LaunchContext:
        return LaunchContext(self.settings, hooks or self.settings.hooks,
                             self.settings.state_dir, planning)

    def sequence(self, hooks: tuple[str, ...] | None = None,
                 planning: bool = False) -> LaunchSequence:
        return LaunchSequence.create(self.settings, hooks, planning)

    def _recorded_sequence(self) -> LaunchSequence:
        """The plugins the instance was started with (else today's settings)."""
        return self.sequence(record.read(self.settings.state_dir).hooks_or(self.settings.hooks))

    def _check_image(self) -> Path:
        image = self.settings.image_path
        if not image.exists():
            hint = "run `cf-launch build` first" if self.settings.image is None \
                else "check the path, or build one with `cf-launch build`"
            raise ConfigError("image", f"{image} does not exist", hint)
        return image

    # --- plan ------------------------------------------------------------------------

    def plan(self) -> Plan:
        """Run the sequence against a recorder: exactly what ``start`` would do, changing
        nothing."""
        seq = self.sequence(planning=True)
        problems = seq.validate()
        problems += seq.preflight()
        host = RecordingHost()
        prepared = seq.before_start(host)
        seq.after_start(host, InstanceInfo(self.settings.name, 0, str(self.settings.image_path),
                                           PLACEHOLDER_IP))
        return Plan(seq.command(prepared.options), prepared.bind_specs, host.changes, problems)

    # --- start -----------------------------------------------------------------------

    def start(self, wait: bool = True) -> Started:
        """Prepare the host, start the instance, finish the host, then wait until ready."""
        seq = self.sequence()
        for warning in seq.validate():
            self.report(f"warning: {warning.check}: {warning.message}")
        image = self._check_image()
        apptainer.locate()
        with self.state.locked():
            if apptainer.find(self.settings.name) is not None:
                raise LaunchError(f"instance {self.settings.name} is already running",
                                  "see `cf-launch status`; use `cf-launch restart` to restart")
            self._clean_leftovers()
            fatal = [p for p in seq.preflight() if p.fatal]
            if fatal:
                raise PreflightError("; ".join(p.message for p in fatal),
                                     fatal[0].hint or "run `cf-launch doctor`")
            appdata.ensure(self.settings.state_dir)
            record.write(self.settings.state_dir, seq.ctx.hooks, self.settings.image_path)
            host = RealHost(self.state, self.settings.state_root)
            clock = Stopwatch()
            owner = os.getpid()
            try:
                self.report("preparing the host")
                prepared = seq.before_start(host)
                clock.lap("pre_start")
                self.report(f"starting instance {self.settings.name}")
                host.track_instance(self.settings.name)
                info = apptainer.start(image, self.settings.name, prepared.options)
                clock.lap("apptainer_start")
                seq.after_start(host, info)
                clock.lap("post_start")
            except BaseException:
                if os.getpid() != owner:  # a forked copy of this process: not ours to undo
                    raise
                self.report("start failed: undoing every change made so far")
                left = undo_all(self.state, self.settings.state_root, apptainer.stop)
                if left:
                    self.report("could not undo: " + "; ".join(left) +
                                " (kept in the journal: fix the cause, then `cf-launch stop`)")
                else:
                    record.remove(self.settings.state_dir)
                raise
        endpoint = seq.endpoint(info)
        record.set_url(self.settings.state_dir, endpoint.url(self.settings.readiness_path))
        ready = self.wait_ready(info, seq, endpoint) if wait else None
        if ready is not None:
            clock.lap("ready")
        return Started(info, ready, host.changes, clock.laps)

    def wait_ready(self, info: InstanceInfo, seq: LaunchSequence | None = None,
                   endpoint: Endpoint | None = None) -> readiness.Readiness:
        endpoint = endpoint or (seq or self.sequence()).endpoint(info)
        self.report(f"waiting for systemd and {endpoint.url(self.settings.readiness_path)}")
        return readiness.wait_ready(info.name, endpoint, self.settings.readiness_path,
                                    self.settings.ready_timeout, self.report)

    def _clean_leftovers(self) -> None:
        """Undo what an interrupted run left. What cannot be undone is reported and set
        aside (never silently dropped), so it does not block this start."""
        if self.state.entries():
            self.report("undoing changes left by an interrupted cf-launch run")
            failures = undo_all(self.state, self.settings.state_root, apptainer.stop)
            if failures:
                self.state.set_aside()
                self.report("warning: could not undo an earlier run's " + "; ".join(failures)
                            + f" (kept in {self.state.unresolved_path}: check by hand)")

    # --- stop ------------------------------------------------------------------------

    def stop(self) -> dict[str, float]:
        """Stop the instance and undo every journaled host change (also after a crash).

        Returns the seconds spent: ``apptainer_stop`` and ``undo`` (everything else)."""
        if not self.settings.state_dir.exists() and apptainer.find(self.settings.name) is None:
            raise NotRunningError(f"instance {self.settings.name} is not running",
                                  "nothing to stop; `cf-launch status` lists instances")
        with self.state.locked():
            info = apptainer.find(self.settings.name)
            journal = self.state.entries()
            if info is None and not journal:
                raise NotRunningError(f"instance {self.settings.name} is not running",
                                      "nothing to stop; `cf-launch status` lists instances")
            if info is not None and not journal:
                raise LaunchError(
                    f"instance {self.settings.name} has no host changes recorded under "
                    f"{self.settings.state_root}",
                    "if cf-launch started it with another state_root or --config, stop it "
                    f"with those; if not, `apptainer instance stop {info.name}`")
            if check_namespace(self.state):
                self.report("the network namespace this instance was started in is gone, and "
                            "its links, rules and sysctls with it; undoing the rest")
            seq = self._recorded_sequence()
            seq.hooks.pre_stop(seq.ctx, info)
            self.report(f"stopping {self.settings.name} and undoing host changes")
            clock = Stopwatch()
            stopping: dict[str, float] = {}

            def timed_stop(name: str) -> None:
                began = Stopwatch()
                apptainer.stop(name)
                stopping["apptainer_stop"] = began.total()
            failures = undo_all(self.state, self.settings.state_root, timed_stop)
            if failures:
                raise HostChangeError("some changes could not be undone: " + "; ".join(failures),
                                      "fix the cause and run `cf-launch stop` again")
            record.remove(self.settings.state_dir)
            seq.hooks.post_stop(seq.ctx)
            total = clock.total()
            return {"apptainer_stop": stopping.get("apptainer_stop", 0.0),
                    "undo": total - stopping.get("apptainer_stop", 0.0)}

    def restart(self, wait: bool = True) -> Started:
        if apptainer.find(self.settings.name) is not None or self.state.entries():
            self.stop()
        return self.start(wait=wait)

    # --- inspect ---------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Instance, host-change journal and health, for ``cf-launch status``."""
        return status.of(self.settings)

    def status_all(self) -> list[dict[str, Any]]:
        """Every instance cf-launch knows under ``state_root``, and every running one."""
        return status.of_all(self.settings)

    def doctor(self) -> list[Problem]:
        """Every preflight check, core and plugins; an empty list means ready to start."""
        problems: list[Problem] = []
        loaded = plugins.load()
        for name, error in loaded.failed.items():
            problems.append(Problem(f"plugin {name}", f"failed to load: {error}",
                                    "fix or uninstall it", fatal=name in self.settings.hooks))
        try:
            seq = self.sequence()
            problems += seq.validate()
            problems += seq.preflight()
        except ConfigError as err:
            problems.append(Problem("config", str(err), err.hint))
            problems += plugins.Hooks(()).preflight(self.context())  # the core's own checks
        return problems

    def build(self, force: bool = False,
              progress: builder.Progress | None = None) -> Path:
        return builder.build(self.settings.build, force=force, progress=progress)
