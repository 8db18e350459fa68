"""The ``[security]`` settings: the ColdFront service account and the instance-wide
capability drop list (see docs/security.md). Validation only; no imports of the core."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from coldfront_launch.config import validate as v
from coldfront_launch.errors import ConfigError

SECTION = "security"
DEFAULT_UID = 8801
DEFAULT_GID = 8801
ACCOUNT = "coldfront"
ID_RANGE = (1000, 60000)  # above the distributions' system ranges, below nobody (65534)
CAP_NAME = re.compile(r"^CAP_[A-Z_]+$")
KEPT = frozenset({"CAP_SYS_ADMIN"})  # systemd's sandboxing (namespaces, mounts) needs it

# What PID 1 and every service inside lose. Each was tested against a booted ColdFront
# (systemd `running`, HTTP 200, every sandboxing directive applied) in both modes.
DEFAULT_DROP = (
    "CAP_SYS_MODULE",         # load kernel modules: a host compromise
    "CAP_SYS_RAWIO",          # raw I/O ports, /dev/mem (Apptainer drops it too)
    "CAP_SYS_BOOT",           # reboot the host (Apptainer drops it too)
    "CAP_SYS_TIME",           # set the host's clock
    "CAP_SYS_PTRACE",         # trace any process, also host processes seen via /proc
    "CAP_SYS_PACCT",          # process accounting
    "CAP_SYS_TTY_CONFIG",     # vhangup, console configuration
    "CAP_SYS_NICE",           # real-time scheduling of host CPUs
    "CAP_SYS_RESOURCE",       # raise limits beyond the hard limit, override quotas
    "CAP_SYSLOG",             # the host's kernel log
    "CAP_MKNOD",              # device nodes (block devices: the host's disks)
    "CAP_LINUX_IMMUTABLE",    # chattr +i/+a
    "CAP_LEASE",              # file leases
    "CAP_IPC_LOCK",           # locked memory
    "CAP_IPC_OWNER",          # bypass System V IPC permissions
    "CAP_WAKE_ALARM",         # wake-up timers
    "CAP_BLOCK_SUSPEND",      # block system suspend
    "CAP_AUDIT_CONTROL",      # the host's audit rules
    "CAP_AUDIT_READ",         # the host's audit log
    "CAP_MAC_ADMIN",          # LSM policy
    "CAP_MAC_OVERRIDE",       # bypass LSM policy
    "CAP_BPF",                # load BPF programs
    "CAP_PERFMON",            # perf events of the host
    "CAP_CHECKPOINT_RESTORE",  # checkpoint/restore of processes
    "CAP_NET_BROADCAST",      # unused by Linux; nothing to keep it for
    "CAP_SETFCAP",            # put file capabilities on binaries
)


@dataclass(frozen=True)
class SecuritySettings:
    """The service account's ids and the capabilities the whole instance goes without."""

    uid: int = DEFAULT_UID
    gid: int = DEFAULT_GID
    drop_capabilities: tuple[str, ...] = DEFAULT_DROP

    def to_raw(self) -> dict[str, Any]:
        return {"uid": self.uid, "gid": self.gid,
                "drop_capabilities": list(self.drop_capabilities)}


KEYS = {"uid", "gid", "drop_capabilities"}


def account_id(setting: str, value: Any) -> int:
    """A uid or gid in :data:`ID_RANGE`."""
    low, high = ID_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(setting, f"{value!r} is not an id in {low}-{high}",
                          f"use a whole number {low}-{high} that no host account uses")
    return int(value)


def capabilities(setting: str, value: Any) -> tuple[str, ...]:
    """Capability names (``CAP_...``), never one that PID 1 must keep."""
    names = v.string_list(setting, value)
    for i, name in enumerate(names):
        if not CAP_NAME.match(name):
            raise ConfigError(f"{setting}[{i}]", f"{name!r} is not a capability name",
                              "e.g. CAP_SYS_MODULE (see `man 7 capabilities`)")
        if name in KEPT:
            raise ConfigError(f"{setting}[{i}]", f"{name} cannot be dropped",
                              "systemd's sandboxing of the services inside needs it")
    return tuple(dict.fromkeys(names))


def security_from_mapping(data: Any) -> SecuritySettings:
    """Validate the ``[security]`` table."""
    v.table(SECTION, data, KEYS)
    d = SecuritySettings()
    return SecuritySettings(
        uid=account_id(f"{SECTION}.uid", data.get("uid", d.uid)),
        gid=account_id(f"{SECTION}.gid", data.get("gid", d.gid)),
        drop_capabilities=capabilities(f"{SECTION}.drop_capabilities",
                                       data.get("drop_capabilities",
                                                list(d.drop_capabilities))),
    )
