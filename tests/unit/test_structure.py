"""The structure holds: exit codes documented, light imports, built-ins found from a plain
source checkout, and the layout of issue 24 (at most eight top modules, one layers
contract of at most ten layers, every subpackage in docs/architecture.md, no function over
80 lines, the hooks doc on the public face)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from coldfront_launch.exitcodes import ExitCode

ROOT = Path(__file__).resolve().parents[2]


def test_cli_docs_exit_codes_equal_the_enum() -> None:
    text = (ROOT / "docs" / "cli.md").read_text()
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


# --- the layout (docs/architecture.md, issue 24) ----------------------------------------

PACKAGE = ROOT / "coldfront_launch"
SUBPACKAGES = ("state", "config", "linux", "apptainer", "changes", "coldfront", "plugins",
               "lifecycle", "operations", "service", "cli", "testing")


def _pyproject() -> dict:  # type: ignore[type-arg]
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_at_most_eight_modules_at_the_top() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 8, top


def test_every_subpackage_is_a_package_and_in_the_architecture_doc() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text()
    found = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py")
                   if not p.parent.is_symlink())
    assert sorted(SUBPACKAGES) == found
    for name in (*SUBPACKAGES, "hooks"):
        assert f"**{name}/**" in doc, f"docs/architecture.md needs a line on {name}/"


def test_one_layers_contract_of_at_most_ten_layers_counting_type_checking_imports() -> None:
    linter = _pyproject()["tool"]["importlinter"]
    assert linter["exclude_type_checking_imports"] is False
    layered = [c for c in linter["contracts"] if c["type"] == "layers"]
    assert len(layered) == 1 and len(layered[0]["layers"]) <= 10
    named = {part.strip().removeprefix("coldfront_launch.")
             for layer in layered[0]["layers"] for part in layer.split("|")}
    assert set(SUBPACKAGES) | {"hooks"} <= named
    forbidden = {c["name"] for c in linter["contracts"] if c["type"] == "forbidden"}
    assert len(forbidden) >= 2


def test_no_function_longer_than_eighty_lines() -> None:
    import ast

    long = []
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "hooks").rglob("*.py")]:
        if "hooks" in path.relative_to(ROOT).parts[1:2]:
            continue  # the symlink: hooks/ is read once, from the top
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if lines > 80:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} {lines}")
    assert not long, long


def test_hooks_doc_names_only_the_public_face() -> None:
    """Plugin authors are pointed at `coldfront_launch` (its EXPORTS), the test kit, the
    plugin manager's register() and the built-in plugins' module paths; nothing else."""
    import coldfront_launch

    text = (ROOT / "docs" / "hooks.md").read_text()
    allowed = {"coldfront_launch.testing", "coldfront_launch.plugins.register",
               "coldfront_launch.hooks.bridge", "coldfront_launch.hooks.override",
               *(f"coldfront_launch.{name}" for name in coldfront_launch.EXPORTS)}
    used = set(re.findall(r"coldfront_launch(?:\.\w+)+", text))
    assert used <= allowed, used - allowed
    imports = re.findall(r"^from (coldfront_launch[\w.]*) import", text, re.M)
    assert set(imports) <= {"coldfront_launch", "coldfront_launch.testing"}, imports


def test_the_firewall_module_of_the_01_docs_still_exports_the_rulesets() -> None:
    import coldfront_launch
    from coldfront_launch import firewall

    assert (firewall.Chain, firewall.Jump, firewall.Ruleset) == (
        coldfront_launch.Chain, coldfront_launch.Jump, coldfront_launch.Ruleset)
