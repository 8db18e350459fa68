"""`cf-launch plugin new` (coldfront_launch.plugins.scaffold) and `doctor --hook`. The generated
plugin is installed and tested in a fresh venv by tests/unit/test_docs.py (the tutorial)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from coldfront_launch import Problem, hookimpl, plugins
from coldfront_launch.cli import cli
from coldfront_launch.plugins import SPEC_NAMES
from tests.clirunner import split_runner

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return split_runner().invoke(cli, list(args))


@pytest.mark.parametrize("name", ["", "Dns", "9dns", "-dns", "dns-", "a--b", "a_-b", "dns.x",
                                  "dns/x", "dn s", "x" * 41, "core", "bridge", "override",
                                  "déns"])
def test_invalid_names_are_refused(name: str, tmp_path: Path) -> None:
    result = invoke("plugin", "new", "--dir", str(tmp_path / "out"), "--", name)
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 2 and result.stderr.startswith("cf-launch: error: NAME:")
    assert not (tmp_path / "out").exists()


def test_used_folder_needs_force(tmp_path: Path) -> None:
    target = tmp_path / "p"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    refused = invoke("plugin", "new", "dns", "--dir", str(target))
    assert refused.exit_code == 2 and "exists and is not empty" in refused.stderr
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]
    forced = invoke("plugin", "new", "dns", "--dir", str(target), "--force")
    assert forced.exit_code == 0, forced.output
    assert (target / "keep.txt").read_text() == "mine" and (target / "pyproject.toml").exists()
    (tmp_path / "file").write_text("")
    on_file = invoke("plugin", "new", "dns", "--dir", str(tmp_path / "file"), "--force")
    assert on_file.exit_code == 2 and "is not a folder" in on_file.stderr


def test_default_folder_and_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("plugin", "new", "site-dns")
    assert result.exit_code == 0, result.output
    root = tmp_path / "cf-launch-site-dns"
    assert result.stdout.split() == [str(root / p) for p in (
        "pyproject.toml", "README.md", "cf_launch_site_dns/__init__.py",
        "tests/test_cf_launch_site_dns.py")]
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["name"] == "cf-launch-site-dns"
    assert project["project"]["entry-points"]["coldfront_launch"] == {
        "site-dns": "cf_launch_site_dns"}
    assert project["tool"]["pytest"]["ini_options"]["addopts"] == "-p coldfront_launch.testing"
    module = (root / "cf_launch_site_dns" / "__init__.py").read_text()
    compile(module, "module", "exec")
    compile((root / "tests" / "test_cf_launch_site_dns.py").read_text(), "test", "exec")
    for hook in SPEC_NAMES:
        assert f"def {hook}(" in module, f"a stub for {hook}"
    assert 'NAME = "site-dns"' in module
    assert "cf-launch start --hook bridge --hook site-dns" in (root / "README.md").read_text()


def test_generated_module_loads_and_plans(tmp_path: Path, cf_launch,  # type: ignore[no-untyped-def]
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The generated module, imported from its folder, plans with the harness."""
    import importlib

    invoke("plugin", "new", "gen", "--dir", str(tmp_path / "gen"))
    monkeypatch.syspath_prepend(str(tmp_path / "gen"))
    module = importlib.import_module("cf_launch_gen")
    config = f'[hook.gen]\nfolder = "{tmp_path}/etc"\nrequires = ["no-such-tool-x"]\n'
    plan = cf_launch.plan(hooks=["gen"], config=config, plugins={"gen": module})
    assert [c.target for c in plan.changes if c.kind == "file"][-1] == f"{tmp_path}/etc/gen.conf"
    assert [(p.check, p.message) for p in plan.problems] == [
        ("gen", "no-such-tool-x is not installed")]


def test_doctor_checks_the_named_plugins(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    class Needy:
        @hookimpl
        def cf_launch_preflight(self, ctx):  # type: ignore[no-untyped-def]
            return [Problem("needy", "needs a thing", "get one")]

    monkeypatch.setenv("CF_LAUNCH_SYSTEM_CONFIG", str(tmp_path / "none"))
    monkeypatch.chdir(tmp_path)
    plugins.register(Needy(), "needy")
    base = ("--state-root", str(tmp_path / "s"), "doctor", "--json")

    def checks(*extra: str) -> dict[str, dict[str, object]]:
        result = invoke(*base, *extra)
        return {p["check"]: p for p in json.loads(result.stdout)["problems"]}

    assert "needy" not in checks(), "by default: the settings' hooks (bridge)"
    named = checks("--hook", "needy")
    assert named["needy"]["fatal"] is True and named["needy"]["hint"] == "get one"
    assert invoke(*base, "--hook", "needy").exit_code == 3
    unknown = checks("--hook", "nosuch")
    assert "unknown hook 'nosuch'" in str(unknown["config"]["message"])
