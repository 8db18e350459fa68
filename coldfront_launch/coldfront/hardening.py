"""Least privilege inside the container (docs/security.md).

- :func:`binds`: the files every instance gets, in every mode: a ``system.conf.d`` drop-in
  that takes the ``[security] drop_capabilities`` from PID 1's bounding set (and so from
  every service), and the service account's ids, which ``coldfront-account.service`` in
  the image applies before any ColdFront unit starts.
- :func:`preflight`: a host account or group that already uses those ids.
- :func:`report` / :func:`problems`: the ``systemd-analyze security`` exposure of the
  ColdFront units and whether gunicorn runs as root, for ``status`` and ``doctor``
  (:func:`cached_report`: once per instance start).
"""

from __future__ import annotations

import contextlib
import grp
import json
import pwd
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coldfront_launch import apptainer, atomic
from coldfront_launch.config.security import ACCOUNT, DEFAULT_GID, DEFAULT_UID, SecuritySettings
from coldfront_launch.config.settings import Settings
from coldfront_launch.errors import LaunchError
from coldfront_launch.resources import render
from coldfront_launch.types import Bind, InstanceInfo, Problem

DATA = "coldfront_launch.overrides"
CAPS_DROPIN = "/etc/systemd/system.conf.d/cf-launch-hardening.conf"
ACCOUNT_FILE = "/etc/cf-launch/account.env"
UNITS = ("coldfront-gunicorn.service", "coldfront-setup.service", "coldfront-qcluster.service",
         "coldfront-redis.service", "nginx.service")
# The highest accepted `systemd-analyze security` exposure of each unit.
LIMITS = {"coldfront-gunicorn.service": 2.5, "coldfront-setup.service": 2.5,
          "coldfront-qcluster.service": 2.5, "coldfront-redis.service": 2.5,
          "nginx.service": 5.0}
EXPOSURE = re.compile(r"Overall exposure level for (\S+): ([0-9.]+) (\S+)")


def binds(settings: Settings) -> list[Bind]:
    """The capability drop-in and the account ids, bound in both network modes."""
    sec: SecuritySettings = settings.security
    return [
        Bind(CAPS_DROPIN, content=render(DATA, "systemd/hardening.conf.j2",
                                         dropped=sec.drop_capabilities)),
        Bind(ACCOUNT_FILE, content=f"# cf-launch [security]: ids of the {ACCOUNT} account\n"
                                   f"COLDFRONT_UID={sec.uid}\nCOLDFRONT_GID={sec.gid}\n"),
    ]


def preflight(settings: Settings) -> list[Problem]:
    """A host account using the service uid could read and change ColdFront's data."""
    sec = settings.security
    found: list[Problem] = []
    if not settings.writable_tmpfs and (sec.uid, sec.gid) != (DEFAULT_UID, DEFAULT_GID):
        found.append(Problem(
            "security.uid", f"ids {sec.uid}:{sec.gid} differ from the image's "
            f"{DEFAULT_UID}:{DEFAULT_GID}, and without writable_tmpfs they cannot be applied",
            "set writable_tmpfs = true, or use the default ids"))
    user = _name_of(lambda: pwd.getpwuid(sec.uid).pw_name)
    if user:
        found.append(Problem(
            "security.uid", f"uid {sec.uid} is already used by the host account {user!r}: it "
            "would own ColdFront's data and reach its socket",
            "set [security] uid (and gid) to an id no host account uses"))
    group = _name_of(lambda: grp.getgrgid(sec.gid).gr_name)
    if group:
        found.append(Problem(
            "security.gid", f"gid {sec.gid} is already used by the host group {group!r}",
            "set [security] gid to an id no host group uses", fatal=False))
    return found


def _name_of(lookup: Callable[[], str]) -> str:
    """The host account or group an id belongs to ("" for none)."""
    try:
        return lookup()
    except KeyError:
        return ""


REPORT_SCRIPT = (
    "systemd-analyze security --no-pager {units} 2>/dev/null | grep 'Overall exposure'; "
    "ps -eo user:32=,args= | grep '[g]unicorn' || true"
)


def report(name: str, pid: int = 0) -> dict[str, Any]:
    """Exposure per ColdFront unit, and the users gunicorn runs as, inside the instance
    (through ``nsenter`` into its systemd ``pid`` when possible, else ``apptainer exec``)."""
    out = apptainer.probe_inside(
        name, pid, ["sh", "-c", REPORT_SCRIPT.format(units=" ".join(UNITS))], timeout=60).out
    exposure = {unit: float(score) for unit, score, _word in EXPOSURE.findall(out)}
    users = sorted({line.split()[0] for line in out.splitlines()
                    if "gunicorn" in line and "Overall exposure" not in line})
    return {"exposure": exposure, "gunicorn_users": users,
            "gunicorn_as_root": "root" in users}


#: The report of the running instance, kept in its state folder (see :func:`cached_report`).
CACHE = "security.json"


def _started_as(pid: int) -> str:
    """Which start of an instance ``pid`` is: the pid and its start time since boot (from
    ``/proc/PID/stat``), "" if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat.rsplit(")", 1)[-1].split()
    return f"{pid}:{fields[19]}" if len(fields) > 19 else ""


def kept_report(state_dir: Path, info: InstanceInfo) -> dict[str, Any] | None:
    """The report kept for this start of the instance, if there is one."""
    started = _started_as(info.pid)
    if not started:
        return None
    try:
        kept = json.loads((state_dir / CACHE).read_text())
        if kept.get("started") == started:
            return dict(kept["report"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return None


def keep_report(state_dir: Path, info: InstanceInfo, found: dict[str, Any]) -> None:
    """Keep ``found`` for this start of the instance (only once systemd has booted: the
    units' settings and gunicorn's user are final then)."""
    started = _started_as(info.pid)
    if not started or not state_dir.is_dir():
        return
    with contextlib.suppress(OSError):
        atomic.write_json(state_dir / CACHE, {"started": started, "report": found}, sync=False)


def cached_report(state_dir: Path, info: InstanceInfo, booted: bool) -> dict[str, Any]:
    """:func:`report`, computed once per instance start and kept in ``state_dir``.

    The figures depend on the image's units and on who gunicorn runs as, neither of
    which changes while the instance runs, and ``systemd-analyze security`` costs a few
    hundred ms, while ``status`` is called every few seconds. Kept only when ``booted``
    (systemd ``running`` or ``degraded``), so a report taken while booting is asked
    again."""
    kept = kept_report(state_dir, info)
    if kept is not None:
        return kept
    found = report(info.name, info.pid)
    if booted:
        keep_report(state_dir, info, found)
    return found


def problems(found: dict[str, Any]) -> list[Problem]:
    """What ``doctor`` says about a running instance's :func:`report`."""
    result = []
    if found["gunicorn_as_root"]:
        result.append(Problem("security", "gunicorn runs as root inside the instance",
                              "rebuild the image (`cf-launch build`) and restart",
                              fatal=False))
    for unit, limit in LIMITS.items():
        score = found["exposure"].get(unit)
        if score is not None and score > limit:
            result.append(Problem("security", f"{unit} exposure {score} is above {limit}",
                                  "rebuild the image (`cf-launch build`) and restart",
                                  fatal=False))
    return result


def doctor(settings: Settings) -> list[Problem]:
    """The id checks, and, when the instance runs, what :func:`problems` finds in it."""
    found = preflight(settings)
    try:
        running = apptainer.find(settings.name)
    except LaunchError:  # no Apptainer: the core's own check says so
        return found
    if running is not None:
        found += problems(report(running.name, running.pid))
    return found
