"""Apptainer's own configuration on this host: a value from ``apptainer.conf``, and the
setuid starters cf-launch does not need (``--boot`` runs as root).

Paths are module constants and function arguments, so tests point them at sample files.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from coldfront_launch.types import Problem

APPTAINER_CONFS = (Path("/etc/apptainer/apptainer.conf"),
                   Path("/usr/local/etc/apptainer/apptainer.conf"))
STARTER_SUID_GLOBS = ("/usr/libexec/apptainer/bin/starter-suid",
                      "/usr/local/libexec/apptainer/bin/starter-suid",
                      "/usr/lib/*/apptainer/bin/starter-suid")


def conf_value(key: str, confs: tuple[Path, ...] | None = None) -> tuple[str, Path | None]:
    """``key``'s value in the first apptainer.conf that sets it, and that file."""
    confs = APPTAINER_CONFS if confs is None else confs
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=\s*(\S+)", re.MULTILINE)
    for conf in confs:
        try:
            match = pattern.search(conf.read_text(errors="replace"))
        except OSError:
            continue
        if match:
            return match.group(1), conf
    return "", None


def suid_starters(globs: tuple[str, ...] | None = None) -> list[Path]:
    """Installed ``starter-suid`` binaries that carry the setuid bit."""
    found = []
    for pattern in STARTER_SUID_GLOBS if globs is None else globs:
        for candidate in sorted(Path("/").glob(pattern.lstrip("/"))):
            try:
                if candidate.stat().st_mode & stat.S_ISUID:
                    found.append(candidate)
            except OSError:
                continue
    return found


def setuid_problems(confs: tuple[Path, ...] | None = None,
                    globs: tuple[str, ...] | None = None) -> list[Problem]:
    """Non-fatal notes: setuid mode that ``--boot`` as root does not need."""
    starters = suid_starters(globs)
    if not starters:
        return []
    value, conf = conf_value("allow setuid", confs)
    value = value.lower()
    where = str(conf) if conf else "apptainer.conf"
    starter = starters[0]
    if value in ("", "yes"):  # Apptainer's default is yes
        return [Problem("setuid", f"setuid mode is on ({starter} is setuid root, "
                        f"`allow setuid = {value or 'yes'}` in {where}); cf-launch runs "
                        "`--boot` as root and does not need it",
                        f"set `allow setuid = no` in {where}, or remove the apptainer-suid "
                        "package", fatal=False)]
    return [Problem("setuid", f"{starter} is still setuid root, though {where} says "
                    f"`allow setuid = {value}`; cf-launch does not need it",
                    f"remove the apptainer-suid package, or `chmod u-s {starter}`",
                    fatal=False)]


SYSTEMD_RUNNING = Path("/run/systemd/system")


def cgroup_problems(limited: bool, confs: tuple[Path, ...] | None = None,
                    systemd: Path | None = None) -> list[Problem]:
    """``[resources]`` limits need a cgroup manager Apptainer can use: systemd as PID 1
    (``systemd cgroups = yes``, the default), else the cgroupfs manager."""
    if not limited:
        return []
    if confs is None and os.environ.get("APPTAINER_CONFIG_FILE"):
        confs = (Path(os.environ["APPTAINER_CONFIG_FILE"]),)  # what Apptainer reads then
    value, where = conf_value("systemd cgroups", confs)
    uses_systemd = value.lower() != "no"
    running = (SYSTEMD_RUNNING if systemd is None else systemd).is_dir()
    if uses_systemd and not running:
        return [Problem("resources", "Apptainer applies [resources] limits through systemd "
                        f"(systemd cgroups = yes in {where or 'apptainer.conf'}), and systemd "
                        "is not PID 1 on this host: the start would fail",
                        "remove [resources], or set systemd cgroups = no in apptainer.conf")]
    return []
