"""The benchmarks are not run in CI (they need the Apptainer test host and minutes), but
they must keep importing and parsing their arguments."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("module", ["benchmarks.fast_cli", "benchmarks.bridge_hook",
                                    "benchmarks.serving"])
def test_benchmark_has_help(module: str) -> None:
    result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                            text=True, cwd=ROOT, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


def test_driver_and_profiler_import_with_the_standard_library_only() -> None:
    """Both run inside the test host's venv; the driver must not need cf-launch itself."""
    code = ("import sys; sys.path.insert(0, 'benchmarks'); import fast_cli_driver, profile_cli;"
            " assert 'coldfront_launch' not in sys.modules")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
