"""The Python API: everything the CLI does, as methods of :class:`Launcher`."""

from __future__ import annotations

import json
import os
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import appdata, apptainer, builder, hardening, plugins, readiness
from .apptainer import InstanceInfo
from .errors import ConfigError, HostChangeError, LaunchError, NotRunningError, PreflightError
from .host import Change, HostChanges, RealHost, RecordingHost
from .settings import Settings
from .state import InstanceState
from .types import PLACEHOLDER_IP, Bind, Endpoint, LaunchContext, Problem
from .undo import check_namespace, undo_all

LAUNCH_RECORD = "launch.json"
BIND_DIR = "binds"
BASE_OPTIONS = ["--boot", "-B", "/sys/fs/cgroup"]
DEFAULT_ENDPOINT = Endpoint("127.0.0.1", 80)

Report = Callable[[str], None]


@dataclass
class Plan:
    """What ``start`` would do: the exact command and every host change."""

    command: list[str]
    binds: list[str]
    changes: list[Change]
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
    changes: list[Change] = field(default_factory=list)
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

    # --- helpers ---------------------------------------------------------------------------

    def context(self, hooks: tuple[str, ...] | None = None,
                planning: bool = False) -> LaunchContext:
        return LaunchContext(self.settings, hooks or self.settings.hooks,
                             self.settings.state_dir, planning)

    def _hooks(self, names: tuple[str, ...] | None = None) -> plugins.Hooks:
        return plugins.Hooks(names or self.settings.hooks)

    def _check_image(self) -> Path:
        image = self.settings.image_path
        if not image.exists():
            hint = "run `cf-launch build` first" if self.settings.image is None \
                else "check the path, or build one with `cf-launch build`"
            raise ConfigError("image", f"{image} does not exist", hint)
        return image

    def _bind_specs(self, host: HostChanges, binds: list[Bind]) -> list[str]:
        """Write content binds under the state folder (journaled); return ``--bind`` specs."""
        specs = []
        for bind in binds:
            if not bind.target.startswith("/"):
                raise ConfigError("binds", f"bind target {bind.target!r} is not absolute")
            if bind.content is not None:
                source = self.settings.state_dir / BIND_DIR / bind.target.lstrip("/")
                host.write_file(source, bind.content, bind.mode)
            elif bind.source is not None:
                source = bind.source
            else:
                raise ConfigError("binds", f"bind to {bind.target} has neither content nor source")
            specs.append(f"{source}:{bind.target}" + (":ro" if bind.readonly else ""))
        return specs

    def _start_options(self, ctx: LaunchContext, hooks: plugins.Hooks,
                       bind_specs: list[str]) -> list[str]:
        options = list(BASE_OPTIONS)
        if self.settings.writable_tmpfs:
            options.append("--writable-tmpfs")
        for spec in [*appdata.binds(self.settings.state_dir), *self.settings.binds, *bind_specs]:
            options += ["--bind", spec]
        return options + hooks.start_options(ctx)

    def command(self, options: list[str]) -> list[str]:
        # spython's Instance runs `singularity --quiet instance start` (the link to apptainer).
        return ["apptainer", "--quiet", "instance", "start", *options,
                str(self.settings.image_path), self.settings.name]

    # --- plan ------------------------------------------------------------------------------

    def plan(self) -> Plan:
        """Run the hooks against a recorder: exactly what ``start`` would do, changing nothing."""
        hooks = self._hooks()
        ctx = self.context(planning=True)
        hooks.validate(ctx)
        problems = hooks.preflight(ctx)
        host = RecordingHost()
        bind_specs = self._bind_specs(host, hardening.binds(self.settings) + hooks.binds(ctx))
        hooks.pre_start(ctx, host)
        options = self._start_options(ctx, hooks, bind_specs)
        placeholder = InstanceInfo(self.settings.name, 0, str(self.settings.image_path),
                                   PLACEHOLDER_IP)
        hooks.post_start(ctx, host, placeholder)
        return Plan(self.command(options), bind_specs, host.changes, problems)

    # --- start -----------------------------------------------------------------------------

    def start(self, wait: bool = True) -> Started:
        """Prepare the host, start the instance, finish the host, then wait until ready."""
        hooks = self._hooks()
        ctx = self.context()
        hooks.validate(ctx)
        image = self._check_image()
        apptainer.locate()
        with self.state.locked():
            if apptainer.find(self.settings.name) is not None:
                raise LaunchError(f"instance {self.settings.name} is already running",
                                  "see `cf-launch status`; use `cf-launch restart` to restart")
            self._clean_leftovers()
            fatal = [p for p in hooks.preflight(ctx) + hardening.preflight(self.settings)
                     if p.fatal]
            if fatal:
                raise PreflightError("; ".join(p.message for p in fatal),
                                     fatal[0].hint or "run `cf-launch doctor`")
            sec = self.settings.security
            appdata.ensure(self.settings.state_dir, (sec.uid, sec.gid))
            self._write_record(ctx)
            host = RealHost(self.state, self.settings.state_root)
            clock = _Stopwatch()
            owner = os.getpid()
            try:
                self.report("preparing the host")
                bind_specs = self._bind_specs(host, hardening.binds(self.settings)
                                              + hooks.binds(ctx))
                hooks.pre_start(ctx, host)
                options = self._start_options(ctx, hooks, bind_specs)
                clock.lap("pre_start")
                self.report(f"starting instance {self.settings.name}")
                self.state.record({"kind": "stop_instance", "name": self.settings.name})
                info = apptainer.start(image, self.settings.name, options)
                clock.lap("apptainer_start")
                hooks.post_start(ctx, host, info)
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
                    self._remove_record()
                raise
        ready = self.wait_ready(info, hooks, ctx) if wait else None
        if ready is not None:
            clock.lap("ready")
        return Started(info, ready, host.changes, clock.laps)

    def wait_ready(self, info: InstanceInfo, hooks: plugins.Hooks | None = None,
                   ctx: LaunchContext | None = None) -> readiness.Readiness:
        hooks = hooks or self._hooks()
        ctx = ctx or self.context()
        endpoint = hooks.readiness_endpoint(ctx, info) or DEFAULT_ENDPOINT
        self.report(f"waiting for systemd and {endpoint.url(self.settings.readiness_path)}")
        return readiness.wait_ready(info.name, endpoint, self.settings.readiness_path,
                                    self.settings.ready_timeout, self.report)

    def _clean_leftovers(self) -> None:
        if self.state.entries():
            self.report("undoing changes left by an interrupted cf-launch run")
            failures = undo_all(self.state, self.settings.state_root, apptainer.stop)
            if failures:
                raise HostChangeError("could not undo an earlier run: " + "; ".join(failures),
                                      f"see {self.state.journal_path}")

    def _write_record(self, ctx: LaunchContext) -> None:
        record = {"hooks": list(ctx.hooks), "image": str(self.settings.image_path),
                  "pid": os.getpid()}
        (self.settings.state_dir / LAUNCH_RECORD).write_text(json.dumps(record))

    def _read_record(self) -> dict[str, Any]:
        path = self.settings.state_dir / LAUNCH_RECORD
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            return data
        except (OSError, json.JSONDecodeError):
            return {}

    def _remove_record(self) -> None:
        (self.settings.state_dir / LAUNCH_RECORD).unlink(missing_ok=True)

    # --- stop ------------------------------------------------------------------------------

    def stop(self) -> dict[str, float]:
        """Stop the instance and undo every journaled host change (also after a crash).

        Returns the seconds spent: ``apptainer_stop`` and ``undo`` (everything else)."""
        with self.state.locked():
            info = apptainer.find(self.settings.name)
            journal = self.state.entries()
            if info is None and not journal:
                raise NotRunningError(f"instance {self.settings.name} is not running",
                                      "nothing to stop; `cf-launch status` lists instances")
            if info is not None and not journal:
                raise LaunchError(f"instance {self.settings.name} was not started by cf-launch",
                                  f"stop it yourself: apptainer instance stop {info.name}")
            if check_namespace(self.state):
                self.report("the network namespace this instance was started in is gone, and "
                            "its links, rules and sysctls with it; undoing the rest")
            recorded = tuple(self._read_record().get("hooks", [])) or self.settings.hooks
            hooks = self._hooks(recorded)
            ctx = self.context(recorded)
            hooks.pre_stop(ctx, info)
            self.report(f"stopping {self.settings.name} and undoing host changes")
            clock = _Stopwatch()
            stopping: dict[str, float] = {}

            def timed_stop(name: str) -> None:
                began = _Stopwatch()
                apptainer.stop(name)
                stopping["apptainer_stop"] = began.total()
            failures = undo_all(self.state, self.settings.state_root, timed_stop)
            if failures:
                raise HostChangeError("some changes could not be undone: " + "; ".join(failures),
                                      "fix the cause and run `cf-launch stop` again")
            self._remove_record()
            hooks.post_stop(ctx)
            total = clock.total()
            return {"apptainer_stop": stopping.get("apptainer_stop", 0.0),
                    "undo": total - stopping.get("apptainer_stop", 0.0)}

    def restart(self, wait: bool = True) -> Started:
        if apptainer.find(self.settings.name) is not None or self.state.entries():
            self.stop()
        return self.start(wait=wait)

    # --- inspect ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Instance, host-change journal and health, for ``cf-launch status``."""
        info = apptainer.find(self.settings.name)
        record = self._read_record()
        result: dict[str, Any] = {
            "name": self.settings.name,
            "running": info is not None,
            "instance": info.to_json() if info else None,
            "hooks": record.get("hooks", []),
            "host_changes": len(self.state.entries()),
            "state_dir": str(self.settings.state_dir),
        }
        if info is not None:
            result["system_state"] = readiness.system_state(info.name)
            hooks_names = tuple(record.get("hooks") or self.settings.hooks)
            endpoint = self._hooks(hooks_names).readiness_endpoint(
                self.context(hooks_names), info) or DEFAULT_ENDPOINT
            url = endpoint.url(self.settings.readiness_path)
            result["url"] = url
            result["http_status"] = readiness.http_status(url)
            result["security"] = hardening.report(info.name)
        return result

    def doctor(self) -> list[Problem]:
        """Every preflight check, core and hooks; an empty list means ready to start."""
        problems: list[Problem] = []
        try:
            apptainer.locate()
        except LaunchError as err:
            problems.append(Problem("apptainer", str(err), err.hint))
        if os.geteuid() != 0:
            problems.append(Problem("root", "cf-launch start needs root (--boot, firewall)",
                                    "run it with sudo"))
        problems += _cgroup_problems()
        if not self.settings.image_path.exists():
            problems.append(Problem("image", f"{self.settings.image_path} does not exist",
                                    "run `cf-launch build`"))
        loaded = plugins.load()
        for name, error in loaded.failed.items():
            problems.append(Problem(f"plugin {name}", f"failed to load: {error}",
                                    "fix or uninstall it", fatal=name in self.settings.hooks))
        try:
            hooks = self._hooks()
            ctx = self.context()
            hooks.validate(ctx)
            problems += hooks.preflight(ctx)
        except ConfigError as err:
            problems.append(Problem("config", str(err), err.hint))
        problems += hardening.doctor(self.settings)
        return problems

    def build(self, force: bool = False,
              progress: builder.Progress | None = None) -> Path:
        return builder.build(self.settings.build, force=force, progress=progress)


def _cgroup_problems() -> list[Problem]:
    """systemd inside needs a cgroup hierarchy; v2 (unified) is what it prefers."""
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():
        return []
    if (root / "systemd").is_dir() or (root / "unified").is_dir():
        return [Problem("cgroup", "the host uses the cgroup v1 (legacy/hybrid) hierarchy",
                        "it works; cgroup v2 (systemd.unified_cgroup_hierarchy=1) is "
                        "recommended", fatal=False)]
    return [Problem("cgroup", "no cgroup hierarchy is mounted at /sys/fs/cgroup",
                    "systemd inside the instance needs one; mount cgroup2 there")]


class _Stopwatch:
    """Seconds per phase, for ``start --json`` and the benchmarks."""

    def __init__(self) -> None:
        self.began = self.mark = time.monotonic()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps[name] = now - self.mark
        self.mark = now

    def total(self) -> float:
        return time.monotonic() - self.began
