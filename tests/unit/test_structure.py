"""The structure holds: exit codes documented, light imports, built-ins found from a plain
source checkout."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from coldfront_launch.exitcodes import ExitCode

ROOT = Path(__file__).resolve().parents[2]


def test_readme_exit_codes_equal_the_enum() -> None:
    text = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| (\d+) \| ([A-Z_]+) \| (.+) \|$", text, re.M)
    assert {(int(code), name) for code, name, _ in rows} == \
        {(member.value, member.name) for member in ExitCode}


def test_cli_uses_the_enum_not_literals() -> None:
    package = ROOT / "coldfront_launch"
    for module in [*sorted((package / "cli").glob("*.py")), package / "errors.py"]:
        text = module.read_text()
        assert not re.search(r"(sys\.exit|exit_code\s*=)\s*\(?\d", text), module


def _run(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=cwd, env={"PATH": "/usr/bin:/bin", **env}, timeout=60,
                          check=False)


def test_import_is_light(tmp_path: Path) -> None:
    heavy = ("pyroute2", "jinja2", "pluggy", "spython", "click")
    code = ("import sys, json, coldfront_launch\n"
            f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))")
    result = _run(code, tmp_path, PYTHONPATH=str(ROOT))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_source_checkout_finds_the_builtin_plugins(tmp_path: Path) -> None:
    """No install: the package on PYTHONPATH alone has bridge, override and their data."""
    src = tmp_path / "checkout"
    for folder in ("coldfront_launch", "hooks", "definitions", "overrides"):
        shutil.copytree(ROOT / folder, src / folder, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import json\n"
            "from coldfront_launch import plugins, resources\n"
            "import coldfront_launch.hooks.bridge as b\n"
            "print(json.dumps({'available': plugins.available(), 'failed': "
            "plugins.load().failed, 'bridge': b.__file__, 'data': "
            "resources.read('coldfront_launch.overrides', 'udev/80-net-setup-link.rules')}))")
    site = [p for p in sys.path if p.endswith("site-packages")]
    result = _run(code, tmp_path, PYTHONPATH=":".join([str(src), *site]))
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["available"] == ["bridge", "override"] and found["failed"] == {}
    assert found["bridge"].startswith(str(src)), "imported from the checkout"
    assert found["data"]
