"""Fixtures for tests with the real Apptainer, ColdFront, CNI plugins and iptables."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import textwrap
from collections.abc import Iterator

import pytest

from tests.host.harness import HERE, WORK, Sandbox, TestHost

pytestmark = pytest.mark.integration

BUILD_CONFIG = f"{WORK}/build.toml"
STATE_ROOT = f"{WORK}/state"
CACHE_DIR = "/var/cache/cf-launch"
TEST_LAYER = "/src/tests/host/definitions/network-managers.def"
#: Pinned, so that every run boots the same ColdFront (and test_upgrade_e2e upgrades to it).
COLDFRONT_VERSION = "1.1.10"


@pytest.fixture(scope="session")
def testhost() -> Iterator[TestHost]:
    if os.geteuid() != 0:
        pytest.skip("the Apptainer test host needs root")
    host = TestHost()
    held = host.lock()
    try:
        subprocess.run(["bash", str(HERE / "provision.sh")], check=True)
        host.reset()
        host.install_project()
        yield host
    finally:
        os.close(held)


def build_config(host: TestHost, layers: list[str]) -> str:
    name = "-".join(layer.rsplit("/", 1)[-1].removesuffix(".def") for layer in layers)
    return host.write(f"{WORK}/build-{name}.toml", textwrap.dedent(f"""
        [build]
        layers = {layers!r}
        fakeroot = true
        ca_bundle = "/etc/cf-testhost-ca.crt"
        cache_dir = "{CACHE_DIR}"
        coldfront_version = "{COLDFRONT_VERSION}"
    """).replace("'", '"'))


@pytest.fixture(scope="session")
def coldfront_image(testhost: TestHost) -> str:
    """cf-launch build: the Debian base and the ColdFront layer (cached between runs)."""
    config = build_config(testhost, ["debian-base", "coldfront"])
    result = testhost.cf(["build", "--json"], config=config, timeout=1800)
    return str(json.loads(result.stdout)["image"])


@pytest.fixture(scope="session")
def managers_image(testhost: TestHost, coldfront_image: str) -> str:
    """ColdFront plus systemd-networkd/resolved and NetworkManager, for the override tests."""
    config = build_config(testhost, ["debian-base", "coldfront", TEST_LAYER])
    result = testhost.cf(["build", "--json"], config=config, timeout=1800)
    return str(json.loads(result.stdout)["image"])


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox.create(net=7)
    yield box
    box.destroy()


def recorded_subnet(host: TestHost, network: str = "cf-launch") -> ipaddress.IPv4Network:
    """The subnet the bridge hook picked and recorded for ``network`` (issue 26, item 7):
    in cf-launch's pool, never Apptainer's own default 10.22.0.0/16."""
    from coldfront_launch.hooks.bridge import subnets

    record = json.loads(host.path(f"{STATE_ROOT}/networks.json").read_text())
    subnet = ipaddress.IPv4Network(record[network]["subnet"])
    assert any(subnet.subnet_of(block) for block in subnets.POOL), subnet
    assert not subnet.overlaps(ipaddress.IPv4Network("10.22.0.0/16")), subnet
    return subnet


def instance_config(host: TestHost, name: str, image: str, body: str = "") -> str:
    return host.write(f"{WORK}/{name}.toml", f'name = "{name}"\nimage = "{image}"\n'
                      f'state_root = "{STATE_ROOT}"\nready_timeout = 240\n'
                      + textwrap.dedent(body))


def self_signed_certificate(host: TestHost, image: str, certs: str) -> None:
    """A site certificate (2 days, CN=test) in ``certs``/live/site, made with the image's
    openssl: ColdFront's session cookie is Secure, so logins need HTTPS."""
    host.run(["mkdir", "-p", f"{certs}/live/site"])
    host.run(["apptainer", "exec", "-B", f"{certs}:/mnt", image, "openssl", "req",
              "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test",
              "-keyout", "/mnt/live/site/privkey.pem", "-out", "/mnt/live/site/fullchain.pem"])
