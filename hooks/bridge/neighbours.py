"""Other firewalls on the host that stop the bridge's forwarded ports: firewalld's
``StrictForwardPorts`` and the FORWARD policy DROP that Docker sets. ``doctor`` (preflight)
reports both, with the fix; neither stops ``start``."""

from __future__ import annotations

from coldfront_launch.linux import firewalld
from coldfront_launch.types import Problem

DOCKER_USER = "DOCKER-USER"


def strict_forward_ports() -> list[Problem]:
    """firewalld 2.3+ with ``StrictForwardPorts=yes`` rejects forwarded traffic that
    another program's DNAT sent (cf-launch's ports are such DNAT)."""
    path = firewalld.conf_path()
    if not firewalld.strict_forward_ports(path):
        return []
    return [Problem("firewalld", f"StrictForwardPorts=yes in {path}: while firewalld runs, it "
                    "rejects forwarded traffic it did not DNAT itself, so ColdFront's ports "
                    "(DNAT by cf-launch) do not answer from outside",
                    f"set StrictForwardPorts=no in {path}, then `firewall-cmd --reload`",
                    fatal=False)]


def docker_forward_drop(saved: str) -> list[Problem]:
    """``iptables-save`` output with the filter FORWARD policy DROP and Docker's DOCKER-USER
    chain: the host drops what no rule forwards, and Docker put that policy there."""
    policy, docker, table = "", False, ""
    for line in saved.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif table == "filter" and line.startswith(":"):
            name, chain_policy = (line[1:].split() + ["", ""])[:2]
            if name == "FORWARD":
                policy = chain_policy
            docker = docker or name == DOCKER_USER
    if policy != "DROP" or not docker:
        return []
    return [Problem("docker", "the FORWARD policy is DROP and Docker's DOCKER-USER chain "
                    "exists: forwarded traffic that no rule accepts is dropped. cf-launch's "
                    "own FORWARD chain accepts ColdFront's, but whatever removes that chain "
                    "(a firewall reload, iptables -F) cuts ColdFront off until it is repaired",
                    "keep automatic repair on: `cf-launch run` (cf-launch service install), "
                    "or `cf-launch service install --repair-unit`; put rules of your own in "
                    "DOCKER-USER, which Docker keeps", fatal=False)]
