"""The tutorial (docs/tutorial.md) run block by block in a fresh venv holding only the
built wheel, and the plugin made before the layout change installed there: packaging
tests, run by the full test command (not the unit tier of `tests/run.sh --quick`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


# --- docs/tutorial.md, run block by block in a fresh venv ------------------------------

TUTORIAL_EXPECT = {
    "cf-launch hooks": ["hello (cf_launch_hello)", "    cf_launch_pre_start"],
    "doctor --hook hello": ["✗ hello: no-such-tool is not installed", "doctor exited with 3"],
    "plan --hook hello": ["hello.conf"],
}


@pytest.fixture(scope="module")
def author_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding only the cf-launch wheel, as a plugin author has it."""

    env = tmp_path_factory.mktemp("author") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    # pip >= 21.3 installs a pyproject-only project in editable mode (Debian 11's is older)
    pip_version = subprocess.run([str(env / "bin" / "python"), "-c",
                                  "import pip; print(pip.__version__)"], check=True,
                                 capture_output=True, text=True).stdout.split(".")
    if tuple(int(p) for p in pip_version[:2]) < (21, 3):
        subprocess.run([str(env / "bin" / "pip"), "install", "-q", "--upgrade", "pip"],
                       check=True, capture_output=True)
    subprocess.run([str(env / "bin" / "pip"), "install", "-q", str(wheel)], check=True,
                   capture_output=True)
    return env


def _author_env(author_venv: Path, tmp_path: Path) -> dict[str, str]:
    """The environment of a plugin author's shell: the author venv first on PATH, none of
    this test run's Python or pytest variables, no system settings file."""

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "VIRTUAL_ENV", "PYTHON"))}
    env.update(PATH=f"{author_venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
               CF_LAUNCH_SYSTEM_CONFIG=str(tmp_path / "none"))
    return env


def test_tutorial_runs(author_venv: Path, tmp_path: Path) -> None:
    """Every block of docs/tutorial.md: `sh` runs, `# append to:` python is appended."""
    import subprocess

    text = (ROOT / "docs" / "tutorial.md").read_text()
    env = _author_env(author_venv, tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    seen = set()
    for lang, body in re.findall(r"```(\w+)\n(.*?)```", text, re.S):
        if lang == "python":
            first, _, code = body.partition("\n")
            assert first.startswith("# append to: "), f"a python block must say where:\n{body}"
            with open(work / first.removeprefix("# append to: "), "a") as fh:
                fh.write(code)
            continue
        if lang != "sh":
            assert lang == "console", f"unknown block language {lang!r}"
            continue
        run = subprocess.run(["bash", "-e", "-c", body], cwd=work, env=env,
                             capture_output=True, text=True, timeout=300, check=False)
        assert run.returncode == 0, f"{body}\n---\n{run.stdout}\n{run.stderr}"
        if "python -m pytest" in body:
            assert " passed" in run.stdout and "failed" not in run.stdout, run.stdout
        for command, expected in TUTORIAL_EXPECT.items():
            if command in body:
                seen.add(command)
                for line in expected:
                    assert line in run.stdout, f"{body}\n---\n{run.stdout}\n{run.stderr}"
    assert seen == set(TUTORIAL_EXPECT)


def test_plugin_made_before_the_layout_change_still_works(author_venv: Path,
                                                         tmp_path: Path) -> None:
    """tests/data/plugin-made-before-layout was written by `cf-launch plugin new site-audit`
    at f60e0c3, before the modules moved into subpackages (issue 24). Installed as a plugin
    author installs it, it passes its own tests against today's cf-launch, and the import
    the 0.1 docs gave for rulesets (coldfront_launch.linux.netfilter) still resolves."""
    import shutil

    plugin = tmp_path / "site-audit"
    shutil.copytree(ROOT / "tests" / "data" / "plugin-made-before-layout", plugin)
    env = _author_env(author_venv, tmp_path)
    install = subprocess.run([str(author_venv / "bin" / "pip"), "install", "-q", f"{plugin}[test]"],
                             env=env, capture_output=True, text=True, check=False)
    assert install.returncode == 0, install.stdout + install.stderr
    run = subprocess.run([str(author_venv / "bin" / "python"), "-m", "pytest", "-q", "-p",
                          "no:cacheprovider"], cwd=plugin, env=env, capture_output=True,
                         text=True, timeout=300, check=False)
    assert run.returncode == 0 and "4 passed" in run.stdout, run.stdout + run.stderr
    hooks = subprocess.run(["cf-launch", "hooks"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, check=False)
    assert "site-audit (cf_launch_site_audit)" in hooks.stdout, hooks.stdout + hooks.stderr
    old_import = subprocess.run(
        [str(author_venv / "bin" / "python"), "-c",
         "from coldfront_launch.firewall import Chain, Jump, Ruleset; print(Ruleset.__name__)"],
        env=env, capture_output=True, text=True, check=False)
    assert old_import.stdout == "Ruleset\n", old_import.stderr
