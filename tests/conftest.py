"""Shared fixtures. Unit tests replace only the apptainer executable
(coldfront_launch/testing/fake_apptainer.py, linked as tests/fakes/apptainer)."""

from __future__ import annotations

import http.server
import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from coldfront_launch import plugins
from coldfront_launch.config import seams
from coldfront_launch.config.settings import settings_from_mapping
from coldfront_launch.linux import sysctl
from coldfront_launch.testing.sif import write_minimal_sif

FAKES = Path(__file__).parent / "fakes"
#: serve_forever's poll interval in the test servers (shutdown() waits up to one of these).
SERVE_POLL = 0.02

# The test seams (CF_LAUNCH_BOOT_ID_FILE, ...) work in this process; children get the mark
# from the .pth file tests/run.sh puts in the venv (config/seams.py).
setattr(sys, seams.MARK, True)

# tests/data holds inputs, among them a plugin with tests of its own (run in its own venv).
collect_ignore = ["data"]



@pytest.fixture
def fake_apptainer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put the fake apptainer (and singularity) first on PATH; return its log. The fake is
    the one plugin authors get (coldfront_launch.testing); tests/fakes/apptainer links it."""
    from coldfront_launch.testing import FakeApptainer

    fake = FakeApptainer.create(tmp_path)
    for key, value in fake.environ().items():
        monkeypatch.setenv(key, value)
    return fake.log


def calls(log: Path) -> list[list[str]]:
    """The recorded apptainer argv lists, without spython's --version probes."""
    if not log.exists():
        return []
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    return [c for c in lines if "--version" not in c]


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cf-launch's wheel, built once per run (the package and docs tests install it)."""
    import fcntl
    import subprocess
    import sys

    # Under pytest-xdist each worker has its own session: build in the folder all workers
    # share, under a lock, so the wheel is built once and two setuptools runs never write
    # the source tree's build/ and *.egg-info/ at the same time.
    base = tmp_path_factory.getbasetemp()  # under xdist: <run's folder>/popen-gwN
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    dist = shared / "cf-launch-dist"
    root = Path(__file__).resolve().parents[1]
    with open(shared / "cf-launch-dist.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = sorted(dist.glob("coldfront_launch-*.whl"))
        if not found:
            subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist),
                            str(root)], check=True, capture_output=True)
            found = sorted(dist.glob("coldfront_launch-*.whl"))
    return found[0]


@pytest.fixture
def sysctl_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private /proc/sys stand-in, so unit tests never touch this machine's kernel."""
    root = tmp_path / "sys"
    (root / "net/ipv4").mkdir(parents=True)
    (root / "net/ipv4/ip_forward").write_text("0\n")
    monkeypatch.setattr(sysctl, "SYSCTL_ROOT", root)
    return root


@pytest.fixture
def http_server() -> Iterator[tuple[str, int]]:
    """A real HTTP server on loopback answering 200 at /user/login."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200 if self.path == "/user/login" else 404)
            self.end_headers()
            self.wfile.write(b"ColdFront login")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    # shutdown() waits for serve_forever's next poll: 0.5 s by default, at every teardown
    thread = threading.Thread(target=server.serve_forever, args=(SERVE_POLL,), daemon=True)
    thread.start()
    yield "127.0.0.1", server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def fresh_plugins() -> Iterator[None]:
    plugins.reset()
    yield
    plugins.reset()


@pytest.fixture
def make_settings(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Settings with a private state root and an existing image."""
    image = write_minimal_sif(tmp_path / "coldfront.sif")

    def make(**raw):  # type: ignore[no-untyped-def]
        data = {"state_root": str(tmp_path / "state"), "image": str(image),
                "build": {"cache_dir": str(tmp_path / "cache")}, "ready_timeout": 10}
        data.update(raw)
        return settings_from_mapping(data)
    return make


@pytest.fixture(scope="session", autouse=True)
def own_namespace_untouched() -> Iterator[None]:
    """Fail the run if this machine's own interfaces, routes, firewall or sysctls changed."""
    from tests.host.harness import network_snapshot

    if os.geteuid() != 0:
        yield
        return
    before = network_snapshot(None)
    yield
    after = network_snapshot(None)
    changed = [key for key in before if before[key] != after[key]]
    assert not changed, f"the tests changed this machine's own namespace: {changed}\n" + \
        "\n".join(f"--- {k} before:\n{before[k]}\n--- {k} after:\n{after[k]}" for k in changed)
