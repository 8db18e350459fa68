"""The internal ``core`` plugin: cf-launch's own checks, through the same hooks as every
plugin's (always active, never named with ``--hook``)."""

from __future__ import annotations

import os
from pathlib import Path

from coldfront_launch.apptainer import conf, sif
from coldfront_launch.coldfront import hardening, secrets, tls
from coldfront_launch.config.settings import Settings
from coldfront_launch.linux import distro, firewalld, firewalld_bus
from coldfront_launch.plugins.spec import hookimpl
from coldfront_launch.types import LaunchContext, Problem

CGROUP_ROOT = Path("/sys/fs/cgroup")
UNIT_FILE = Path("/etc/systemd/system/cf-launch@.service")


@hookimpl
def cf_launch_preflight(ctx: LaunchContext) -> list[Problem]:
    problems = distro.install_problems() + conf.setuid_problems()
    problems += conf.cgroup_problems(ctx.settings.resources.limited)
    if os.geteuid() != 0:
        problems.append(Problem("root", "cf-launch start needs root (--boot, firewall)",
                                "run it with sudo"))
    problems += cgroup_problems() + unit_problems()
    problems += hardening.preflight(ctx.settings)
    problems += tls.problems(ctx.settings)
    problems += autorepair_problems(ctx.settings)
    problems += secrets.problems(ctx.settings)
    return problems + image_problems(ctx.settings.image_path)


def image_problems(image: Path) -> list[Problem]:
    """The image must be there, a SIF, and whole (its size against its header)."""
    if not image.exists():
        return [Problem("image", f"{image} does not exist", "run `cf-launch build`")]
    why = sif.problem(image)
    if why:
        return [Problem("image", why, "give an image `apptainer build` made (a .sif), or "
                        "run `cf-launch build`")]
    return []


def cgroup_problems(root: Path = CGROUP_ROOT) -> list[Problem]:
    """systemd inside needs a cgroup hierarchy; v2 (unified) is what it prefers."""
    if (root / "cgroup.controllers").exists():
        return []
    if (root / "systemd").is_dir() or (root / "unified").is_dir():
        return [Problem("cgroup", "the host uses the cgroup v1 (legacy/hybrid) hierarchy",
                        "it works, but a unit's MemoryMax=, CPUQuota= and TasksMax= reach "
                        "the instance only on cgroup v2 (systemd.unified_cgroup_hierarchy=1)",
                        fatal=False)]
    return [Problem("cgroup", "no cgroup hierarchy is mounted at /sys/fs/cgroup",
                    "systemd inside the instance needs one; mount cgroup2 there")]


def unit_problems(unit: Path = UNIT_FILE) -> list[Problem]:
    """A unit written before ``Delegate=yes``: the instance leaves the unit's cgroup."""
    try:
        text = unit.read_text(errors="replace")
    except OSError:
        return []
    if "\nDelegate=yes" in text:
        return []
    return [Problem("unit", f"{unit} has no Delegate=yes: the instance's processes are not "
                    "the unit's (systemctl status does not list them, its limits do not "
                    "hold)", "run `cf-launch service install` again", fatal=False)]


def autorepair_problems(settings: Settings) -> list[Problem]:
    """firewalld is here but its reloads cannot be heard (no jeepney, the ``dbus`` extra)."""
    if not firewalld.present() or firewalld_bus.available():
        return []
    interval = settings.drift_check_interval
    when = (f"only by the drift check every {interval:g}s" if interval
            else "not at all (drift_check_interval = 0)")
    return [Problem("dbus", "firewalld is installed but jeepney is not: under `cf-launch run`, "
                    f"what a `firewall-cmd --reload` removes is repaired {when}",
                    "pip install 'coldfront-launch[dbus]'", fatal=False)]
