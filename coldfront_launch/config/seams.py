"""Test seams: environment variables that point cf-launch at stand-ins for files of the
machine (the boot id, DMI, firewalld's configuration, the system settings file).

They work only in a Python process the test suite marked (``sys._cf_launch_test_seams``:
set by ``tests/conftest.py``, and by a ``.pth`` file in the venvs the tests make). Anywhere
else they are ignored, so a stray variable in an admin's environment can never make
``stop`` believe the machine rebooted and leave its rules behind."""

from __future__ import annotations

import os
import sys
from pathlib import Path

MARK = "_cf_launch_test_seams"
#: The line of the ``.pth`` file that marks a test venv.
PTH_LINE = f"import sys; sys.{MARK} = True\n"


def seam(name: str) -> str:
    """The value of test seam ``name`` ("" outside the test suite, or when unset)."""
    if not getattr(sys, MARK, False):
        return ""
    return os.environ.get(name, "")


def mark_this_venv() -> Path:
    """Mark the venv of the running interpreter as a test venv (its ``.pth`` file);
    what ``tests/run.sh``, the Python 3.9 stage and the test host do to theirs."""
    import sysconfig
    path = Path(sysconfig.get_paths()["purelib"]) / "cf_launch_test_seams.pth"
    path.write_text(PTH_LINE)
    return path
