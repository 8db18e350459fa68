"""Readiness: one blocking systemd call, then HTTP polled with a short backoff."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from coldfront_launch import readiness
from coldfront_launch.apptainer import Probe
from coldfront_launch.errors import NotReadyError
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


def test_http_polled_with_backoff_until_it_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    answers = iter([0, 0, 0, 0, 502, 200])
    asked: list[float] = []
    monkeypatch.setattr(readiness, "wait_system", lambda _n, _t, _p=0: "running")

    def http(_url: str, timeout: float = 5) -> int:
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
    monkeypatch.setattr(readiness, "http_status", lambda _u, timeout=5: 200)
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


def test_a_timed_out_wait_reads_as_starting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readiness.apptainer, "exec_capture",
                        lambda _n, _argv, timeout=30: Probe(124, "", "timed out"))
    assert readiness.wait_system("cf1", 3) == "starting"
