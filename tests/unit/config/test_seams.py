"""Test seams work only where the test suite marked the process (config/seams.py)."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from coldfront_launch.config import seams
from coldfront_launch.linux import netinfo

ROOT = Path(__file__).resolve().parents[3]
REAL_BOOT = Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def test_a_seam_works_in_the_test_suite_and_nowhere_else(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    boot = tmp_path / "boot_id"
    boot.write_text("simulated-boot\n")
    monkeypatch.setenv("CF_LAUNCH_BOOT_ID_FILE", str(boot))
    assert netinfo.boot_id() == "simulated-boot"
    monkeypatch.delattr(sys, seams.MARK)
    assert netinfo.boot_id() == REAL_BOOT, "an admin's stray variable is ignored"
    assert netinfo.boot_time() != boot.stat().st_mtime


def test_an_interpreter_without_the_mark_ignores_every_seam(tmp_path: Path) -> None:
    """As in a production venv: no .pth file run (``-S``; the packages' folder is put on
    the path by hand, which runs none of its .pth files)."""
    (tmp_path / "boot_id").write_text("simulated-boot\n")
    (tmp_path / "firewalld.conf").write_text("FirewallBackend=iptables\n")
    code = ("import sys; sys.path[:0] = sys.argv[1:3]\n"
            "from coldfront_launch.linux import firewalld, netinfo\n"
            "from coldfront_launch.config import settings\n"
            "print(netinfo.boot_id()); print(firewalld.conf_path())\n"
            "print(settings.config_files(None))")
    env = {"CF_LAUNCH_BOOT_ID_FILE": str(tmp_path / "boot_id"),
           "CF_LAUNCH_FIREWALLD_CONF": str(tmp_path / "firewalld.conf"),
           "CF_LAUNCH_SYSTEM_CONFIG": str(tmp_path / "firewalld.conf"), "PATH": "/usr/bin:/bin"}
    packages = sysconfig.get_paths()["purelib"]
    out = subprocess.run([sys.executable, "-S", "-c", code, str(ROOT), packages], env=env,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == REAL_BOOT
    assert out[1] == "/etc/firewalld/firewalld.conf"
    assert str(tmp_path) not in out[2]
