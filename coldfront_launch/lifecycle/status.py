"""What ``cf-launch status`` reports, for one instance or for every instance cf-launch knows.

Fast by construction, since scripts, monitoring and the supervisor call it every few
seconds: one ``apptainer instance list --json`` for all instances; the probes inside the
instances (systemd's state, the security report when it is not cached yet) and HTTP run
in parallel threads, while this thread reads the host for drift; the plugins are loaded
only for an instance whose launch record does not hold its URL (one started by an older
cf-launch). Nothing here imports pyroute2, jinja2, spython or pluggy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from coldfront_launch import apptainer
from coldfront_launch.coldfront import appdata, hardening
from coldfront_launch.coldfront import env as siteenv
from coldfront_launch.config.settings import Settings, with_pin
from coldfront_launch.config.validate import INSTANCE_NAME
from coldfront_launch.errors import LaunchError
from coldfront_launch.exitcodes import ExitCode
from coldfront_launch.lifecycle import readiness
from coldfront_launch.state import pin as imagepin
from coldfront_launch.state import record
from coldfront_launch.state.instance import InstanceState
from coldfront_launch.types import InstanceInfo

if TYPE_CHECKING:  # the typed changes: only for a running instance (drift)
    from coldfront_launch.changes import Reading

T = TypeVar("T")
UrlOf = Callable[[Settings, InstanceInfo, "tuple[str, ...]"], str]


def known_names(state_root: Path) -> list[str]:
    """Instances cf-launch started under ``state_root``: a state folder holding more than
    a lock file (a ``stop`` asked of an instance it never started leaves at most that)."""
    try:
        folders = [p for p in state_root.iterdir() if p.is_dir()]
    except OSError:
        return []
    return sorted(p.name for p in folders if INSTANCE_NAME.fullmatch(p.name) and _made(p))


def _made(folder: Path) -> bool:
    try:
        return any(entry.name != "lock" for entry in folder.iterdir())
    except OSError:
        return False


def plugin_url(settings: Settings, info: InstanceInfo, hooks: tuple[str, ...]) -> str:
    """Where ColdFront answers, asked of the plugins the instance was started with."""
    from coldfront_launch.lifecycle.sequence import LaunchSequence
    seq = LaunchSequence.create(settings, hooks)
    return seq.endpoint(info).url(settings.readiness_path)


def url_of(settings: Settings, info: InstanceInfo, endpoint: UrlOf = plugin_url) -> str:
    """The recorded URL, else the plugins' answer ("" if a plugin cannot say)."""
    launched = record.read(settings.state_dir)
    if launched.url:
        return launched.url
    try:
        return endpoint(settings, info, launched.hooks_or(settings.hooks))
    except LaunchError:
        return ""


def _http(url: str, host: str | None = None) -> int:
    """The HTTP status at ``url`` (0 for no URL: a plugin could not say where), asked with
    a ``Host:`` that ``allowed_hosts`` accepts."""
    return readiness.http_status(url, host=host) if url else 0


def _drift_or_unknown(state: InstanceState, live: Reading | None = None) -> list[str]:
    from coldfront_launch.changes import drift  # the typed changes: a running instance only
    try:
        return drift.find(state, live)
    except LaunchError as err:
        return [f"unknown: {err}"]


def parallel(tasks: list[Callable[[], Any]], here: Callable[[], T]) -> tuple[list[Any], T]:
    """Run ``tasks`` in threads of their own and ``here`` in this thread, at the same time;
    return the tasks' results (in order) and ``here``'s. The first exception of a task is
    raised here (plain threads: ``concurrent.futures`` costs more to import than the
    probes take)."""
    results: list[Any] = [None] * len(tasks)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = tasks[index]()
        except BaseException as err:  # noqa: BLE001 - raised again in the caller's thread
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(tasks))]
    for thread in threads:
        thread.start()
    try:
        mine = here()
    finally:
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return results, mine


#: Every status has these keys, whatever the state (None: not known, e.g. not running).
PROBED = ("ip6", "drift", "system_state", "url", "http_status", "security", "serving")


def health(data: dict[str, Any]) -> tuple[ExitCode, str]:
    """What ``status`` exits with, and why (one line; "" when healthy): not running (8), a
    start that is unfinished (5), running but unhealthy (15: systemd inside not
    ``running``, or ColdFront's HTTP status not 2xx/3xx), or a host change missing (9)."""
    if not data["running"]:
        return ExitCode.NOT_RUNNING, "not running"
    if data.get("unfinished_start"):
        return ExitCode.NOT_READY, str(data["unfinished_start"])
    system, code = data.get("system_state"), data.get("http_status") or 0
    if system is not None and system != "running":
        return ExitCode.UNHEALTHY, f"systemd inside is {system or 'unknown'}, not running"
    if data.get("url") is not None and not 200 <= code < 400:
        return ExitCode.UNHEALTHY, (f"ColdFront answers HTTP {code} at {data['url']}" if code
                                    else f"ColdFront does not answer at {data['url'] or '?'}")
    if data.get("drift"):
        return ExitCode.DRIFTED, f"{len(data['drift'])} host change(s) missing"
    return ExitCode.OK, ""


def with_health(data: dict[str, Any]) -> dict[str, Any]:
    code, reason = health(data)
    data["health"] = {"healthy": code == ExitCode.OK, "exit_code": int(code),
                      "reason": reason}
    return data


def base(settings: Settings, info: InstanceInfo | None) -> dict[str, Any]:
    """The fields that need no probe inside the instance."""
    state = InstanceState(settings.state_dir)
    launched = record.read(settings.state_dir)
    try:
        pin = imagepin.read(settings.state_dir)
    except LaunchError:
        pin = None
    return {
        "name": settings.name,
        "running": info is not None,
        "instance": info.to_json() if info else None,
        "hooks": list(launched.hooks),
        "host_changes": state.count(),
        "unresolved_changes": state.unresolved(),
        "state_dir": str(settings.state_dir),
        "upgrade": pin.to_json() if pin else None,
        "unfinished_start": _unfinished(launched) if info is not None else "",
        **dict.fromkeys(PROBED),
    }


def _unfinished(launched: record.LaunchRecord) -> str:
    """Why the running instance is not ready by cf-launch's account ("" when it is)."""
    if not launched.unfinished:
        return ""
    if launched.starter_alive:
        return f"cf-launch start (pid {launched.pid}) is still preparing it"
    return ("cf-launch start was cut short after the instance started: its network and "
            "post_start never ran")


def one(settings: Settings, running: list[InstanceInfo],
        endpoint: UrlOf = plugin_url) -> dict[str, Any]:
    """Plain ``status``: the instance, its journal, and when it runs its drift, systemd's
    state, HTTP status and security report."""
    info = next((i for i in running if i.name == settings.name), None)
    result = base(settings, info)
    if info is None:
        return with_health(result)
    url = url_of(settings, info, endpoint)
    state = InstanceState(settings.state_dir)
    kept = hardening.kept_report(settings.state_dir, info)
    (system, code, security, ip6), found = parallel(
        [partial(readiness.system_state_of, info.name, info.pid),
         partial(_http, url, siteenv.probe_host(settings)),
         (lambda: kept) if kept is not None else partial(hardening.report, info.name,
                                                          info.pid),
         partial(_ip6, info)],
        lambda: _drift_or_unknown(state))
    if kept is None and system in readiness.BOOTED:
        hardening.keep_report(settings.state_dir, info, security)
    result.update({"ip6": ip6, "drift": found, "system_state": system, "url": url,
                   "http_status": code,
                   "security": security, "serving": _serving(settings)})
    return with_health(result)


def _ip6(info: InstanceInfo) -> str | None:
    """The instance's global IPv6 address on a network of its own (a dual-stack bridge);
    None on the host's network (its addresses are the host's) or without one."""
    if not info.ip:
        return None
    from coldfront_launch.linux import netinfo  # nsenter + ip: no pyroute2
    return netinfo.global_ipv6_of(info.pid) or None


def _serving(settings: Settings) -> dict[str, Any] | None:
    """What the env file the instance booted with says of serving (None: unreadable)."""
    try:
        env = appdata.read_env(settings.state_dir)
    except (OSError, LaunchError):
        return None
    return siteenv.serving(settings, env) if env is not None else None


def every(settings: Settings, running: list[InstanceInfo],
          endpoint: UrlOf = plugin_url) -> list[dict[str, Any]]:
    """``status --all``: every instance cf-launch started under ``state_root``, running or
    not (``managed`` False: one whose settings cannot be read under its name). Instances
    Apptainer runs that cf-launch did not start are not listed.

    Instances without a configuration of their own are read with ``settings`` and their
    own name (their plugins and URL come from their launch record). No security report
    (``status --name NAME`` has it); drift from one reading of the host for all."""
    by_name = {i.name: i for i in running}
    names = known_names(settings.state_root)
    rows: list[dict[str, Any]] = []
    probes: list[Callable[[], Any]] = []
    drifting: list[tuple[dict[str, Any], InstanceState]] = []
    for name in names:
        info = by_name.get(name)
        managed = (settings.state_root / name).is_dir()
        own = settings if name == settings.name else _named(settings, name)
        row = base(own, info) if own is not None and managed else _unmanaged(name, info)
        row["managed"] = managed and own is not None
        if info is not None:
            url = url_of(own, info, endpoint) if row["managed"] and own else ""
            row["url"] = url
            probes.append(partial(readiness.system_state_of, info.name, info.pid))
            probes.append(partial(_http, url, siteenv.probe_host(own) if own else None))
            if row["managed"] and own is not None:
                drifting.append((row, InstanceState(own.state_dir)))
            else:
                row["drift"] = []
        rows.append(row)

    def drift_all() -> list[list[str]]:
        if not drifting:
            return []
        from coldfront_launch.changes import Reading
        live = Reading()
        return [_drift_or_unknown(state, live) for _row, state in drifting]

    results, drifts = parallel(probes, drift_all)
    found = iter(results)
    for row in rows:
        if row["running"]:
            row["system_state"], row["http_status"] = next(found), next(found)
    for (row, _state), items in zip(drifting, drifts):
        row["drift"] = items
    return [with_health(row) for row in rows]


def _named(settings: Settings, name: str) -> Settings | None:
    try:
        return with_pin(settings.with_overrides(name=name))
    except LaunchError:  # a name the settings refuse (e.g. a folder made by hand)
        return None


def _unmanaged(name: str, info: InstanceInfo | None) -> dict[str, Any]:
    return {"name": name, "running": info is not None,
            "instance": info.to_json() if info else None, "hooks": [], "host_changes": 0,
            "unresolved_changes": 0, "state_dir": "", "upgrade": None,
            "unfinished_start": "", **dict.fromkeys(PROBED)}


def of(settings: Settings) -> dict[str, Any]:
    """:func:`one` for the running instances Apptainer lists now."""
    return one(settings, apptainer.list_instances())


def of_all(settings: Settings) -> list[dict[str, Any]]:
    """:func:`every` for the running instances Apptainer lists now."""
    return every(settings, apptainer.list_instances())
