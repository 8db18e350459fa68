"""The ``[security]`` settings: the ColdFront service account and the instance-wide
capability drop list (see docs/security.md). Validation only; no imports of the core."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coldfront_launch.config import validate as v
from coldfront_launch.errors import ConfigError

SECTION = "security"
DEFAULT_UID = 8801
DEFAULT_GID = 8801
ACCOUNT = "coldfront"
ID_RANGE = (1000, 60000)  # above the distributions' system ranges, below nobody (65534)
CAP_NAME = re.compile(r"CAP_[A-Z_]+", re.IGNORECASE | re.ASCII)
#: Linux's capabilities by number (include/uapi/linux/capability.h); the running kernel
#: knows the first ``/proc/sys/kernel/cap_last_cap`` + 1 of them.
CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
CAP_LAST_CAP = Path("/proc/sys/kernel/cap_last_cap")
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


def kernel_capabilities(last_cap: Path | None = None) -> tuple[str, ...]:
    """The capabilities the running kernel knows, by name; all of :data:`CAPABILITIES`
    when ``cap_last_cap`` (default: :data:`CAP_LAST_CAP`) cannot be read."""
    try:
        count = int((last_cap or CAP_LAST_CAP).read_text(encoding="ascii").strip()) + 1
    except (OSError, ValueError):
        return CAPABILITIES
    return CAPABILITIES[:max(count, 1)]


def capability(setting: str, name: str, known: tuple[str, ...]) -> str:
    """One capability name, upper-cased (``CAP_`` and any case: ``cap_sys_time``), that
    the kernel knows and PID 1 may lose."""
    upper = name.upper()
    if not CAP_NAME.fullmatch(name):
        near = difflib.get_close_matches(f"CAP_{upper}", CAPABILITIES, 1, cutoff=0.8)
        raise ConfigError(setting, f"{name!r} is not a capability name",
                          f"write it with CAP_, e.g. {near[0] if near else 'CAP_SYS_MODULE'} "
                          "(see `man 7 capabilities`)")
    if upper not in known:
        near = difflib.get_close_matches(upper, known, 1, cutoff=0.8)
        where = "Linux" if upper not in CAPABILITIES else \
            f"this kernel (it knows {len(known)}, up to {known[-1]})"
        raise ConfigError(setting, f"{name!r} is not a capability {where} knows",
                          f"did you mean {near[0]}?" if near else
                          "see `man 7 capabilities` for the names")
    if upper in KEPT:
        raise ConfigError(setting, f"{upper} cannot be dropped",
                          "systemd's sandboxing of the services inside needs it")
    return upper


def capabilities(setting: str, value: Any, known: tuple[str, ...] | None = None
                 ) -> tuple[str, ...]:
    """Capability names the kernel knows (``known``: :func:`kernel_capabilities`), never
    one that PID 1 must keep."""
    names = v.string_list(setting, value)
    known = kernel_capabilities() if known is None else known
    return tuple(dict.fromkeys(capability(f"{setting}[{i}]", name, known)
                               for i, name in enumerate(names)))


def security_from_mapping(data: Any) -> SecuritySettings:
    """Validate the ``[security]`` table."""
    v.table(SECTION, data, KEYS)
    d = SecuritySettings()
    known = kernel_capabilities()
    # The defaults name capabilities older kernels lack (CAP_BPF: 5.8): those it has.
    default = [name for name in d.drop_capabilities if name in known]
    return SecuritySettings(
        uid=account_id(f"{SECTION}.uid", data.get("uid", d.uid)),
        gid=account_id(f"{SECTION}.gid", data.get("gid", d.gid)),
        drop_capabilities=capabilities(f"{SECTION}.drop_capabilities",
                                       data.get("drop_capabilities", default), known),
    )
