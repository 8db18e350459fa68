"""The test host booted with a real systemd as PID 1 (systemd-nspawn, tests/host/nspawn.sh),
in a sandbox network namespace, for tests of cf-launch's systemd unit."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.host.harness import HERE, HOST_DIR

SCRIPT = HERE / "nspawn.sh"


@dataclass
class BootedHost:
    """A running copy (overlay) of the test host; ``leader`` is its systemd's PID here."""

    leader: int

    def run(self, argv: list[str], check: bool = True, timeout: float = 120
            ) -> subprocess.CompletedProcess[str]:
        """Run a command inside, in all of its namespaces (reading state, systemctl).

        Such a process stays in this machine's cgroups: start services through systemctl."""
        cmd = ["nsenter", "-t", str(self.leader), "-a", "-r", "-w", *argv]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {result.returncode}\n"
                                 f"stdout: {result.stdout[-3000:]}\n"
                                 f"stderr: {result.stderr[-3000:]}")
        return result

    def show(self, unit: str, *props: str) -> dict[str, str]:
        """``systemctl show -p …`` as a dict."""
        out = self.run(["systemctl", "show", unit, *(f"-p{p}" for p in props)]).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


@contextmanager
def booted(netns: str) -> Iterator[BootedHost]:
    """Boot the test host in ``/run/netns/<netns>``; power it off and remove every trace."""
    work = tempfile.mkdtemp(prefix="cfl-nspawn-", dir="/var/tmp")
    env = {**os.environ, "CF_TESTHOST_DIR": str(HOST_DIR)}
    try:
        result = subprocess.run(["bash", str(SCRIPT), "boot", work, netns], env=env,
                                capture_output=True, text=True, timeout=300, check=False)
        if result.returncode != 0:
            raise AssertionError(f"nspawn.sh boot failed:\n{result.stderr[-3000:]}")
        yield BootedHost(int(result.stdout.split()[-1]))
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", work], env=env, timeout=300,
                       check=False)
