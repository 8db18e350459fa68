"""One click test runner for every CLI test: stdout and stderr apart."""

from __future__ import annotations

from click.testing import CliRunner


def split_runner() -> CliRunner:
    """stderr apart from stdout (click 8.1, on Python 3.9, mixes them unless told)."""
    try:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:  # click 8.2+: always apart
        return CliRunner()
