"""Who listens on a TCP port in a network namespace (``ss`` run inside it)."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class Listener:
    port: int
    address: str
    process: str
    pid: int

    def describe(self) -> str:
        who = f"{self.process} (pid {self.pid})" if self.pid else "an unknown process"
        return f"port {self.port} is already in use by {who} on {self.address}"


USERS = re.compile(r'\("([^"]*)",pid=(\d+)')


def _same_netns(netns_path: str) -> bool:
    try:
        return os.stat(netns_path).st_ino == os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return False


def tcp_listeners(netns_path: str) -> list[Listener]:
    """Every TCP listener in the namespace at ``netns_path``."""
    argv = ["ss", "-H", "-l", "-t", "-n", "-p"]
    if not _same_netns(netns_path):
        argv = ["nsenter", f"--net={netns_path}", *argv]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    found = []
    for line in result.stdout.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        local = fields[3]
        address, _, port = local.rpartition(":")
        if not port.isdigit():
            continue
        users = USERS.search(line)
        found.append(Listener(int(port), address, users.group(1) if users else "",
                              int(users.group(2)) if users else 0))
    return found


def busy(netns_path: str, ports: list[int]) -> list[Listener]:
    """The listeners that hold any of ``ports`` (one per port)."""
    seen: dict[int, Listener] = {}
    for listener in tcp_listeners(netns_path):
        if listener.port in ports and listener.port not in seen:
            seen[listener.port] = listener
    return [seen[p] for p in ports if p in seen]
