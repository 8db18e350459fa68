#!/usr/bin/python3 -IS
"""ColdFront's first-boot defaults, so that the image serves without cf-launch
(``apptainer instance start --boot coldfront.sif NAME``). Run as root by
coldfront-defaults.service before any ColdFront unit; writes /run/coldfront-defaults/env
(root 0600), which every ColdFront unit reads before /etc/coldfront/coldfront.env (the
file cf-launch binds): whatever that file sets wins.

- The data folder /srv/coldfront/data: used as it is when it is a bound, writable folder;
  else a tmpfs is mounted on it (read-only image) or the image's own folder is used
  (--writable-tmpfs), and a warning says the data is lost when the instance stops.
- SECRET_KEY: generated once and kept in the data folder (.secret_key, root 0600).
- SQLite in the data folder, ALLOWED_HOSTS from the kernel's host name and this
  namespace's addresses (never DNS), and gunicorn's workers from the CPUs and memory the
  instance may use (the rule of cf-launch's coldfront/workers.py).
"""

from __future__ import annotations

import math
import os
import sys

DATA = "/srv/coldfront/data"
OUT_DIR = "/run/coldfront-defaults"
SITE_ENV = "/etc/coldfront/coldfront.env"
BASE_MEMORY = 384 << 20
WORKER_MEMORY = 128 << 20


def warn(text: str) -> None:
    print(f"<4>coldfront-defaults: {text}", file=sys.stderr, flush=True)


def site_env() -> dict[str, str]:
    """The names cf-launch's env file sets (values unquoted; only the names matter here)."""
    try:
        with open(SITE_ENV) as fh:
            lines = fh.read().splitlines()
    except OSError:
        return {}
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {name.strip(): value for name, value in pairs}


def mount_points() -> set[str]:
    with open("/proc/self/mountinfo") as fh:
        return {line.split()[4] for line in fh}


def data_folder() -> None:
    """Make the data folder writable; warn when what is written there will not last."""
    if DATA in mount_points():
        if os.access(DATA, os.W_OK):
            return
        warn(f"{DATA} is bound read-only: ColdFront cannot keep its data; bind a writable "
             "folder")
        return
    if os.access(DATA, os.W_OK) and _can_write(DATA):
        warn(f"{DATA} is the image's own folder (--writable-tmpfs): the database is lost "
             f"when the instance stops; bind a folder of the host: --bind DIR:{DATA}")
        return
    import subprocess

    owner = os.stat(DATA)
    subprocess.run(["mount", "-t", "tmpfs", "-o",
                    f"mode=0700,uid={owner.st_uid},gid={owner.st_gid},size=25%",
                    "coldfront-data", DATA], check=True)
    warn(f"{DATA} is read-only in the image: ColdFront's data is on a tmpfs and lost when "
         f"the instance stops; bind a folder of the host: --bind DIR:{DATA}")


def _can_write(folder: str) -> bool:
    probe = os.path.join(folder, f".write-test-{os.getpid()}")
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_WRONLY, 0o600))
        os.unlink(probe)
        return True
    except OSError:
        return False


def secret_key() -> str:
    """The key kept in the data folder; a new one the first time."""
    path = os.path.join(DATA, ".secret_key")
    try:
        with open(path) as fh:
            key = fh.read().strip()
        if key:
            return key
    except FileNotFoundError:
        pass
    import secrets

    key = secrets.token_urlsafe(48)
    fd = os.open(path + ".tmp", os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(path + ".tmp", path)
    return key


def addresses() -> list[str]:
    """This namespace's addresses, from the kernel: IPv4 local routes, IPv6 interfaces."""
    found: list[str] = []
    try:
        with open("/proc/net/fib_trie") as fh:
            lines = fh.read().splitlines()
        for before, line in zip(lines, lines[1:]):
            if "/32 host LOCAL" in line:
                found.append(before.split()[-1])
    except OSError:
        pass
    try:
        with open("/proc/net/if_inet6") as fh:
            for line in fh:
                raw, scope = line.split()[0], line.split()[3]
                if scope in ("00", "0"):  # global (link-local is 20, loopback 10)
                    import ipaddress
                    found.append(f"[{ipaddress.IPv6Address(int(raw, 16))}]")
    except (OSError, ValueError):
        pass
    return [a for a in dict.fromkeys(found) if not a.startswith("127.")]


def allowed_hosts() -> str:
    names = ["localhost", "127.0.0.1", "[::1]", os.uname().nodename.lower(), *addresses()]
    return ",".join(n for n in dict.fromkeys(names) if n)


def usable_cpus() -> float:
    count: float = len(os.sched_getaffinity(0))
    for path in cgroup_files("cpu.max"):
        try:
            quota, period = read(path).split()
            if quota != "max":
                count = min(count, int(quota) / int(period))
        except (OSError, ValueError):
            pass
    return count


def memory_limit() -> int | None:
    limits = []
    for path in cgroup_files("memory.max"):
        try:
            text = read(path).strip()
            if text.isdigit():
                limits.append(int(text))
        except OSError:
            pass
    return min(limits) if limits else None


def read(path: str) -> str:
    with open(path) as fh:
        return fh.read()


def cgroup_files(name: str) -> list[str]:
    """``name`` in this process's cgroup (v2) and every cgroup above it."""
    try:
        with open("/proc/self/cgroup") as fh:
            path = next((line.split(":", 2)[2].strip() for line in fh
                         if line.startswith("0::")), None)
    except OSError:
        return []
    if path is None:
        return []
    parts = [p for p in path.split("/") if p]
    return [os.path.join("/sys/fs/cgroup", *parts[:i], name) for i in range(len(parts), -1, -1)]


def workers(cpus: float, memory: int | None) -> int:
    """2 x CPUs + 1, at most what the memory holds (at least one), at most 256."""
    count = 2 * math.ceil(cpus) + 1
    if memory is not None:
        count = min(count, max(1, (memory - BASE_MEMORY) // WORKER_MEMORY))
    return max(1, min(256, count))


def main() -> None:
    site = site_env()
    data_folder()
    env = {
        "DB_URL": f"sqlite:///{DATA}/coldfront.db",
        "STATIC_ROOT": "/srv/coldfront/static",
        "DEBUG": "False",
        "ALLOWED_HOSTS": allowed_hosts(),
        "WEB_CONCURRENCY": str(workers(usable_cpus(), memory_limit())),
        "CF_LAUNCH_CATCH_UP_TASKS": "False",
    }
    if "SECRET_KEY" not in site:
        env["SECRET_KEY"] = secret_key()
    os.makedirs(OUT_DIR, mode=0o700, exist_ok=True)
    target = os.path.join(OUT_DIR, "env")
    fd = os.open(target + ".tmp", os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.writelines(f"{name}={value}\n" for name, value in env.items())
    os.replace(target + ".tmp", target)
    kept = sorted(set(env) & set(site))
    print(f"coldfront-defaults: {len(env)} defaults"
          + (f", {len(kept)} of them set by {SITE_ENV}" if kept else "")
          + f", {env['WEB_CONCURRENCY']} workers", flush=True)


if __name__ == "__main__":
    main()
