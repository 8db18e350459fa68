"""The Apptainer test host, made ready for one benchmark run."""

from __future__ import annotations

import json
import subprocess
import textwrap

from tests.host.harness import HERE, WORK, TestHost


def ready_host() -> TestHost:
    """Provision (cached), lock for this process, forget earlier runs, install cf-launch."""
    host = TestHost()
    host.lock()  # released when the benchmark exits
    subprocess.run(["bash", str(HERE / "provision.sh")], check=True, capture_output=True)
    host.reset()
    host.install_project()
    return host


def coldfront_image(host: TestHost) -> str:
    """The ColdFront image (built if the cache lacks it)."""
    config = host.write(f"{WORK}/bench-build-coldfront.toml", textwrap.dedent("""
        [build]
        layers = ["debian-base", "coldfront"]
        fakeroot = true
        ca_bundle = "/etc/cf-testhost-ca.crt"
        cache_dir = "/var/cache/cf-launch"
    """))
    return str(json.loads(host.cf(["build", "--json"], config, timeout=3600).stdout)["image"])


def coldfront_config(host: TestHost, name: str, state: str) -> str:
    """A settings file for instance ``name`` of the ColdFront image, state under ``state``."""
    image = coldfront_image(host)
    return host.write(f"{WORK}/{name}.toml", f'name = "{name}"\nimage = "{image}"\n'
                      f'state_root = "{state}"\nready_timeout = 240\n')
