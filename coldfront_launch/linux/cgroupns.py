"""Keep an instance inside the systemd unit that starts it (``cf-launch@NAME.service``).

Apptainer always puts an instance in a cgroup of its own, ``/apptainer/<pid>``, counted
from the root of each hierarchy; no option moves it. Moving its processes afterwards would
break the instance's own systemd, which keeps its services in sub-cgroups of that path.
So Apptainer runs in a cgroup namespace whose root is a cgroup of the unit, with the
hierarchies mounted again in a private mount namespace: ``/apptainer/<pid>`` is then
created inside the unit, ``systemctl status`` lists the instance's processes, and the
unit's limits (``MemoryMax=``, ``CPUQuota=``, ``TasksMax=`` on cgroup v2) hold for it.

Only under cf-launch's own unit, with ``Delegate=yes`` (systemd marks its cgroup with the
``trusted.delegate`` attribute): the unit's subtree is then cf-launch's to arrange. On
cgroup v2 a cgroup with controllers for its children may hold no process, so the unit's
own processes move to ``<unit>/supervisor`` and Apptainer starts from ``<unit>/instance``
(its root, empty once the starter moved to ``starter`` below it). systemd removes the
whole subtree when the unit stops; nothing here outlives it."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
DELEGATE_ATTRS = ("trusted.delegate", "user.delegate")
CONTROLLERS = ("cpu", "cpuset", "io", "memory", "pids")
#: The units ``cf-launch service install`` writes (systemd escapes "-" in %i as \x2d).
UNIT_NAME = re.compile(r"cf-launch@[^/]+\.service")

#: Runs as ``sh -c SCRIPT sh INSTANCE_CGROUP COMMAND...``: joins the instance's cgroup,
#: then, in new cgroup and mount namespaces, mounts each cgroup hierarchy again (rooted at
#: that cgroup), moves itself one level down (cgroup v2: the root must stay empty) and
#: runs the command. The mounts are private to it; this machine's stay as they were.
SCRIPT = r"""
[ -z "$1" ] || echo $$ >"$1/cgroup.procs"
shift
exec unshare --cgroup --mount --propagation slave sh -euc '
awk '"'"'$3 ~ /^cgroup2?$/ && $2 ~ "^/sys/fs/cgroup" {print $2, $3, $4}'"'"' /proc/self/mounts |
  while read -r mnt type opts; do
    umount -l "$mnt"
    mount -t "$type" -o "$(echo "$opts" | sed "s/,nsdelegate//")" cgroup "$mnt"
  done
if [ -e /sys/fs/cgroup/cgroup.subtree_control ] && [ -s /sys/fs/cgroup/cgroup.controllers ]; then
  mkdir -p /sys/fs/cgroup/starter && echo $$ >/sys/fs/cgroup/starter/cgroup.procs
fi
exec "$@"' sh "$@"
"""


def _own_path(proc: Path = Path("/proc/self/cgroup")) -> tuple[Path, str] | None:
    """This process's cgroup on the hierarchy systemd tracks units with: the unified one
    (``0::``), else v1's ``name=systemd``; with that hierarchy's mount point."""
    try:
        lines = proc.read_text().splitlines()
    except OSError:
        return None
    found = {}
    for line in lines:
        _, names, path = line.split(":", 2)
        found[names] = path
    if "" in found and (CGROUP_ROOT / "cgroup.controllers").exists():
        return CGROUP_ROOT, found[""]
    if "" in found and (CGROUP_ROOT / "unified" / "cgroup.controllers").exists():
        return CGROUP_ROOT / "unified", found[""]
    if "name=systemd" in found:
        return CGROUP_ROOT / "systemd", found["name=systemd"]
    return None


def delegated_unit(proc: Path = Path("/proc/self/cgroup")) -> Path | None:
    """The cgroup folder of the ``cf-launch@NAME.service`` this process runs in, if the
    unit has ``Delegate=yes``; else None (a shell, another unit, e.g. a CI runner's, a
    unit without delegation, no systemd)."""
    if not os.environ.get("INVOCATION_ID") or shutil.which("unshare") is None:
        return None
    own = _own_path(proc)
    if own is None or not UNIT_NAME.fullmatch(own[1].rsplit("/", 1)[-1]):
        return None
    folder = own[0] / own[1].lstrip("/")
    for attr in DELEGATE_ATTRS:
        try:
            if os.getxattr(folder, attr) == b"1":
                return folder
        except OSError:
            continue
    return None


def _move_all(source: Path, target: Path) -> None:
    target.mkdir(exist_ok=True)
    for pid in (source / "cgroup.procs").read_text().split():
        try:
            (target / "cgroup.procs").write_text(pid)
        except ProcessLookupError:
            continue  # exited meanwhile


def arrange(unit: Path) -> Path:
    """Ready the unit's subtree; return the cgroup Apptainer is to start from.

    cgroup v2 with controllers: the unit's processes (this one) move to ``supervisor``,
    the controllers the unit has are enabled for its children, and ``instance`` is made.
    Otherwise (v1, or the unified hierarchy of a hybrid host, which has no controllers):
    the unit itself."""
    if not (CGROUP_ROOT / "cgroup.controllers").exists() or CGROUP_ROOT not in unit.parents:
        return unit
    available = [c for c in (unit / "cgroup.controllers").read_text().split()
                 if c in CONTROLLERS]
    if not available:
        return unit
    _move_all(unit, unit / "supervisor")
    (unit / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in available))
    instance = unit / "instance"
    instance.mkdir(exist_ok=True)
    return instance


def wrapped(command: list[str], start_from: Path | None) -> list[str]:
    """``command`` run in a cgroup namespace rooted at ``start_from`` (joined first;
    None: where this process is)."""
    return ["sh", "-c", SCRIPT, "sh", str(start_from or ""), *command]
