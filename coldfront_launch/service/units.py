"""The systemd units cf-launch writes: a template ``cf-launch@.service`` that runs the
supervisor (``cf-launch run --name %i``), one instance per ColdFront instance name; and
``cf-launch-repair.service``, which puts cf-launch's firewall rules back after the host's
firewall service starts, restarts or reloads (for instances without the supervisor)."""

from __future__ import annotations

import shlex
from pathlib import Path

from coldfront_launch.config.settings import Settings
from coldfront_launch.exitcodes import ExitCode

UNIT_DIR = Path("/etc/systemd/system")
TEMPLATE = "cf-launch@.service"
REPAIR_UNIT = "cf-launch-repair.service"
FIREWALL_UNITS = "nftables.service iptables.service firewalld.service"
GRACE = 60  # seconds beyond the graceful stop for undoing and Apptainer's own stop


def unit_text(cf_launch: list[str], settings: Settings) -> str:
    """The template unit, with the config path fixed at install time."""
    run = shlex.join(cf_launch)
    folders = " ".join(str(p) for p in (settings.state_root, settings.build.cache_dir))
    return f"""\
# {TEMPLATE}, written by `cf-launch service install`. One instance per ColdFront
# instance name: systemctl enable --now cf-launch@coldfront
[Unit]
Description=ColdFront instance %i (cf-launch)
Documentation=https://coldfront.readthedocs.io/
Wants=network-online.target
After=network-online.target firewalld.service nftables.service iptables.service
RequiresMountsFor={folders}

[Service]
Type=notify
NotifyAccess=main
ExecStart={run} run --name %i
Restart=on-failure
RestartSec=5
# An invalid setting (exit 2) needs the admin: no restart every 5 s until then.
RestartPreventExitStatus={int(ExitCode.CONFIG)}
TimeoutStartSec={int(settings.ready_timeout) + GRACE}
# Longer than the graceful shutdown (stop_timeout), then instance stop and the undo.
TimeoutStopSec={int(settings.stop_timeout) + 2 * GRACE}
# SIGTERM to the supervisor only: it stops the instance and undoes the host changes.
# (SIGTERM to systemd inside the instance would make it re-execute, not stop.)
KillMode=mixed
# The instance runs in this unit's cgroup (a namespace rooted there): systemctl status
# lists its processes, and MemoryMax=, CPUQuota=, TasksMax= hold for it (cgroup v2).
Delegate=yes

[Install]
WantedBy=multi-user.target
"""


def repair_unit_text(cf_launch: list[str]) -> str:
    """The repair unit, with the config path fixed at install time.

    ``PartOf=`` restarts it (it stays active: ``RemainAfterExit``) whenever one of the
    firewall services restarts; ``WantedBy=`` starts it after one of them starts;
    ``ReloadPropagatedFrom=`` runs the repair again after ``systemctl reload`` of one of
    them. A ``firewall-cmd --reload`` bypasses systemd: only ``cf-launch run`` hears it."""
    run = shlex.join(cf_launch)
    return f"""\
# {REPAIR_UNIT}, written by `cf-launch service install --repair-unit`.
# Puts back cf-launch's firewall rules (every instance it started) after the host's
# firewall service starts, restarts or reloads. systemctl enable {REPAIR_UNIT}
[Unit]
Description=Repair cf-launch's firewall rules after a firewall service (re)load
Documentation=https://coldfront.readthedocs.io/
PartOf={FIREWALL_UNITS}
After={FIREWALL_UNITS}
ReloadPropagatedFrom={FIREWALL_UNITS}

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={run} repair --all
ExecReload={run} repair --all

[Install]
WantedBy={FIREWALL_UNITS}
"""


def unit_path(unit_dir: Path = UNIT_DIR, repair: bool = False) -> Path:
    return unit_dir / (REPAIR_UNIT if repair else TEMPLATE)
