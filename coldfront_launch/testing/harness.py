"""The test harness behind :mod:`coldfront_launch.testing`: a folder of its own, a fake
``apptainer`` on PATH, and the real launch sequence of a :class:`Launcher`.

Nothing here touches the machine's kernel settings or Apptainer: state lives under the
harness's folder, sysctls under its private ``sys`` folder, and ``apptainer`` is
:mod:`~coldfront_launch.testing.fake_apptainer`. A plugin's own file, link and firewall
changes are made for real, where the plugin says (see :meth:`Harness.start_stop`).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coldfront_launch import plugins
from coldfront_launch.changes import HostChange, Sysctl, journal
from coldfront_launch.changes.host import RecordingHost
from coldfront_launch.config.settings import Settings, settings_from_mapping
from coldfront_launch.lifecycle.launcher import Launcher, Plan, Started
from coldfront_launch.lifecycle.sequence import LaunchSequence
from coldfront_launch.linux import sysctl
from coldfront_launch.state.instance import InstanceState
from coldfront_launch.testing.sif import write_minimal_sif
from coldfront_launch.types import Endpoint, InstanceInfo, LaunchContext

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FAKE = Path(__file__).with_name("fake_apptainer.py")
#: Changes that live in a network namespace and are made for real by ``start_stop``
#: (sysctls go to the harness's private folder instead).
NETWORK_KINDS = frozenset(c.kind for c in HostChange.registry.values()
                          if c.network and c is not Sysctl)


class IsolationRequired(RuntimeError):
    """``start_stop`` would change this machine's own network (firewall, links,
    offloads): run it as root in a network namespace of its own."""


@dataclass(frozen=True)
class FakeApptainer:
    """The fake ``apptainer`` (and spython's ``singularity``) in a folder of their own."""

    bindir: Path
    log: Path
    state: Path

    @classmethod
    def create(cls, folder: Path) -> FakeApptainer:
        """Write the two launchers into ``folder/bin``; they run :data:`FAKE` with this
        Python."""
        bindir = folder / "bin"
        bindir.mkdir(parents=True, exist_ok=True)
        for name in ("apptainer", "singularity"):
            launcher = bindir / name
            launcher.write_text(f"#!{sys.executable}\nimport runpy, sys\n"
                                f"runpy.run_path({str(FAKE)!r})['main'](sys.argv)\n")
            launcher.chmod(0o755)
        return cls(bindir, folder / "apptainer.log", folder / "instances.json")

    def environ(self) -> dict[str, str]:
        """The variables that put it first on PATH."""
        return {"PATH": f"{self.bindir}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
                "FAKE_APPTAINER_LOG": str(self.log), "FAKE_APPTAINER_STATE": str(self.state)}

    def calls(self) -> list[list[str]]:
        """Every recorded argv (``[program, *args]``), without ``--version`` probes."""
        if not self.log.exists():
            return []
        lines = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [c for c in lines if "--version" not in c]


@dataclass
class StartStop:
    """What ``start_stop`` saw: the command run, what was journaled, what was undone."""

    command: list[str]
    instance: InstanceInfo
    endpoint: Endpoint
    journaled: list[HostChange]
    undone: list[HostChange]
    left: list[HostChange] = field(default_factory=list)
    calls: list[list[str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"command": self.command, "instance": self.instance.to_json(),
                "endpoint": [self.endpoint.host, self.endpoint.port, self.endpoint.scheme],
                "journaled": [c.to_json() for c in self.journaled],
                "undone": [c.to_json() for c in self.undone],
                "left": [c.to_json() for c in self.left], "calls": self.calls}


class _Launcher(Launcher):
    """A launcher whose sequences leave out the core's own checks (root, Apptainer,
    cgroups): the harness tests plugins, not this machine."""

    def sequence(self, hooks: tuple[str, ...] | None = None,
                 planning: bool = False) -> LaunchSequence:
        active = hooks or self.settings.hooks
        return LaunchSequence(self.settings, plugins.Hooks(active, internal=False),
                              LaunchContext(self.settings, active, self.settings.state_dir,
                                            planning))


def parse(config: str | Mapping[str, Any]) -> dict[str, Any]:
    """A TOML snippet (or a mapping already parsed) as a mapping."""
    return tomllib.loads(config) if isinstance(config, str) else dict(config)


def in_own_netns() -> bool:
    """Whether this process runs in a network namespace of its own: one whose only
    interface is ``lo`` (what ``unshare --net`` and ``ip netns add`` make), or one other
    than PID 1's (when that can be read; a container may forbid it even to root)."""
    try:
        lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    except OSError:
        lines = []
    if lines and {line.split(":", 1)[0].strip() for line in lines} <= {"lo"}:
        return True
    try:
        return os.stat("/proc/self/ns/net").st_ino != os.stat("/proc/1/ns/net").st_ino
    except OSError:  # cannot tell: assume the machine's own
        return False


class Harness:
    """Settings, plans and start/stop runs in a folder of their own."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.apptainer = FakeApptainer.create(folder / "apptainer")
        self.sysctl_root = folder / "sys"
        self._registered: list[str] = []

    # --- values ------------------------------------------------------------------

    def settings(self, config: str | Mapping[str, Any] = "",
                 hooks: Sequence[str] | None = None) -> Settings:
        """Validated settings from a TOML snippet; state and image under the folder."""
        image = self.folder / "coldfront.sif"
        if not image.exists():
            write_minimal_sif(image)
        data: dict[str, Any] = {"image": str(image),
                                "build": {"cache_dir": str(self.folder / "cache")},
                                "ready_timeout": 10, **parse(config)}
        data["state_root"] = str(self.folder / "state")
        if hooks is not None:
            data["hooks"] = list(hooks)
        return settings_from_mapping(data)

    def context(self, config: str | Mapping[str, Any] = "", hooks: Sequence[str] = (),
                planning: bool = False) -> LaunchContext:
        """A :class:`LaunchContext` as a hook receives it."""
        settings = self.settings(config, hooks or None)
        return LaunchContext(settings, settings.hooks, settings.state_dir, planning)

    def register(self, name: str, plugin: object) -> None:
        """Register ``plugin`` as ``name`` (if not already), until :meth:`close`."""
        pm = plugins.load().pm
        if pm.get_plugin(name) is plugin:
            return
        if pm.get_plugin(name) is not None:
            pm.unregister(name=name)
        pm.register(plugin, name=name)
        self._registered.append(name)

    def close(self) -> None:
        """Unregister what :meth:`register` added."""
        pm = plugins.load().pm
        for name in self._registered:
            if pm.get_plugin(name) is not None:
                pm.unregister(name=name)
        self._registered.clear()

    def launcher(self, hooks: Sequence[str], config: str | Mapping[str, Any] = "",
                 plugins_: Mapping[str, object] | None = None) -> Launcher:
        for name, plugin in (plugins_ or {}).items():
            self.register(name, plugin)
        return _Launcher(self.settings(config, hooks))

    # --- runs --------------------------------------------------------------------

    def plan(self, hooks: Sequence[str], config: str | Mapping[str, Any] = "",
             plugins: Mapping[str, object] | None = None) -> Plan:
        """``cf-launch plan --hook …`` as data: nothing runs, nothing changes."""
        return self.launcher(hooks, config, plugins).plan()

    def start_stop(self, hooks: Sequence[str], config: str | Mapping[str, Any] = "",
                   plugins: Mapping[str, object] | None = None,
                   during: Callable[[Started], None] | None = None) -> StartStop:
        """``start`` then ``stop`` through the real sequence, against the fake Apptainer.

        Refuses (:class:`IsolationRequired`) before any change when the plan holds network
        changes and this process runs in PID 1's network namespace. ``during`` is called
        while the instance runs, e.g. to look at a file the plugin wrote."""
        launcher = self.launcher(hooks, config, plugins)
        planned = launcher.plan().changes
        network = sorted({c.kind for c in planned} & NETWORK_KINDS)
        if network and not in_own_netns():
            raise IsolationRequired(
                f"the plan changes this machine's network ({', '.join(network)}): run "
                "start_stop as root in a network namespace of its own (e.g. `unshare --net "
                "pytest`), or test those hooks with plan()")
        with self._sandbox([c for c in planned if isinstance(c, Sysctl)]):
            started = launcher.start(wait=False)
            journaled = journal.entries(InstanceState(launcher.settings.state_dir))
            endpoint = launcher.sequence().endpoint(started.instance)
            try:
                if during is not None:
                    during(started)
            finally:
                launcher.stop()
            left = journal.entries(InstanceState(launcher.settings.state_dir))
        kept = {c.identity() for c in left}
        undone = [c for c in reversed(journaled) if c.identity() not in kept]
        command = next((c for c in self.apptainer.calls() if c[2:4] == ["instance", "start"]),
                       [])
        return StartStop(command, started.instance, endpoint, journaled, undone, left,
                         self.apptainer.calls())

    @contextlib.contextmanager
    def _sandbox(self, sysctls: list[Sysctl]) -> Iterator[None]:
        """The fake on PATH and a private /proc/sys, seeded with the live values (only
        read), for the duration of one run."""
        for change in sysctls:
            path = self.sysctl_root / change.name.replace(".", "/")
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    value = (Path("/proc/sys") / path.relative_to(self.sysctl_root)).read_text()
                except OSError:
                    value = "0\n"
                path.write_text(value)
        saved_env = {k: os.environ.get(k) for k in self.apptainer.environ()}
        saved_root = sysctl.SYSCTL_ROOT
        os.environ.update(self.apptainer.environ())
        sysctl.SYSCTL_ROOT = self.sysctl_root
        try:
            yield
        finally:
            sysctl.SYSCTL_ROOT = saved_root
            for key, saved in saved_env.items():
                if saved is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = saved


def recording_host() -> RecordingHost:
    """A :class:`~coldfront_launch.changes.host.HostChanges` that records and changes nothing."""
    return RecordingHost()
