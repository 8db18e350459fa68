"""Readiness: one blocking systemd call, then HTTP polled with a short backoff."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from coldfront_launch.apptainer import Probe
from coldfront_launch.errors import NotReadyError
from coldfront_launch.lifecycle import readiness
from coldfront_launch.types import Endpoint


class Clock:
    """A fake clock that sleeps instantly."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 4))
        self.now += seconds


def test_backoff_grows_from_50_ms_to_500_ms() -> None:
    delays = readiness.backoff()
    assert [round(next(delays), 4) for _ in range(8)] == [
        0.05, 0.075, 0.1125, 0.1688, 0.2531, 0.3797, 0.5, 0.5]


def test_systemd_is_waited_for_in_one_blocking_call(
        fake_apptainer: Path, http_server: tuple[str, int]) -> None:
    Path(os.environ["FAKE_APPTAINER_STATE"]).write_text(
        json.dumps({"cf1": {"instance": "cf1", "pid": 1, "img": "x", "ip": ""}}))
    found = readiness.wait_ready("cf1", Endpoint(*http_server), "/user/login", 10)
    assert (found.system_state, found.http_status) == ("running", 200)
    execs = [c for c in map(json.loads, fake_apptainer.read_text().splitlines())
             if c[1] == "exec"]
    assert [c[-3:] for c in execs] == [["systemctl", "is-system-running", "--wait"]]


def test_whichever_family_answers_is_used(fake_apptainer: Path,
                                         http_server: tuple[str, int]) -> None:
    """Nothing at the endpoint's own address (here a loopback address nobody listens on,
    standing in for an IPv4 address ColdFront does not answer at): the fallback (the
    other family's address) answers, and its URL is the one reported."""
    Path(os.environ["FAKE_APPTAINER_STATE"]).write_text(
        json.dumps({"cf1": {"instance": "cf1", "pid": 1, "img": "x", "ip": ""}}))
    host, port = http_server
    found = readiness.wait_ready("cf1", Endpoint("127.0.0.9", port, fallback=host),
                                 "/user/login", 10)
    assert found.http_status == 200 and found.url == f"http://{host}:{port}/user/login"
    assert Endpoint("::1", 80, fallback="").fallback_url("/") == ""
    assert Endpoint("10.0.0.1", 80, fallback="fd42::2").fallback_url("/x") == \
        "http://[fd42::2]:80/x"


def test_http_polled_with_backoff_until_it_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    answers = iter([0, 0, 0, 0, 502, 200])
    asked: list[float] = []
    monkeypatch.setattr(readiness, "wait_system", lambda _n, _t, _p=0: "running")

    def http(_url: str, timeout: float = 5, host: str | None = None) -> int:
        asked.append(clock.now)
        return next(answers)
    monkeypatch.setattr(readiness, "http_status", http)
    found = readiness.wait_ready("cf1", Endpoint("127.0.0.1", 80), "/", 60, clock=clock,
                                 sleep=clock.sleep)
    assert found.http_status == 200 and found.seconds == pytest.approx(0.6594, abs=1e-3)
    assert clock.sleeps == [0.05, 0.075, 0.1125, 0.1688, 0.2531]


def test_systemd_asked_again_when_it_returns_early(monkeypatch: pytest.MonkeyPatch) -> None:
    """Right after `instance start`, systemd may not listen yet (`offline`)."""
    clock = Clock()
    states = iter(["offline", "offline", "degraded"])
    monkeypatch.setattr(readiness, "wait_system", lambda _n, _t, _p=0: next(states))
    monkeypatch.setattr(readiness, "failed_units", lambda _n: ["x.service"])
    monkeypatch.setattr(readiness, "http_status", lambda _u, timeout=5, host=None: 200)
    found = readiness.wait_ready("cf1", Endpoint("127.0.0.1", 80), "/", 60, clock=clock,
                                 sleep=clock.sleep)
    assert (found.system_state, found.failed_units) == ("degraded", ["x.service"])
    assert clock.sleeps == [0.2, 0.3]


def test_timeout_still_raises_not_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(readiness, "wait_system", lambda _n, _t, _p=0: "starting")
    monkeypatch.setattr(readiness, "failed_units", lambda _n: [])
    monkeypatch.setattr(readiness, "journal_tail", lambda _n: "")
    with pytest.raises(NotReadyError, match="systemd: starting"):
        readiness.wait_ready("cf1", Endpoint("127.0.0.1", 80), "/", 5, clock=clock,
                             sleep=clock.sleep)
    assert clock.now == pytest.approx(5, abs=0.01)


def test_a_failed_serving_unit_ends_the_wait_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(readiness, "wait_system", lambda _n, _t, _p=0: "degraded")
    monkeypatch.setattr(readiness, "failed_units", lambda _n: ["nginx.service"])
    monkeypatch.setattr(readiness, "journal_tail", lambda _n: "nginx: bad config")
    monkeypatch.setattr(readiness, "http_status", lambda _u, timeout=5, host=None: 0)
    with pytest.raises(NotReadyError, match=r"cf1 not ready: nginx.service failed") as err:
        readiness.wait_ready("cf1", Endpoint("127.0.0.1", 80), "/", 300, clock=clock,
                             sleep=clock.sleep)
    assert clock.now == 0 and "nginx: bad config" in err.value.details


def test_a_unit_that_gives_up_later_ends_the_wait_then(monkeypatch: pytest.MonkeyPatch) -> None:
    """gunicorn restarts on failure; it counts once it has hit its start limit."""
    clock = Clock()
    monkeypatch.setattr(readiness, "wait_system", lambda _n, _t, _p=0: "running")
    monkeypatch.setattr(readiness, "failed_units",
                        lambda _n: ["coldfront-gunicorn.service"] if clock.now > 12 else [])
    monkeypatch.setattr(readiness, "journal_tail", lambda _n: "")
    monkeypatch.setattr(readiness, "http_status", lambda _u, timeout=5, host=None: 502)
    with pytest.raises(NotReadyError, match="coldfront-gunicorn.service failed"):
        readiness.wait_ready("cf1", Endpoint("127.0.0.1", 80), "/", 300, clock=clock,
                             sleep=clock.sleep)
    assert 12 < clock.now <= 12 + readiness.FAILED_CHECK_EVERY + 0.5


def test_other_failed_units_do_not_end_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    answers = iter([0, 0, 200])
    monkeypatch.setattr(readiness, "wait_system", lambda _n, _t, _p=0: "degraded")
    monkeypatch.setattr(readiness, "failed_units", lambda _n: ["coldfront-qcluster.service"])
    monkeypatch.setattr(readiness, "http_status", lambda _u, timeout=5, host=None: next(answers))
    found = readiness.wait_ready("cf1", Endpoint("127.0.0.1", 80), "/", 60, clock=clock,
                                 sleep=clock.sleep)
    assert found.http_status == 200 and found.failed_units == ["coldfront-qcluster.service"]


def test_a_timed_out_wait_reads_as_starting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readiness.apptainer, "exec_capture",
                        lambda _n, _argv, timeout=30: Probe(124, "", "timed out"))
    assert readiness.wait_system("cf1", 3) == "starting"


def test_probe_sends_the_host_header_and_counts_a_redirect_without_following() -> None:
    """A strict ALLOWED_HOSTS and an 80→443 redirect can never make `start` wait forever:
    the probe names an allowed host, and a 301 is an answer (the target is never asked)."""
    import http.server
    import threading
    seen: list[tuple[str, str | None]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            seen.append((self.path, self.headers.get("Host")))
            self.send_response(301)
            self.send_header("Location", "https://127.0.0.1:1/elsewhere")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/user/login"
        assert readiness.http_status(url, host="coldfront.example.org") == 301
        assert readiness.http_status(url) == 301
    finally:
        server.shutdown()
    assert seen[0] == ("/user/login", "coldfront.example.org")
    assert seen[1][1] == f"127.0.0.1:{server.server_address[1]}", "the URL's own host"
    assert len(seen) == 2, "the redirect was not followed"


def test_wait_ready_passes_the_host_header_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readiness, "wait_system", lambda _n, _t, _pid=0: "running")
    hosts: list[str | None] = []

    def http(_url: str, timeout: float = 5, host: str | None = None) -> int:
        hosts.append(host)
        return 302
    monkeypatch.setattr(readiness, "http_status", http)
    found = readiness.wait_ready("cf1", Endpoint("127.0.0.1", 80), "/", 60,
                                 host="198.51.100.7")
    assert found.http_status == 302 and hosts == ["198.51.100.7"]
