"""singularity-compose (0.1.19, spython 0.3.14) boots the ColdFront image with the real
Apptainer 1.4.5, as docs/embedding.md ("2. singularity-compose") says: its YAML files and
commands as written (the image and data folder at the test's paths), on their own and
with cf-launch's network (`prepare --only-hooks`, `attach`, then `stop` or `detach`)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest

from tests.host.harness import ROOT, WORK, Sandbox, TestHost, network_snapshot
from tests.integration.conftest import STATE_ROOT, instance_config
from tests.integration.test_serving_e2e import instances, wait_http

pytestmark = pytest.mark.integration

VERSION = "0.1.19"
SCOMPOSE = "/opt/scompose"          # its own venv of the test host's Python
BIN = f"{WORK}/scompose-bin"        # `singularity` -> apptainer, first on compose's PATH
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROJECT = f"{WORK}/compose"         # singularity-compose.yml; compose writes its files here
DATA = f"{WORK}/compose-data"
NAME = "coldfront1"                 # the YAML's instance name and replica number
NETWORK_OFF = "    network:\n      enable: false\n"
SQLITE = b"SQLite format 3\x00"


@pytest.fixture(scope="module")
def scompose(testhost: TestHost) -> str:
    """singularity-compose in a venv of its own (installed once, then kept), and the private
    `singularity` link spython calls; returns the command."""
    testhost.run(["bash", "-euc",
                  f"{SCOMPOSE}/bin/singularity-compose version 2>/dev/null | grep -qx {VERSION}"
                  f" || {{ python3 -m venv {SCOMPOSE} && {SCOMPOSE}/bin/pip install -q "
                  f"--disable-pip-version-check singularity-compose=={VERSION}; }}; "
                  f"mkdir -p {BIN} && ln -sfn /usr/bin/apptainer {BIN}/singularity"])
    found = testhost.run(["sh", "-c", "command -v singularity && singularity --version"],
                         env={"PATH": f"{BIN}:{SYSTEM_PATH}"}).stdout
    assert found == f"{BIN}/singularity\napptainer version 1.4.5\n", found
    return f"{SCOMPOSE}/bin/singularity-compose"


def doc_files() -> list[str]:
    """The YAML files of docs/embedding.md's singularity-compose part, in order."""
    text = (ROOT / "docs" / "embedding.md").read_text()
    (part,) = re.findall(r"\*\*2\. singularity-compose\*\*(.*?)\*\*3\. ", text, re.S)
    return re.findall(r"```yaml\n(.*?)```", part, re.S)


def write_project(host: TestHost, yaml: str, image: str) -> None:
    """The project folder with this singularity-compose.yml, and an empty data folder
    owned by the image's `coldfront` (uid 8801)."""
    ours = yaml.replace("image: coldfront.sif", f"image: {image}") \
        .replace("- /srv/cf-data:", f"- {DATA}:")
    assert image in ours and DATA in ours, yaml
    host.run(["sh", "-c", f"rm -rf {PROJECT} {DATA} && mkdir -p {PROJECT} && "
              f"install -d -o 8801 -g 8801 -m 0700 {DATA}"])
    host.write(f"{PROJECT}/singularity-compose.yml", ours)


def compose(host: TestHost, box: Sandbox, command: str, *args: str) -> str:
    """`singularity-compose --debug ARGS` in the project folder, the link first on PATH and
    container=apptainer, in the sandbox; its output (--debug shows the start line)."""
    result = host.run(["sh", "-c", f'cd {PROJECT} && exec "$@"', "compose", command,
                       "--debug", *args], netns=box.host,
                      env={"PATH": f"{BIN}:{SYSTEM_PATH}", "container": "apptainer"})
    print(result.stdout + result.stderr)
    return result.stdout + result.stderr


def start_line(output: str) -> str:
    """The `instance start ...` command compose ran (its --debug line)."""
    (line,) = [ln for ln in output.splitlines() if "singularity instance start " in ln]
    return line.split("singularity ", 1)[1].strip()


def booted(host: TestHost, box: Sandbox, output: str) -> dict[str, object]:
    """The instance `up` started (it may exit 0 when the start failed), once its systemd has
    finished booting (asked again while its bus is not there yet)."""
    listed = instances(host, box.host)
    assert NAME in listed, output
    deadline, state = time.monotonic() + 240, ""
    while time.monotonic() < deadline:
        asked = host.run(["timeout", "120", "apptainer", "exec", f"instance://{NAME}",
                          "systemctl", "is-system-running", "--wait"], netns=box.host,
                         check=False)
        state = asked.stdout.strip() or asked.stderr.strip()
        if asked.stdout.strip() not in ("", "initializing", "starting"):
            break
        time.sleep(1)
    assert state == "running", state
    return listed[NAME]


def page(host: TestHost, netns: str, url: str, name: str = "") -> tuple[int, str]:
    """An HTTP GET with curl in ``netns`` (optionally for the host name ``name``)."""
    argv = ["curl", "-s", "-m", "10", "-o", "-", "-w", "\n%{http_code}", url]
    argv += ["-H", f"Host: {name}"] if name else []
    body, _, code = host.run(argv, netns=netns, check=False).stdout.rpartition("\n")
    return int(code or 0), body


def is_login_page(body: str) -> bool:
    """ColdFront's login form, not any page that answers 200."""
    return all(mark in body for mark in ("ColdFront", 'name="csrfmiddlewaretoken"',
                                         'name="username"', 'name="password"'))


def assert_data_kept(host: TestHost) -> None:
    """ColdFront's SQLite database is in the bound data folder, written as `coldfront`."""
    database = host.path(f"{DATA}/coldfront.db")
    assert database.read_bytes()[:16] == SQLITE
    assert database.stat().st_uid == 8801
    assert host.path(f"{DATA}/.secret_key").is_file()


def clean_up(host: TestHost, box: Sandbox, config: str = "") -> None:
    """Stop the instance and undo cf-launch's changes, whatever failed (the sandbox
    fixture then removes the namespaces)."""
    host.run(["apptainer", "instance", "stop", NAME], netns=box.host, check=False)
    if config:
        host.cf(["detach"], config, box.host, check=False)
        host.run(["rm", "-rf", f"{STATE_ROOT}/{NAME}"])


@pytest.fixture
def box() -> Iterator[Sandbox]:
    """The sandbox (net 51), removed whatever the test did."""
    sandbox = Sandbox.create(net=51)
    yield sandbox
    sandbox.destroy()


def test_compose_serves_with_the_data_folder_only(testhost: TestHost, coldfront_image: str,
                                                  scompose: str, box: Sandbox) -> None:
    """`network: enable: false`: compose adds no network options; --boot as root puts the
    instance on Apptainer's default bridge network, where it serves the login page."""
    plain = doc_files()[0]
    assert NETWORK_OFF in plain, plain
    write_project(testhost, plain, coldfront_image)
    try:
        output = compose(testhost, box, scompose, "up")
        line = start_line(output)
        assert f"--bind {DATA}:/srv/coldfront/data " in line, line
        assert "--boot --writable-tmpfs --hostname coldfront1" in line and "--net" not in line
        info = booted(testhost, box, output)
        ip = str(info["ip"])
        assert ip.startswith("10.22."), info
        assert wait_http(testhost, box.host, f"http://{ip}/user/login") == 200
        code, body = page(testhost, box.host, f"http://{ip}/user/login")
        assert code == 200 and is_login_page(body), body[:500]
        assert_data_kept(testhost)
        name = testhost.run(["apptainer", "exec", f"instance://{NAME}", "hostname"],
                            netns=box.host).stdout
        assert name.strip() == NAME
        assert "nameserver 8.8.8.8" in testhost.path(f"{PROJECT}/resolv.conf").read_text()
        compose(testhost, box, scompose, "down")
        assert NAME not in instances(testhost, box.host)
    finally:
        clean_up(testhost, box)


def test_compose_default_network_is_loopback_only(testhost: TestHost, coldfront_image: str,
                                                  scompose: str, box: Sandbox) -> None:
    """Networking on (compose's default), without sudo: `--network none`. ColdFront boots
    and answers on the instance's loopback, and has no other interface."""
    write_project(testhost, doc_files()[0].replace(NETWORK_OFF, ""), coldfront_image)
    try:
        output = compose(testhost, box, scompose, "up")
        line = start_line(output)
        assert re.search(r'--net --network none --network-args "IP=10\.22\.\d+\.\d+"', line), line
        info = booted(testhost, box, output)
        assert info["ip"] == "", info
        pid = str(info["pid"])
        links = testhost.run(["nsenter", "-t", pid, "-n", "ip", "-br", "link"],
                             netns=box.host).stdout
        assert [link.split()[0] for link in links.splitlines()] == ["lo"], links
        code = testhost.run(["nsenter", "-t", pid, "-n", "curl", "-s", "-o", "/dev/null", "-m",
                             "10", "-w", "%{http_code}", "http://127.0.0.1/user/login"],
                            netns=box.host, check=False).stdout
        assert code == "200", code
        assert_data_kept(testhost)
    finally:
        clean_up(testhost, box)


def doc_subnet() -> str:
    """The ``[hook.bridge] subnet`` of the singularity-compose part's site.toml."""
    text = (ROOT / "docs" / "embedding.md").read_text()
    (part,) = re.findall(r"\*\*2\. singularity-compose\*\*(.*?)\*\*3\. ", text, re.S)
    (subnet,) = re.findall(r'\[hook\.bridge\]\nsubnet = "([^"]+)"', part)
    assert f"up --bridge {subnet}" in part, "the docs' `up --bridge` is the same subnet"
    return subnet


@pytest.mark.parametrize(("finish", "subnet", "address"), [
    ("stop", doc_subnet(), doc_subnet().replace(".0/24", ".2")),
    ("down+detach", "10.22.9.0/24", "10.22.9.2"),  # beside Apptainer's default network
])
def test_compose_with_cf_launch_network(testhost: TestHost, coldfront_image: str,
                                        scompose: str, box: Sandbox, finish: str,
                                        subnet: str, address: str) -> None:
    """`prepare --only-hooks`, `up` on the `cf-launch` network, `attach`: the external
    client gets the login page through cf-launch's DNAT; `stop` (or compose's `down` and
    `detach`) leaves the sandbox's network as it was."""
    networked = doc_files()[1]
    assert "    network:\n      type: cf-launch\n" in networked, networked
    write_project(testhost, networked, coldfront_image)
    config = instance_config(testhost, NAME, coldfront_image,
                             f'[hook.bridge]\nsubnet = "{subnet}"\n')
    before = network_snapshot(box.host, testhost)
    try:
        prepared = json.loads(testhost.cf(["prepare", "--only-hooks", "--format", "json"],
                                          config, box.host).stdout)
        assert prepared["options"] == ["--net", "--network", "cf-launch"], prepared
        output = compose(testhost, box, scompose, "up", "--bridge", subnet)
        asked = f'--net --network cf-launch --network-args "IP={address}" '
        assert asked in start_line(output), output
        info = booted(testhost, box, output)
        assert info["ip"] == address, "Apptainer takes compose's quoted address"
        attached = json.loads(testhost.cf(["attach", "--json"], config, box.host).stdout)
        assert attached["ready"] is True and attached["system_state"] == "running"
        assert attached["instance"]["ip"] == address, attached["instance"]
        url = f"http://{box.host_addr}/user/login"
        code, body = page(testhost, box.client, url, NAME)
        assert code == 200 and is_login_page(body), body[:500]
        assert page(testhost, box.client, url)[0] == 400, "the host's address: not allowed"
        assert_data_kept(testhost)
        if finish == "stop":
            stopped = testhost.cf(["stop"], config, box.host)
            assert "systemd inside powered off" in stopped.stdout + stopped.stderr
        else:
            compose(testhost, box, scompose, "down")
            detached = json.loads(testhost.cf(["detach", "--json"], config, box.host).stdout)
            assert detached["still_running"] is False, detached
        assert NAME not in instances(testhost, box.host)
        assert network_snapshot(box.host, testhost) == before, "every change undone"
    finally:
        clean_up(testhost, box, config)
