"""The Apptainer test host, made ready for one benchmark run."""

from __future__ import annotations

import subprocess

from tests.host.harness import HERE, TestHost


def ready_host() -> TestHost:
    """Provision (cached), lock for this process, forget earlier runs, install cf-launch."""
    host = TestHost()
    host.lock()  # released when the benchmark exits
    subprocess.run(["bash", str(HERE / "provision.sh")], check=True, capture_output=True)
    host.reset()
    host.install_project()
    return host
