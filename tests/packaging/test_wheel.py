"""The wheel, installed into a fresh venv with a throwaway third-party plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from coldfront_launch.testing.sif import write_minimal_sif

ROOT = Path(__file__).resolve().parents[2]

PLUGIN = '''
import json, os
from coldfront_launch import hookimpl
from coldfront_launch.types import Endpoint

def _note(name):
    with open(os.environ["HELLO_LOG"], "a") as fh:
        fh.write(name + "\\n")

@hookimpl
def cf_launch_validate(ctx): _note("validate")
@hookimpl
def cf_launch_preflight(ctx):
    _note("preflight"); return []
@hookimpl
def cf_launch_start_options(ctx):
    _note("start_options"); return ["--hostname", "hello"]
@hookimpl
def cf_launch_binds(ctx):
    _note("binds"); return []
@hookimpl
def cf_launch_pre_start(ctx, host): _note("pre_start")
@hookimpl
def cf_launch_check_instance(ctx, instance):
    _note("check_instance"); return []
@hookimpl
def cf_launch_post_start(ctx, host, instance): _note("post_start")
@hookimpl
def cf_launch_readiness_endpoint(ctx, instance):
    _note("readiness_endpoint")
    host, port = json.loads(os.environ["HELLO_ENDPOINT"])
    return Endpoint(host, port)
@hookimpl
def cf_launch_pre_stop(ctx, instance): _note("pre_stop")
@hookimpl
def cf_launch_post_stop(ctx): _note("post_stop")
'''


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    """A fresh venv holding the built wheel and the third-party plugin distribution."""
    work = tmp_path_factory.mktemp("pkg")
    plugin = work / "cf-launch-hello"
    (plugin / "cf_launch_hello").mkdir(parents=True)
    (plugin / "cf_launch_hello" / "__init__.py").write_text(PLUGIN)
    (plugin / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "cf-launch-hello"
        version = "1.0"
        [project.entry-points.coldfront_launch]
        hello = "cf_launch_hello"
        [tool.setuptools]
        packages = ["cf_launch_hello"]
    """))
    env = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    subprocess.run([str(env / "bin" / "pip"), "install", "-q", str(wheel), str(plugin)],
                   check=True, capture_output=True)
    return env


def cli(venv: Path, args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "CF_LAUNCH_SYSTEM_CONFIG": str(cwd / "none"), **env}
    environ.pop("PYTHONPATH", None)
    return subprocess.run([str(venv / "bin" / "cf-launch"), *args], capture_output=True,
                          text=True, cwd=cwd, env=environ, timeout=120)


def test_wheel_runs_hooks_and_plan(venv: Path, tmp_path: Path) -> None:
    hooks = cli(venv, ["hooks", "--json"], tmp_path)
    assert hooks.returncode == 0, hooks.stderr
    names = {p["name"]: p for p in json.loads(hooks.stdout)["plugins"]}
    assert set(names) == {"bridge", "override", "hello"}
    assert names["hello"]["hooks"][0] == "cf_launch_validate"

    config = tmp_path / "c.toml"
    config.write_text('[hook.override]\nnetns_path = "/proc/self/ns/net"\nports = [65003]\n')
    plan = cli(venv, ["--config", str(config), "--state-root", str(tmp_path / "s"), "plan",
                      "--hook", "override", "--json"], tmp_path)
    fatal = {p["check"] for p in json.loads(plan.stdout)["problems"] if p["fatal"]}
    assert fatal <= {"apptainer", "image"} and plan.returncode == (3 if fatal else 0)
    contents = [c.get("content", "") for c in json.loads(plan.stdout)["changes"]]
    assert any("NetworkManager" in c or "unmanaged-devices" in c for c in contents), \
        "override data files are read from the installed wheel"


def test_env_switches(venv: Path, tmp_path: Path) -> None:
    only = cli(venv, ["hooks", "--json"], tmp_path, CF_LAUNCH_LOAD_PLUGINS="hello")
    assert [p["name"] for p in json.loads(only.stdout)["plugins"]] == ["hello"]
    without = cli(venv, ["hooks", "--json"], tmp_path, CF_LAUNCH_DISABLE_PLUGINS="hello,bridge")
    assert [p["name"] for p in json.loads(without.stdout)["plugins"]] == ["override"]


def test_third_party_hooks_called_in_order_by_start(venv: Path, tmp_path: Path,
                                                    fake_apptainer: Path,
                                                    http_server) -> None:
    log = tmp_path / "hello.log"
    image = write_minimal_sif(tmp_path / "c.sif")
    env = {"HELLO_LOG": str(log), "HELLO_ENDPOINT": json.dumps(list(http_server))}
    base = ["--state-root", str(tmp_path / "s")]
    started = cli(venv, [*base, "start", "--hook", "hello", "--image", str(image), "--json"],
                  tmp_path, **env)
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["ready"] is True
    stopped = cli(venv, [*base, "stop"], tmp_path, **env)
    assert stopped.returncode == 0, stopped.stderr
    assert log.read_text().split() == [
        "validate", "preflight", "binds", "pre_start", "start_options", "post_start",
        "readiness_endpoint", "pre_stop", "post_stop"]


BROKEN = {
    "raiser": "raise RuntimeError('boom at import')\n",
    "quitter": "import sys\nsys.exit(3)\n",
    "badsig": "from coldfront_launch import hookimpl\n\n@hookimpl\n"
              "def cf_launch_validate(ctx, nonsense):\n    pass\n",
    "typo": "from coldfront_launch import hookimpl\n\n@hookimpl\n"
            "def cf_launch_prestart(ctx, host):\n    pass\n",
    "crashy": "from coldfront_launch import hookimpl\n\n@hookimpl\n"
              "def cf_launch_validate(ctx):\n    return ctx.section('crashy')['missing']\n",
}


@pytest.fixture(scope="module")
def broken(venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Broken third-party plugins, installed into a folder put on PYTHONPATH."""
    work = tmp_path_factory.mktemp("broken")
    src = work / "src"
    (src / "cf_launch_broken").mkdir(parents=True)
    (src / "cf_launch_broken" / "__init__.py").write_text("")
    for name, code in BROKEN.items():
        (src / "cf_launch_broken" / f"{name}.py").write_text(code)
    points = "\n".join(f'{n} = "cf_launch_broken.{n}"' for n in BROKEN)
    (src / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "cf-launch-broken"\nversion = "1.0"\n'
        f'[project.entry-points.coldfront_launch]\n{points}\n'
        '[tool.setuptools]\npackages = ["cf_launch_broken"]\n')
    target = work / "site"
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", "--target",
                    str(target), str(src)], check=True, capture_output=True)
    return target


def broken_cli(venv: Path, site: Path, args: list[str], cwd: Path
               ) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "CF_LAUNCH_SYSTEM_CONFIG": str(cwd / "none"),
               "PYTHONPATH": str(site)}
    return subprocess.run([str(venv / "bin" / "cf-launch"), *args], capture_output=True,
                          text=True, cwd=cwd, env=environ, timeout=120)


def test_broken_plugins_are_reported_and_contained(venv: Path, broken: Path, tmp_path: Path,
                                                   fake_apptainer: Path) -> None:
    hooks = broken_cli(venv, broken, ["hooks", "--json"], tmp_path)
    assert hooks.returncode == 0, hooks.stderr
    data = json.loads(hooks.stdout)
    failed = {f["name"]: f["error"] for f in data["failed"]}
    assert set(failed) == {"raiser", "quitter", "badsig", "typo"}
    assert "boom at import" in failed["raiser"] and "SystemExit" in failed["quitter"]
    assert "nonsense" in failed["badsig"] and "cf_launch_prestart" in failed["typo"]
    assert {"bridge", "override", "crashy"} <= {p["name"] for p in data["plugins"]}

    doctor = broken_cli(venv, broken, ["--state-root", str(tmp_path / "s"), "doctor",
                                       "--json"], tmp_path)
    problems = {p["check"]: p for p in json.loads(doctor.stdout)["problems"]}
    assert {"plugin raiser", "plugin quitter", "plugin badsig", "plugin typo"} <= set(problems)
    assert not problems["plugin typo"]["fatal"], "not active, so only a warning"

    config = tmp_path / "c.toml"
    config.write_text('[hook.override]\nnetns_path = "/proc/self/ns/net"\nports = [65004]\n')
    plan = broken_cli(venv, broken, ["--config", str(config), "--state-root",
                                     str(tmp_path / "s"), "plan", "--hook", "override",
                                     "--json"], tmp_path)
    assert plan.returncode in (0, 3), plan.stderr
    assert json.loads(plan.stdout)["changes"], "the built-in still plans"

    active = broken_cli(venv, broken, ["--state-root", str(tmp_path / "s"), "plan", "--hook",
                                       "typo"], tmp_path)
    assert active.returncode == 2 and "typo" in active.stderr
    assert "Traceback" not in active.stderr

    image = write_minimal_sif(tmp_path / "c.sif")
    safe = tmp_path / "safe.toml"  # no firewall change: this test runs in the machine's namespace
    safe.write_text('[hook.override]\nnetns_path = "/proc/self/ns/net"\nports = [65005]\n'
                    'allow_metadata = true\n')
    base = ["--config", str(safe), "--state-root", str(tmp_path / "s2")]
    started = broken_cli(venv, broken, [*base, "start", "--hook", "override", "--image",
                                        str(image), "--no-wait"], tmp_path)
    assert started.returncode == 0, started.stderr
    assert broken_cli(venv, broken, [*base, "stop"], tmp_path).returncode == 0

    crash = broken_cli(venv, broken, ["--state-root", str(tmp_path / "s"), "plan", "--hook",
                                      "override", "--hook", "crashy"], tmp_path)
    assert crash.returncode == 2, crash.stderr
    assert "plugin crashy failed in cf_launch_validate: KeyError" in crash.stderr
    assert "Traceback" not in crash.stderr and "internal error" not in crash.stderr


def test_wheel_carries_the_mit_license(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = next(n.rsplit("/", 1)[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(f"{info}/METADATA").decode())
        shipped = archive.read(f"{info}/licenses/LICENSE").decode()
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert shipped == (ROOT / "LICENSE").read_text()
    assert shipped.startswith("MIT License")
    assert "Copyright (c) 2026 The coldfront-launch authors" in shipped
