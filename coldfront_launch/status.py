"""What ``cf-launch status`` reports, for one instance or for every instance cf-launch knows.

Fast by construction, since scripts and monitoring call it every few seconds: one
``apptainer instance list --json`` for all instances; the in-instance probes (systemd's
state, HTTP) run in parallel threads; the plugins are loaded only for an instance whose
launch record does not hold its URL (one started by an older cf-launch).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from . import apptainer, readiness, record
from .errors import LaunchError
from .settings import Settings
from .state import InstanceState
from .types import InstanceInfo
from .validate import INSTANCE_NAME

UrlOf = Callable[[Settings, InstanceInfo, tuple[str, ...]], str]


def known_names(state_root: Path) -> list[str]:
    """Instances with a state folder under ``state_root`` (started once, or leftovers)."""
    try:
        folders = [p for p in state_root.iterdir() if p.is_dir()]
    except OSError:
        return []
    return sorted(p.name for p in folders if INSTANCE_NAME.fullmatch(p.name))


def plugin_url(settings: Settings, info: InstanceInfo, hooks: tuple[str, ...]) -> str:
    """Where ColdFront answers, asked of the plugins the instance was started with."""
    from .sequence import LaunchSequence
    seq = LaunchSequence.create(settings, hooks)
    return seq.endpoint(info).url(settings.readiness_path)


def base(settings: Settings, info: InstanceInfo | None) -> dict[str, Any]:
    """The fields that need no probe inside the instance."""
    state = InstanceState(settings.state_dir)
    launched = record.read(settings.state_dir)
    return {
        "name": settings.name,
        "running": info is not None,
        "instance": info.to_json() if info else None,
        "hooks": list(launched.hooks),
        "host_changes": state.count(),
        "unresolved_changes": state.unresolved(),
        "state_dir": str(settings.state_dir),
    }


def url_of(settings: Settings, info: InstanceInfo, endpoint: UrlOf = plugin_url) -> str:
    """The recorded URL, else the plugins' answer ("" if a plugin cannot say)."""
    launched = record.read(settings.state_dir)
    if launched.url:
        return launched.url
    try:
        return endpoint(settings, info, launched.hooks_or(settings.hooks))
    except LaunchError:
        return ""


def probe_all(targets: list[tuple[InstanceInfo, str]]) -> list[tuple[str, int]]:
    """(systemd state, HTTP status) of each (instance, url), all probes in parallel threads
    (plain threads: ``concurrent.futures`` costs more to import than the probes take).

    An empty url is not asked (HTTP 0). A probe's exception is raised here."""
    states: list[str] = [""] * len(targets)
    codes: list[int] = [0] * len(targets)
    errors: list[BaseException] = []

    def run(probe: Callable[[], None]) -> None:
        try:
            probe()
        except BaseException as err:  # noqa: BLE001 - raised again in the caller's thread
            errors.append(err)

    def state(i: int, info: InstanceInfo) -> None:
        states[i] = readiness.system_state_of(info.name, info.pid)

    def http(i: int, url: str) -> None:
        codes[i] = readiness.http_status(url)

    probes = [partial(state, i, info) for i, (info, _) in enumerate(targets)]
    probes += [partial(http, i, url) for i, (_, url) in enumerate(targets) if url]
    threads = [threading.Thread(target=run, args=(p,), daemon=True) for p in probes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return list(zip(states, codes))


def one(settings: Settings, running: list[InstanceInfo],
        endpoint: UrlOf = plugin_url) -> dict[str, Any]:
    """Plain ``status``: the instance, its journal, and when running its health."""
    info = next((i for i in running if i.name == settings.name), None)
    result = base(settings, info)
    if info is not None:
        url = url_of(settings, info, endpoint)
        [(result["system_state"], result["http_status"])] = probe_all([(info, url)])
        result["url"] = url
    return result


def every(settings: Settings, running: list[InstanceInfo],
          endpoint: UrlOf = plugin_url) -> list[dict[str, Any]]:
    """``status --all``: every instance with a state folder under ``state_root`` and every
    running Apptainer instance (``managed`` False: not started by cf-launch here).

    Instances without a configuration of their own are read with ``settings`` and their
    own name (their recorded plugins and URL come from their launch record)."""
    by_name = {i.name: i for i in running}
    names = sorted(set(known_names(settings.state_root)) | set(by_name))
    rows: list[dict[str, Any]] = []
    targets: list[tuple[InstanceInfo, str]] = []
    for name in names:
        info = by_name.get(name)
        managed = (settings.state_root / name).is_dir()
        own = settings if name == settings.name else _named(settings, name)
        row = base(own, info) if own is not None and managed else _unmanaged(name, info)
        row["managed"] = managed
        if info is not None:
            row["url"] = url_of(own, info, endpoint) if own is not None and managed else ""
            targets.append((info, row["url"]))
        rows.append(row)
    probed = iter(probe_all(targets) if targets else [])
    for row in rows:
        if row["running"]:
            row["system_state"], row["http_status"] = next(probed)
    return rows


def _named(settings: Settings, name: str) -> Settings | None:
    try:
        return settings.with_overrides(name=name)
    except LaunchError:  # a name the settings refuse (e.g. a folder made by hand)
        return None


def _unmanaged(name: str, info: InstanceInfo | None) -> dict[str, Any]:
    return {"name": name, "running": info is not None,
            "instance": info.to_json() if info else None, "hooks": [], "host_changes": 0,
            "unresolved_changes": 0, "state_dir": ""}


def of(settings: Settings) -> dict[str, Any]:
    """:func:`one` for the running instances Apptainer lists now."""
    return one(settings, apptainer.list_instances())


def of_all(settings: Settings) -> list[dict[str, Any]]:
    """:func:`every` for the running instances Apptainer lists now."""
    return every(settings, apptainer.list_instances())
