"""The Python API for an instance's life: :class:`Launcher` plans, starts, stops,
restarts, prepares, attaches and detaches it, builds its image, repairs drift, and reports
its status, drift and doctor's checks. Backup, restore, upgrade
(:mod:`coldfront_launch.operations`), the host service (:mod:`coldfront_launch.service`) and
the CLI's logs, exec and shell are built on it, not methods of it."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coldfront_launch import apptainer, errors
from coldfront_launch.apptainer import layers, shutdown
from coldfront_launch.changes import HostChange, StopInstance, drift, journal
from coldfront_launch.changes.host import RealHost, RecordingHost
from coldfront_launch.changes.undo import undo_all
from coldfront_launch.coldfront import appdata
from coldfront_launch.coldfront import env as siteenv
from coldfront_launch.config import seams
from coldfront_launch.config.settings import Settings
from coldfront_launch.lifecycle import doctor, readiness, status
from coldfront_launch.lifecycle.embedding import Embedding
from coldfront_launch.lifecycle.sequence import LaunchSequence
from coldfront_launch.lifecycle.timing import Stopwatch
from coldfront_launch.state import pin as imagepin
from coldfront_launch.state import record
from coldfront_launch.state.instance import InstanceState
from coldfront_launch.types import PLACEHOLDER_IP, Endpoint, InstanceInfo, LaunchContext, Problem

Report = Callable[[str], None]


@dataclass
class Plan:
    """What ``start`` would do: the exact command and every host change."""

    command: list[str]
    binds: list[str]
    changes: list[HostChange]
    problems: list[Problem] = field(default_factory=list)
    #: What ``start`` changes in ColdFront's env file, secrets masked
    #: (:func:`coldfront_launch.coldfront.env.diff`).
    env: list[dict[str, Any]] = field(default_factory=list)
    #: How ColdFront will serve: workers, public URL, trusted proxies, limits.
    serving: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "command_line": shlex.join(self.command),
            "binds": self.binds,
            "changes": [c.to_json() for c in self.changes],
            "problems": [p.to_json() for p in self.problems],
            "env": self.env,
            "serving": self.serving,
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
            "already_running": False,
        }


class Launcher:
    """Build, plan, start, stop and inspect one ColdFront instance."""

    def __init__(self, settings: Settings, report: Report | None = None,
                 upgrading: bool = False) -> None:
        self.settings = settings
        #: ``cf-launch upgrade`` boots its new image: it settles the image's pin itself.
        self.upgrading = upgrading
        self.state = InstanceState(settings.state_dir)
        self.report: Report = report or (lambda _message: None)
        #: ``cf-launch run`` under a unit with ``Delegate=yes``: Apptainer starts in the
        #: unit's cgroup namespace, so the instance is accounted to the unit (cgroupns).
        self.wrapper: Callable[[list[str]], list[str]] | None = None

    def context(self, hooks: tuple[str, ...] | None = None,
                planning: bool = False) -> LaunchContext:
        return LaunchContext(self.settings, hooks or self.settings.hooks,
                             self.settings.state_dir, planning)

    def sequence(self, hooks: tuple[str, ...] | None = None,
                 planning: bool = False) -> LaunchSequence:
        return LaunchSequence.create(self.settings, hooks, planning)

    def _recorded_sequence(self) -> LaunchSequence:
        """The plugins the instance was started with (else today's settings), for undoing:
        one that no longer loads is left out, with a warning (the journal needs none)."""
        hooks = record.read(self.settings.state_dir).hooks_or(self.settings.hooks)
        seq = LaunchSequence.create(self.settings, hooks, missing_ok=True)
        for name, why in seq.hooks.skipped.items():
            self.report(f"warning: plugin {name} {why}: its pre_stop and post_stop do not "
                        "run; the host changes it made are undone from the journal")
        return seq

    def _check_image(self) -> Path:
        """The image to boot: there, a SIF, whole (exit 2 if not). Also where ``start`` and
        ``prepare`` warn about secret files others can read (doctor and plan list them)."""
        from coldfront_launch.apptainer import sif
        from coldfront_launch.coldfront import secrets

        image = self.settings.image_path
        if not image.exists():
            if self.settings.pinned_image is not None:
                raise errors.ConfigError(
                    "image", f"{image}, the image the last upgrade pinned, does not exist",
                    "`cf-launch upgrade --rollback` goes back to the image before it; or name "
                    "an image in the settings (`image`)")
            hint = "run `cf-launch build` first" if self.settings.image is None \
                else "check the path, or build one with `cf-launch build`"
            raise errors.ConfigError("image", f"{image} does not exist", hint)
        why = sif.problem(image)
        if why:
            raise errors.ConfigError("image", why, "give an image `apptainer build` made (a "
                                     ".sif), or run `cf-launch build`")
        for found in secrets.problems(self.settings):  # doctor and plan list them too
            if found.fatal:  # a file cf-launch would refuse to read
                raise errors.ConfigError(found.check, found.message, found.hint)
            self.report(f"warning: {found.check}: {found.message}")
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
        values = siteenv.values(self.settings)
        env = siteenv.diff(_readable_env(self.settings.state_dir), values, self.settings)
        return Plan(seq.command(prepared.options), prepared.bind_specs, host.changes, problems,
                    env, siteenv.serving(self.settings, values))

    # --- start -----------------------------------------------------------------------

    def start(self, wait: bool = True) -> Started:
        """Prepare the host, start the instance, finish the host, then wait until ready."""
        seq = self.sequence()
        for warning in seq.validate():
            self.report(f"warning: {warning.check}: {warning.message}")
        image = self._check_image()
        apptainer.locate()
        pin = None if self.upgrading else imagepin.read(self.settings.state_dir)
        if pin is not None and not pin.proven and self.settings.pinned_image is not None:
            self.report(f"warning: the upgrade to {pin.current.image} was interrupted; booting "
                        "it (the upgrade completes once ColdFront answers)")
        with self.state.locked():
            unfinished = self._unfinished()
            if unfinished is not None:
                return self._finish(unfinished, seq, wait)
            self._ready_to_prepare(seq, "see `cf-launch status`; use `cf-launch restart` "
                                   "to restart")
            self._ensure_data()
            record.write(self.settings.state_dir, seq.ctx.hooks, self.settings.image_path,
                         phase="pre_start")
            host = RealHost(self.state, self.settings.state_root)
            clock = Stopwatch()
            with self._undone_on_failure("start"):
                self.report("preparing the host")
                prepared = seq.before_start(host)
                clock.lap("pre_start")
                self.report(f"starting instance {self.settings.name}")
                host.track_instance(self.settings.name)
                info = apptainer.start(image, self.settings.name, prepared.options,
                                       shutdown.BOOT_ENV, self.wrapper)
                record.set_phase(self.settings.state_dir, "instance")
                clock.lap("apptainer_start")
                _test_death("apptainer_start")
                seq.after_start(host, info)
                record.set_phase(self.settings.state_dir, "done")
                clock.lap("post_start")
        return self._started(info, seq, host, clock, wait)

    def _unfinished(self) -> InstanceInfo | None:
        """The running instance whose start was cut short (cf-launch killed after the
        instance started, before post_start finished), if that is what there is."""
        launched = record.read(self.settings.state_dir)
        if not launched.unfinished or launched.starter_alive:
            return None
        return apptainer.find(self.settings.name)

    def _finish(self, info: InstanceInfo, seq: LaunchSequence, wait: bool) -> Started:
        """Under the lock: run what an interrupted start did not (post_start), from the
        plugins it was started with."""
        launched = record.read(self.settings.state_dir)
        seq = self.sequence(launched.hooks_or(seq.ctx.hooks))
        self.report(f"the last start of {info.name} was cut short after the instance "
                    "started: finishing it (post_start)")
        host = RealHost(self.state, self.settings.state_root)
        clock = Stopwatch()
        with self._undone_on_failure("finishing the start"):
            seq.after_start(host, info)
            record.set_phase(self.settings.state_dir, "done")
            clock.lap("post_start")
        return self._started(info, seq, host, clock, wait)

    def _started(self, info: InstanceInfo, seq: LaunchSequence, host: RealHost,
                 clock: Stopwatch, wait: bool) -> Started:
        """The tail ``start`` and ``attach`` share: record where ColdFront answers, wait
        until it does (``wait``), and report what was done."""
        endpoint = self._record_endpoint(info, seq)
        ready = self.wait_ready(info, seq, endpoint) if wait else None
        if ready is not None:
            clock.lap("ready")
        return Started(info, ready, host.changes, clock.laps)

    def _record_endpoint(self, info: InstanceInfo, seq: LaunchSequence) -> Endpoint | None:
        """Where ColdFront answers, kept in the launch record for ``status`` (None if a
        plugin cannot say: ``status`` asks the plugins then, the wait raises)."""
        try:
            endpoint = seq.endpoint(info)
        except errors.LaunchError:
            return None
        record.set_url(self.settings.state_dir, endpoint.url(self.settings.readiness_path))
        return endpoint

    def _ready_to_prepare(self, seq: LaunchSequence, running_hint: str,
                          ignore: tuple[str, ...] = ()) -> None:
        """Under the lock: the instance is not running, leftovers are undone, and no
        preflight check (but those in ``ignore``) is fatal."""
        if apptainer.find(self.settings.name) is not None:
            raise errors.InstanceRunningError(f"instance {self.settings.name} is already "
                                              "running", running_hint)
        self._clean_leftovers()
        fatal = [p for p in seq.preflight() if p.fatal and p.check not in ignore]
        if fatal:
            raise errors.PreflightError("; ".join(p.message for p in fatal),
                                        fatal[0].hint or "run `cf-launch doctor`")

    def _ensure_data(self) -> None:
        """ColdFront's data folder, env file and certificates, owned by the service account."""
        security = self.settings.security
        appdata.ensure(self.settings.state_dir, (security.uid, security.gid),
                       siteenv.values(self.settings), siteenv.secret_key(self.settings))

    @contextlib.contextmanager
    def _undone_on_failure(self, what: str) -> Iterator[None]:
        """Undo every journaled change if the block fails (also on SIGTERM or Ctrl-C)."""
        owner = os.getpid()
        try:
            yield
        except BaseException:
            if os.getpid() != owner:  # a forked copy of this process: not ours to undo
                raise
            self.report(f"{what} failed: undoing every change made so far")
            left = undo_all(self.state, self.settings.state_root, self._stop_instance)
            if left:
                self.report("could not undo: " + "; ".join(left) +
                            " (kept in the journal: fix the cause, then `cf-launch stop`)")
            else:
                record.remove(self.settings.state_dir)
            raise

    # --- embedding -------------------------------------------------------------------

    def prepare(self, only_hooks: bool = False,
                check: Callable[[Embedding], None] | None = None) -> Embedding:
        """Everything ``start`` does before ``apptainer instance start``, under the same lock
        and journal; returns the options for the site's own start command.

        ``only_hooks``: only what the plugins contribute (an image not built by cf-launch,
        with its own data layout). ``check`` sees the result first (as ``plan`` would make
        it) and may refuse before anything changes."""
        if check is not None:
            planning = self.sequence(planning=True)
            planning.validate()
            planned = planning.before_start(RecordingHost())
            check(self._embedding(planning.command(planned.options),
                                  planned.for_embedding(only_hooks)))
        seq = self.sequence()
        for warning in seq.validate():
            self.report(f"warning: {warning.check}: {warning.message}")
        if not only_hooks:
            self._check_image()
        with self.state.locked():
            self._ready_to_prepare(seq, "prepare comes before your own `apptainer instance "
                                   "start`; to redo it: stop the instance, `cf-launch detach`, "
                                   "then prepare again", ignore=("image",) if only_hooks else ())
            if not only_hooks:
                self._ensure_data()
            record.write(self.settings.state_dir, seq.ctx.hooks, self.settings.image_path,
                         mode="prepared")
            host = RealHost(self.state, self.settings.state_root)
            with self._undone_on_failure("prepare"):
                prepared = seq.before_start(host)
        embedding = self._embedding(seq.command(prepared.options),
                                    prepared.for_embedding(only_hooks))
        embedding.changes = host.changes
        return embedding

    def _embedding(self, command: list[str], options: list[str]) -> Embedding:
        return Embedding(self.settings.name, str(self.settings.image_path), options, command,
                         env=dict(shutdown.BOOT_ENV))

    def attach(self, wait: bool = True) -> Started:
        """Finish the host for an instance the site started with the prepared options, then
        wait until ready. Refuses, changing nothing, if it was not prepared or not started
        with those options."""
        name = self.settings.name
        with self.state.locked():
            launched = record.read(self.settings.state_dir)
            if launched.mode == "started":
                raise errors.LaunchError(f"instance {name} was started by cf-launch itself",
                                         "nothing to attach; `cf-launch status` shows it")
            if launched.mode not in ("prepared", "attached"):
                raise errors.LaunchError(
                    f"nothing was prepared for instance {name}",
                    f"run `cf-launch prepare --name {name}` before your own "
                    "`apptainer instance start`, and add the options it prints")
            seq = self.sequence(launched.hooks_or(self.settings.hooks))
            info = apptainer.find(name)
            if info is None:
                raise errors.NotRunningError(
                    f"instance {name} is not running",
                    "start it with the options `cf-launch prepare` printed")
            fatal = [p for p in seq.hooks.check_instance(seq.ctx, info) if p.fatal]
            if fatal:
                options = seq.before_start(RecordingHost()).for_embedding(True)
                raise errors.PreflightError(
                    f"instance {name} was not started the way `cf-launch prepare` said: "
                    + "; ".join(p.message for p in fatal),
                    "stop it and start it again with these options: " + shlex.join(options))
            host = RealHost(self.state, self.settings.state_root)
            clock = Stopwatch()
            self.report(f"finishing the host for {name}")
            seq.after_start(host, info)
            clock.lap("post_start")
            record.write(self.settings.state_dir, seq.ctx.hooks, Path(launched.image),
                         mode="attached")
        return self._started(info, seq, host, clock, wait)

    def detach(self) -> dict[str, Any]:
        """Undo what ``prepare`` and ``attach`` changed; never stops the instance."""
        name = self.settings.name
        if not self.settings.state_dir.exists():
            raise errors.NotRunningError(
                f"nothing to detach for instance {name}",
                "`cf-launch status --name NAME` shows what cf-launch knows")
        with self.state.locked():
            launched = record.read(self.settings.state_dir)
            if launched.mode == "started":
                raise errors.LaunchError(f"instance {name} was started by cf-launch itself",
                                         "stop it with `cf-launch stop`")
            if not journal.entries(self.state) and not launched.mode:
                raise errors.NotRunningError(f"nothing to detach for instance {name}",
                                             "`cf-launch status` shows what cf-launch knows")
            if journal.check_namespace(self.state):
                self.report("the network namespace the instance was prepared in is gone; "
                            "undoing the rest")
            info = apptainer.find(name)
            seq = self._recorded_sequence()
            failures = self._warned(seq.hooks.pre_stop(seq.ctx, info)) if info else []
            failures += self._undo_then_post_stop(seq, _never_stop, "detach")
        if info is not None:
            self.report(f"instance {name} still runs, and its network is gone now "
                        f"(stop it first: apptainer instance stop {name})")
        return {"name": name, "detached": True, "still_running": info is not None,
                "plugin_failures": failures}

    def wait_ready(self, info: InstanceInfo, seq: LaunchSequence | None = None,
                   endpoint: Endpoint | None = None) -> readiness.Readiness:
        endpoint = endpoint or (seq or self.sequence()).endpoint(info)
        self.report(f"waiting for systemd and {endpoint.url(self.settings.readiness_path)}")
        try:
            found = readiness.wait_ready(info.name, endpoint, self.settings.readiness_path,
                                         self.settings.ready_timeout, self.report,
                                         pid=info.pid, host=siteenv.probe_host(self.settings))
        except errors.NotReadyError as err:
            cause = siteenv.database_unreachable(self.settings)
            if cause:
                err = errors.NotReadyError(f"{err}: {cause}", "check the database server, its "
                                           f"firewall and [coldfront] database_url; {err.hint}",
                                           err.details)
            pin = None if self.upgrading else imagepin.read(self.settings.state_dir)
            if pin is not None and not pin.proven:
                before = pin.previous.image if pin.previous else "the image before"
                err.hint = (f"this is the image of an interrupted upgrade; `cf-launch upgrade "
                            f"--rollback` goes back to {before}; {err.hint}")
            raise err from None
        if not self.upgrading and imagepin.prove(self.settings.state_dir,
                                                 self.settings.image_path):
            self.report(f"the interrupted upgrade to {self.settings.image_path} is complete: "
                        "ColdFront answers")
        return found

    def _clean_leftovers(self) -> None:
        """Undo what an interrupted run left. What cannot be undone is reported and set
        aside (never silently dropped), so it does not block this start."""
        if journal.entries(self.state):
            self.report("undoing changes left by an interrupted cf-launch run")
            failures = undo_all(self.state, self.settings.state_root, self._stop_instance)
            if failures:
                self.state.set_aside()
                self.report("warning: could not undo an earlier run's " + "; ".join(failures)
                            + f" (kept in {self.state.unresolved_path}: check by hand)")

    # --- stop ------------------------------------------------------------------------

    def stop(self, lock_timeout: float = 0) -> dict[str, Any]:
        """Stop the instance and undo every journaled host change (also after a crash);
        wait up to ``lock_timeout`` seconds for another cf-launch holding the lock.

        Returns the seconds spent, ``apptainer_stop`` and ``undo`` (everything else),
        and how the instance went down (``shutdown``: see :class:`shutdown.Shutdown`).
        An instance that ``cf-launch run`` supervises is stopped by its supervisor."""
        supervisor = self.state.supervisor()
        if supervisor:
            return self._stop_through(supervisor)
        if not self.settings.state_dir.exists():  # never started here: make no folder
            info = apptainer.find(self.settings.name)
            if info is None:
                raise errors.NotRunningError(f"instance {self.settings.name} is not running",
                                             "nothing to stop; `cf-launch status` lists "
                                             "instances")
            raise self._not_ours(info)
        with self.state.locked(timeout=lock_timeout):
            info = apptainer.find(self.settings.name)
            journaled = journal.entries(self.state)
            if info is None and not journaled:
                raise errors.NotRunningError(f"instance {self.settings.name} is not running",
                                             "nothing to stop; `cf-launch status` lists instances")
            if info is not None and not journaled:
                raise self._not_ours(info)
            if journal.check_namespace(self.state):
                self.report("the network namespace this instance was started in is gone, and "
                            "its links, rules and sysctls with it; undoing the rest")
            seq = self._recorded_sequence()
            failures = self._warned(seq.hooks.pre_stop(seq.ctx, info))
            self.report(f"stopping {self.settings.name} and undoing host changes")
            clock = Stopwatch()
            stopped: list[shutdown.Shutdown] = []

            def timed_stop(name: str) -> None:
                stopped.append(self._stop_instance(name))
            if info is not None and not any(isinstance(e, StopInstance) for e in journaled):
                timed_stop(info.name)  # attached: the site started it; stop it, then undo
            failures += self._undo_then_post_stop(seq, timed_stop, "stop")
            total = clock.total()
            seconds = sum(s.seconds for s in stopped)
            return {"apptainer_stop": seconds, "undo": total - seconds,
                    "shutdown": stopped[0].method if stopped else "gone",
                    "plugin_failures": failures}

    def _not_ours(self, info: InstanceInfo) -> errors.LaunchError:
        return errors.LaunchError(
            f"instance {info.name} has no host changes recorded under "
            f"{self.settings.state_root}",
            "if cf-launch started it with another state_root or --config, stop it with "
            f"those; if not, `apptainer instance stop {info.name}`")

    def _stop_instance(self, name: str) -> shutdown.Shutdown:
        """Stop the instance gracefully: poweroff inside, then instance stop, then force."""
        outcome = shutdown.stop(name, self.settings.stop_timeout, self.report)
        if outcome.method in ("instance stop", "forced"):
            self.report(f"warning: {name} did not shut down cleanly ({outcome.method})")
        return outcome

    def _undo_then_post_stop(self, seq: LaunchSequence, stop_instance: Callable[[str], None],
                             verb: str) -> list[str]:
        """Undo the journal (the instance entry through ``stop_instance``); then post_stop.
        Returns the plugins' failures (reported as warnings); raises if a change stays."""
        failures = undo_all(self.state, self.settings.state_root, stop_instance)
        if failures:
            said = "; ".join(failures)
            raise errors.HostChangeError(
                f"some changes could not be undone: {said}",
                f"fix the cause and run `cf-launch {verb}` again" + (
                    "; for a journal line that cannot be read, check by hand what it "
                    "recorded, then delete that line" if "could not be read" in said else ""))
        record.remove(self.settings.state_dir)
        return self._warned(seq.hooks.post_stop(seq.ctx))

    def _warned(self, failures: list[str]) -> list[str]:
        for failure in failures:
            self.report(f"warning: {failure}")
        return failures

    def _stop_through(self, supervisor: int, timeout: float = 600) -> dict[str, float]:
        """Ask the supervisor (SIGTERM) to stop the instance; wait until it is done."""
        self.report(f"asking the supervisor (pid {supervisor}) to stop {self.settings.name}")
        clock = Stopwatch()
        os.kill(supervisor, signal.SIGTERM)
        while self.state.supervisor() == supervisor and clock.total() < timeout:
            time.sleep(0.1)
        if self.state.supervisor() == supervisor:
            raise errors.LaunchError(f"the supervisor (pid {supervisor}) did not stop "
                                     f"{self.settings.name} in {timeout:.0f}s",
                                     f"see `journalctl -u cf-launch@{self.settings.name}`")
        return {"supervisor": clock.total()}

    def restart(self, wait: bool = True) -> Started:
        supervisor = self.state.supervisor()
        if supervisor:
            raise errors.LockedError(f"cf-launch run (pid {supervisor}) supervises "
                                     f"{self.settings.name}",
                                     f"restart it the service's way: systemctl restart "
                                     f"cf-launch@{self.settings.name}")
        if apptainer.find(self.settings.name) is not None or journal.entries(self.state):
            self.stop()
        return self.start(wait=wait)

    # --- inspect ---------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Instance, host-change journal, drift and health, for ``cf-launch status``."""
        return status.of(self.settings)

    def drift(self) -> list[str]:
        """How the live host differs from what the journal says cf-launch applied
        (:func:`coldfront_launch.changes.drift.find`)."""
        return drift.find(self.state)

    def repair(self, lock_timeout: float = 0) -> dict[str, list[str]]:
        """Finish a start that was cut short (post_start), then put back, from the journal
        and nothing else, what is missing (:func:`coldfront_launch.changes.drift.repair`)."""
        finished = []
        if self._unfinished() is not None:
            with self.state.locked(timeout=lock_timeout):
                info = self._unfinished()
                if info is not None:
                    self._finish(info, self._recorded_sequence(), wait=False)
                    finished.append("post_start")
        return {**drift.repair(self.state, self.settings.state_root, lock_timeout),
                "finished": finished}

    def repair_all(self, lock_timeout: float = 0) -> list[dict[str, Any]]:
        """:meth:`repair` for every running instance with a journal under ``state_root``;
        those that do not run are listed (``running`` False) and left for ``stop``."""
        return drift.repair_all(self.settings.state_root, lock_timeout)

    def doctor(self) -> list[Problem]:
        """Every preflight check, core and plugins; an empty list means ready to start
        (:func:`coldfront_launch.lifecycle.doctor.check`)."""
        return doctor.check(self.settings, self.sequence, self.context, self.drift)

    def build(self, force: bool = False,
              progress: layers.Progress | None = None) -> Path:
        return layers.build(self.settings.build, force=force, progress=progress)


def _readable_env(state_dir: Path) -> dict[str, str] | None:
    """The env file as it is (None: none yet, or not readable without root)."""
    try:
        return appdata.read_env(state_dir)
    except OSError:
        return None


def _test_death(phase: str) -> None:
    """Test seam: SIGKILL this process right after ``phase`` (a power cut, a kill -9)."""
    if seams.seam("CF_LAUNCH_TEST_DIE_AFTER") == phase:
        os.kill(os.getpid(), signal.SIGKILL)


def _never_stop(name: str) -> None:
    """``detach`` never stops the instance (and its journal holds no instance entry)."""
