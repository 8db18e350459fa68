"""The plugin manager, loaded once from the ``coldfront_launch`` entry-point group.

Built-in hooks (``bridge``, ``override``) are entry points of this package, registered the
same way as any third-party plugin. Environment switches:

- ``CF_LAUNCH_LOAD_PLUGINS=a,b`` loads only the named plugins (empty: none);
- ``CF_LAUNCH_DISABLE_PLUGINS=a,b`` skips the named plugins.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from .apptainer import InstanceInfo
from .errors import ConfigError
from .host import HostChanges
from .types import Bind, Endpoint, LaunchContext, Problem

GROUP = "coldfront_launch"
# The hook names in the order hookspecs.py defines them (the order they run in).
SPEC_NAMES = [name for name in vars(hookspecs) if name.startswith("cf_launch_")]


@dataclass
class Loaded:
    """What loading found: the manager, plus plugins that failed to import."""

    pm: pluggy.PluginManager
    failed: dict[str, str] = field(default_factory=dict)


_loaded: Loaded | None = None


def _entry_points() -> list[metadata.EntryPoint]:
    if sys.version_info >= (3, 10):
        return list(metadata.entry_points(group=GROUP))
    return list(metadata.entry_points().get(GROUP, []))  # pragma: no cover


def _names(var: str) -> set[str] | None:
    value = os.environ.get(var)
    if value is None:
        return None
    return {n.strip() for n in value.split(",") if n.strip()}


def load() -> Loaded:
    """Create the plugin manager and register every allowed entry point (once)."""
    global _loaded
    if _loaded is not None:
        return _loaded
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    only = _names("CF_LAUNCH_LOAD_PLUGINS")
    skip = _names("CF_LAUNCH_DISABLE_PLUGINS") or set()
    loaded = Loaded(pm)
    for ep in _entry_points():
        if (only is not None and ep.name not in only) or ep.name in skip:
            continue
        if pm.get_plugin(ep.name) is not None:
            continue
        try:
            plugin = ep.load()
        except Exception as err:  # a broken third-party plugin must not break cf-launch
            loaded.failed[ep.name] = f"{type(err).__name__}: {err}"
            continue
        pm.register(plugin, name=ep.name)
    _loaded = loaded
    return loaded


def reset() -> None:
    """Forget the loaded manager (tests change the environment switches)."""
    global _loaded
    _loaded = None


def register(plugin: ModuleType | object, name: str) -> None:
    """Register a plugin object directly (the Python API's way to add a hook)."""
    load().pm.register(plugin, name=name)


def available() -> list[str]:
    return sorted(name for name, _ in load().pm.list_name_plugin() if name)


def implemented_hooks(name: str) -> list[str]:
    """The hook names a plugin implements, in specification order."""
    pm = load().pm
    plugin = pm.get_plugin(name)
    names = {c.name for c in pm.get_hookcallers(plugin) or []}
    return [n for n in SPEC_NAMES if n in names]


def plugin_origin(name: str) -> str:
    plugin = load().pm.get_plugin(name)
    return getattr(plugin, "__name__", type(plugin).__name__)


class Hooks:
    """A typed caller over the active hooks only, so mypy checks every call site."""

    def __init__(self, active: tuple[str, ...]) -> None:
        loaded = load()
        known = available()
        for name in active:
            if name in loaded.failed:
                raise ConfigError("hooks", f"hook {name!r} failed to load: {loaded.failed[name]}",
                                  "fix or uninstall the plugin, or remove it from hooks")
            if name not in known:
                raise ConfigError("hooks", f"unknown hook {name!r}",
                                  f"known hooks: {', '.join(known) or '(none loaded)'}")
        self.active = active
        pm = loaded.pm
        inactive = [p for n, p in pm.list_name_plugin() if n not in active]
        self._callers = {
            spec: pm.subset_hook_caller(spec, remove_plugins=inactive)
            for spec in SPEC_NAMES
        }

    def _call(self, spec: str, **kwargs: Any) -> Any:
        return self._callers[spec](**kwargs)

    def validate(self, ctx: LaunchContext) -> None:
        self._call("cf_launch_validate", ctx=ctx)

    def preflight(self, ctx: LaunchContext) -> list[Problem]:
        return [p for found in self._call("cf_launch_preflight", ctx=ctx) for p in found]

    def start_options(self, ctx: LaunchContext) -> list[str]:
        return [o for found in self._ordered("cf_launch_start_options", ctx=ctx) for o in found]

    def binds(self, ctx: LaunchContext) -> list[Bind]:
        return [b for found in self._ordered("cf_launch_binds", ctx=ctx) for b in found]

    def pre_start(self, ctx: LaunchContext, host: HostChanges) -> None:
        self._call("cf_launch_pre_start", ctx=ctx, host=host)

    def post_start(self, ctx: LaunchContext, host: HostChanges,
                   instance: InstanceInfo) -> None:
        self._call("cf_launch_post_start", ctx=ctx, host=host, instance=instance)

    def readiness_endpoint(self, ctx: LaunchContext, instance: InstanceInfo) -> Endpoint | None:
        found: Endpoint | None = self._call("cf_launch_readiness_endpoint", ctx=ctx,
                                            instance=instance)
        return found

    def pre_stop(self, ctx: LaunchContext, instance: InstanceInfo | None) -> None:
        self._call("cf_launch_pre_stop", ctx=ctx, instance=instance)

    def post_stop(self, ctx: LaunchContext) -> None:
        self._call("cf_launch_post_stop", ctx=ctx)

    def _ordered(self, spec: str, **kwargs: Any) -> list[Any]:
        # pluggy returns results last-registered-first; present them in registration order.
        return list(reversed(self._call(spec, **kwargs)))
