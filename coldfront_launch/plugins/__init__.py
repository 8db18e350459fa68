"""The plugin manager, loaded once.

A *plugin* is a module (or object) that implements hooks; a *hook* is one of the
``cf_launch_*`` functions in :mod:`coldfront_launch.plugins.spec`. Users name plugins with
``--hook NAME`` and ``[hook.NAME]`` (kept for compatibility).

Built-in plugins are registered by import (:data:`BUILTIN`), so a source checkout that is
not installed has them too; third-party plugins come from the ``coldfront_launch`` entry
points, named by the entry point. The internal ``core`` plugin (the core's own checks) is
always active. Environment switches:

- ``CF_LAUNCH_LOAD_PLUGINS=a,b`` loads only the named plugins (empty: none);
- ``CF_LAUNCH_DISABLE_PLUGINS=a,b`` blocks the named plugins.

A plugin that fails to import (even with ``sys.exit``), has a hook with a wrong signature,
or implements a hook that does not exist (a typo) is reported as failed and left out;
every command still works as long as that plugin is not active.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from importlib import metadata
from types import ModuleType, TracebackType
from typing import Any

import pluggy

from coldfront_launch.changes.host import HostChanges
from coldfront_launch.errors import ConfigError, LaunchError, PluginError, Terminated
from coldfront_launch.plugins import spec as hookspecs
from coldfront_launch.types import Bind, Endpoint, InstanceInfo, LaunchContext, Problem

GROUP = "coldfront_launch"
#: Plugins that ship with cf-launch: (name, module), registered by import.
BUILTIN: tuple[tuple[str, str], ...] = (
    ("core", "coldfront_launch.plugins.core"),
    ("bridge", "coldfront_launch.hooks.bridge"),
    ("override", "coldfront_launch.hooks.override"),
)
#: Always active; not named with ``--hook``, never blocked.
INTERNAL = ("core",)
# The hook names in the order plugins/spec.py declares them (the order they run in).
SPEC_NAMES = [name for name in vars(hookspecs) if name.startswith("cf_launch_")]


@dataclass
class Loaded:
    """What loading found: the manager, plugins that failed, and warnings."""

    pm: pluggy.PluginManager
    failed: dict[str, str] = field(default_factory=dict)
    blocked: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


_loaded: Loaded | None = None


def _entry_points() -> list[metadata.EntryPoint]:
    if sys.version_info >= (3, 10):
        return list(metadata.entry_points(group=GROUP))
    return list(metadata.entry_points().get(GROUP, []))  # pragma: no cover


def _names(var: str) -> list[str] | None:
    value = os.environ.get(var)
    if value is None:
        return None
    return [n.strip() for n in value.split(",") if n.strip()]


def _register(loaded: Loaded, name: str, load: Callable[[], Any]) -> None:
    """Import and register one plugin; any failure marks it failed, never raises."""
    try:
        plugin = load()
    except BaseException as err:  # noqa: BLE001 - a plugin may even call sys.exit
        if isinstance(err, KeyboardInterrupt):
            raise
        loaded.failed[name] = f"import failed: {type(err).__name__}: {err}"
        return
    try:
        loaded.pm.register(plugin, name=name)
    except (pluggy.PluginValidationError, ValueError) as err:
        loaded.failed[name] = str(err)


def _check_pending(loaded: Loaded) -> None:
    """Hooks that match no specification (usually a typo) fail their plugin."""
    pm = loaded.pm
    while True:
        try:
            pm.check_pending()
            return
        except pluggy.PluginValidationError as err:
            name = pm.get_name(err.plugin) or "?"
            loaded.failed[name] = str(err).replace("unknown hook", "implements unknown hook")
            pm.unregister(err.plugin)


def load() -> Loaded:
    """Create the plugin manager and register every allowed plugin (once)."""
    global _loaded
    if _loaded is not None:
        return _loaded
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    loaded = Loaded(pm)
    only = _names("CF_LAUNCH_LOAD_PLUGINS")
    for name in _names("CF_LAUNCH_DISABLE_PLUGINS") or []:
        if name not in INTERNAL:
            pm.set_blocked(name)
            loaded.blocked.append(name)
    builtin = {name for name, _ in BUILTIN}

    def wanted(name: str) -> bool:
        return name in INTERNAL or only is None or name in only

    for name, module in BUILTIN:
        if wanted(name):
            _register(loaded, name, partial(importlib.import_module, module))
    seen = set(builtin)
    for ep in _entry_points():
        if ep.name in seen or not wanted(ep.name):
            continue  # a built-in, or an older install's entry point for one
        seen.add(ep.name)
        _register(loaded, ep.name, ep.load)
    _check_pending(loaded)
    for name in only or []:
        if name not in seen:
            loaded.warnings.append(f"CF_LAUNCH_LOAD_PLUGINS names {name!r}, which is not "
                                   "installed")
    _loaded = loaded
    return loaded


def reset() -> None:
    """Forget the loaded manager (tests change the environment switches)."""
    global _loaded
    _loaded = None


def register(plugin: ModuleType | object, name: str) -> None:
    """Register a plugin object directly (the Python API's way to add a plugin)."""
    load().pm.register(plugin, name=name)


def available() -> list[str]:
    """Plugins that ``--hook`` can name."""
    return sorted(name for name, plugin in load().pm.list_name_plugin()
                  if name and plugin is not None and name not in INTERNAL)


def implemented_hooks(name: str) -> list[str]:
    """The hook names a plugin implements, in specification order."""
    pm = load().pm
    plugin = pm.get_plugin(name)
    names = {c.name for c in pm.get_hookcallers(plugin) or []}
    return [n for n in SPEC_NAMES if n in names]


def plugin_origin(name: str) -> str:
    plugin = load().pm.get_plugin(name)
    return getattr(plugin, "__name__", type(plugin).__name__)


def unavailable(name: str) -> str:
    """Why plugin ``name`` cannot be used ("" if it can)."""
    loaded = load()
    if name in loaded.failed:
        return f"failed to load: {loaded.failed[name]}"
    if name in loaded.blocked:
        return "blocked by CF_LAUNCH_DISABLE_PLUGINS"
    if name in INTERNAL or loaded.pm.get_plugin(name) is None:
        return "not installed"
    return ""


def _culprit(caller: Any, tb: TracebackType | None) -> str:
    """The plugin whose hook function is on the traceback."""
    codes = {}
    for impl in caller.get_hookimpls():
        function = getattr(impl.function, "__func__", impl.function)
        codes[function.__code__] = impl.plugin_name
    while tb is not None:
        if tb.tb_frame.f_code in codes:
            return str(codes[tb.tb_frame.f_code])
        tb = tb.tb_next
    return "?"


class Hooks:
    """A typed caller over the active plugins only, so mypy checks every call site."""

    def __init__(self, active: tuple[str, ...], internal: bool = True,
                 missing_ok: bool = False) -> None:
        """``active``: the plugins to call; ``internal=False`` leaves out the core's own
        (a harness that drives plugins without Apptainer); ``missing_ok``: a plugin that
        is not installed, failed to load or is blocked is left out, named in
        :attr:`skipped` (``stop`` undoes the journal without it)."""
        loaded = load()
        #: The active plugins left out (``missing_ok``), with why.
        self.skipped: dict[str, str] = {}
        for name in active:  # user-facing, --hook names a plugin: "hook" in messages
            why = unavailable(name)
            if why and missing_ok:
                self.skipped[name] = why
            elif why == "not installed":
                raise ConfigError("hooks", f"unknown hook {name!r}",
                                  f"known hooks: {', '.join(available()) or '(none loaded)'}")
            elif why:
                raise ConfigError("hooks", f"hook {name!r} {why}",
                                  "fix or uninstall the plugin, or remove it from hooks")
        self.active = tuple(name for name in active if name not in self.skipped)
        pm = loaded.pm
        keep = set(self.active) | (set(INTERNAL) if internal else set())
        inactive = [p for n, p in pm.list_name_plugin() if n not in keep and p is not None]
        self._callers = {
            spec: pm.subset_hook_caller(spec, remove_plugins=inactive)
            for spec in SPEC_NAMES
        }

    def _call(self, spec: str, **kwargs: Any) -> Any:
        caller = self._callers[spec]
        try:
            return caller(**kwargs)
        except (LaunchError, Terminated):
            raise
        except (Exception, SystemExit) as err:  # a plugin's sys.exit is not cf-launch's
            plugin = _culprit(caller, err.__traceback__)
            raise PluginError(plugin, spec, err) from err

    def validate(self, ctx: LaunchContext) -> None:
        self._call("cf_launch_validate", ctx=ctx)

    def preflight(self, ctx: LaunchContext) -> list[Problem]:
        return [p for found in self._call("cf_launch_preflight", ctx=ctx) for p in found]

    def binds(self, ctx: LaunchContext) -> list[Bind]:
        return [b for found in self._ordered("cf_launch_binds", ctx=ctx) for b in found]

    def pre_start(self, ctx: LaunchContext, host: HostChanges) -> None:
        self._call("cf_launch_pre_start", ctx=ctx, host=host)

    def start_options(self, ctx: LaunchContext) -> list[str]:
        return [o for found in self._ordered("cf_launch_start_options", ctx=ctx) for o in found]

    def check_instance(self, ctx: LaunchContext, instance: InstanceInfo) -> list[Problem]:
        return [p for found in self._call("cf_launch_check_instance", ctx=ctx,
                                          instance=instance) for p in found]

    def post_start(self, ctx: LaunchContext, host: HostChanges,
                   instance: InstanceInfo) -> None:
        self._call("cf_launch_post_start", ctx=ctx, host=host, instance=instance)

    def readiness_endpoint(self, ctx: LaunchContext, instance: InstanceInfo) -> Endpoint | None:
        found: Endpoint | None = self._call("cf_launch_readiness_endpoint", ctx=ctx,
                                            instance=instance)
        return found

    def pre_stop(self, ctx: LaunchContext, instance: InstanceInfo | None) -> list[str]:
        """Each plugin's ``pre_stop`` on its own; returns what failed (the stop goes on)."""
        return self._each("cf_launch_pre_stop", ctx=ctx, instance=instance)

    def post_stop(self, ctx: LaunchContext) -> list[str]:
        """Each plugin's ``post_stop`` on its own; returns what failed."""
        return self._each("cf_launch_post_stop", ctx=ctx)

    def _each(self, spec: str, **kwargs: Any) -> list[str]:
        """Call ``spec`` plugin by plugin (pluggy's order), so one plugin's exception,
        ``sys.exit`` or Ctrl-C neither skips the others nor ends cf-launch: each becomes
        one line naming the plugin."""
        pm = load().pm
        names = [impl.plugin_name for impl in reversed(self._callers[spec].get_hookimpls())]
        failures = []
        for name in names:
            others = [p for n, p in pm.list_name_plugin() if n != name and p is not None]
            try:
                pm.subset_hook_caller(spec, remove_plugins=others)(**kwargs)
            except Terminated:
                raise
            except SystemExit as err:
                failures.append(f"plugin {name}: {spec} called sys.exit({err.code!r})")
            except KeyboardInterrupt:
                failures.append(f"plugin {name}: {spec} was interrupted (Ctrl-C)")
            except Exception as err:  # noqa: BLE001 - reported; the stop goes on
                failures.append(f"plugin {name}: {spec} failed: {type(err).__name__}: {err}")
        return failures

    def _ordered(self, spec: str, **kwargs: Any) -> list[Any]:
        # pluggy returns results last-registered-first; present them in registration order.
        return list(reversed(self._call(spec, **kwargs)))
