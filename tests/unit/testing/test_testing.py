"""coldfront_launch.testing, the plugin authors' kit, tested with itself: its fixtures, its
plan and start/stop helpers, and that loading it changes nothing for a pytest run that
does not ask for it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from coldfront_launch import Bind, Endpoint, PluginError, hookimpl
from coldfront_launch.linux.netfilter import Chain, Jump, Ruleset
from coldfront_launch.testing import FakeApptainer, Harness, IsolationRequired
from coldfront_launch.testing.harness import in_own_netns


class Files:
    """A plugin that writes a file, sets a sysctl, binds a file and names an endpoint."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.seen: list[str] = []

    @hookimpl
    def cf_launch_binds(self, ctx):  # type: ignore[no-untyped-def]
        return [Bind("/etc/files.conf", content="files=1\n", readonly=False)]

    @hookimpl
    def cf_launch_pre_start(self, ctx, host):  # type: ignore[no-untyped-def]
        host.write_file(self.folder / "sub" / "files.conf", "made\n")
        host.set_sysctl("net.ipv4.ip_forward", "1")

    @hookimpl
    def cf_launch_start_options(self, ctx):  # type: ignore[no-untyped-def]
        return ["--hostname", ctx.section("files").get("hostname", "files")]

    @hookimpl
    def cf_launch_readiness_endpoint(self, ctx, instance):  # type: ignore[no-untyped-def]
        return Endpoint("127.0.0.1", 8080)

    @hookimpl
    def cf_launch_pre_stop(self, ctx, instance):  # type: ignore[no-untyped-def]
        self.seen.append(f"pre_stop {instance.name if instance else None}")


class Walls:
    """A plugin that installs a firewall chain: only in a network namespace of its own."""

    @hookimpl
    def cf_launch_pre_start(self, ctx, host):  # type: ignore[no-untyped-def]
        host.apply_firewall("walls", Ruleset(
            chains=(Chain("filter", "CF-WALLS", ("-j RETURN",)),),
            jumps=(Jump("filter", "INPUT", "-j CF-WALLS"),)))


def test_context_and_settings_from_a_toml_snippet(cf_launch: Harness) -> None:
    ctx = cf_launch.context('name = "site"\n[hook.files]\nhostname = "x"\n',
                            hooks=["bridge"])
    assert ctx.settings.name == "site" and ctx.hooks == ("bridge",)
    assert ctx.section("files") == {"hostname": "x"} and ctx.section("absent") == {}
    assert ctx.state_dir == cf_launch.folder / "state" / "site"
    assert ctx.settings.image_path.exists() and not ctx.planning


def test_recording_host_changes_nothing(cf_launch_host, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "new" / "file.conf"
    cf_launch_host.write_file(target, "x\n")
    cf_launch_host.set_sysctl("net.ipv4.ip_forward", "1")
    assert [(c.kind, c.target) for c in cf_launch_host.changes] == [
        ("file", str(target)), ("sysctl", "net.ipv4.ip_forward")]
    assert not target.parent.exists()


def test_plan_is_data_and_runs_nothing(cf_launch: Harness, tmp_path: Path) -> None:
    plan = cf_launch.plan(hooks=["files"], config='[hook.files]\nhostname = "h1"\n',
                          plugins={"files": Files(tmp_path)})
    assert plan.command[:4] == ["apptainer", "--quiet", "instance", "start"]
    assert plan.command[plan.command.index("--hostname") + 1] == "h1"
    assert [c.kind for c in plan.changes if not _core(c)] == ["file", "file", "sysctl"]
    assert any(s.endswith(":/etc/files.conf") for s in plan.binds), "readonly=False: no :ro"
    assert plan.problems == [], "the core's own checks (root, Apptainer) are left out"
    plugin_json = [c for c in plan.to_json()["changes"] if not c["target"].endswith(
        ("cf-launch-hardening.conf", "account.env", "journald.conf.d/cf-launch.conf"))]
    assert plugin_json[1]["target"] == str(tmp_path / "sub" / "files.conf")
    assert cf_launch.apptainer.calls() == []
    assert not (cf_launch.folder / "state" / "coldfront").exists()
    assert not (tmp_path / "sub").exists()


def test_start_stop_journals_then_undoes_everything(cf_launch: Harness, tmp_path: Path) -> None:
    real = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    plugin = Files(tmp_path)
    during: list[str] = []

    def look(started) -> None:  # type: ignore[no-untyped-def]
        during.append((tmp_path / "sub" / "files.conf").read_text())
        during.append((cf_launch.sysctl_root / "net/ipv4/ip_forward").read_text().strip())
        during.append(started.instance.name)

    result = cf_launch.start_stop(hooks=["files"], plugins={"files": plugin}, during=look)
    assert during == ["made\n", "1", "coldfront"]
    kinds = [c.kind for c in result.journaled if not _core(c)]
    assert kinds[:3] == ["file", "file", "sysctl"] and kinds[-1] != "sysctl"
    assert [c.identity() for c in result.undone] == \
        [c.identity() for c in reversed(result.journaled)]
    assert result.left == []
    assert not (tmp_path / "sub").exists(), "the folder write_file created went too"
    assert (cf_launch.sysctl_root / "net/ipv4/ip_forward").read_text() == real
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == real
    assert result.command[2:4] == ["instance", "start"] and "--hostname" in result.command
    assert result.endpoint == Endpoint("127.0.0.1", 8080)
    assert plugin.seen == ["pre_stop coldfront"]
    assert ["instance", "stop"] in [c[2:4] for c in result.calls]
    assert json.loads(json.dumps(result.to_json()))["undone"]


def test_start_stop_undoes_when_a_hook_fails(cf_launch: Harness, tmp_path: Path) -> None:
    class Broken(Files):
        @hookimpl
        def cf_launch_post_start(self, ctx, host, instance):  # type: ignore[no-untyped-def]
            if not ctx.planning:  # start_stop plans first: the plan still passes
                raise RuntimeError("broken on purpose")

    with pytest.raises(PluginError, match="plugin broken failed in cf_launch_post_start"):
        cf_launch.start_stop(hooks=["broken"], plugins={"broken": Broken(tmp_path)})
    assert not (tmp_path / "sub").exists()
    assert ["instance", "stop"] in [c[2:4] for c in cf_launch.apptainer.calls()]


@pytest.mark.skipif(in_own_netns(), reason="already in a network namespace of its own")
def test_start_stop_refuses_the_machines_own_firewall(cf_launch: Harness) -> None:
    with pytest.raises(IsolationRequired, match="network namespace"):
        cf_launch.start_stop(hooks=["walls"], plugins={"walls": Walls()})
    assert cf_launch.apptainer.calls() == []
    assert not (cf_launch.folder / "state" / "coldfront").exists(), "refused before any change"
    plan = cf_launch.plan(hooks=["walls"])
    assert "firewall" in [c.kind for c in plan.changes], "plan() tests such plugins anywhere"


def test_registered_plugins_are_removed_on_close(tmp_path: Path) -> None:
    from coldfront_launch import plugins

    harness = Harness(tmp_path)
    harness.register("files", Files(tmp_path))
    assert "files" in plugins.available()
    harness.close()
    assert "files" not in plugins.available()


def test_fake_apptainer_fixture_is_first_on_path(cf_launch_apptainer: FakeApptainer,
                                                 tmp_path: Path) -> None:
    def run(*args: str) -> str:
        return subprocess.run(list(args), capture_output=True, text=True, check=True).stdout

    run("apptainer", "instance", "start", "--net", "img.sif", "one")
    listed = json.loads(run("singularity", "instance", "list", "--json"))["instances"]
    assert [(i["instance"], i["ip"]) for i in listed] == [("one", "10.22.0.2")]
    assert [c[:3] for c in cf_launch_apptainer.calls()] == [
        ["apptainer", "instance", "start"], ["singularity", "instance", "list"]]


# --- opt-in: what loading the plugin costs a pytest run that does not use it -----------

PROBE = '''
import sys

def test_probe(request):
    pm = request.config.pluginmanager
    heavy = [m for m in ("coldfront_launch.testing.harness", "coldfront_launch.lifecycle.launcher",
                         "coldfront_launch.plugins", "pyroute2", "spython", "jinja2", "click")
             if m in sys.modules]
    assert heavy == [], heavy
    assert not [f for f in request.fixturenames if f.startswith("cf_launch")]
    print("LOADED" if pm.get_plugin("coldfront_launch.testing") else "NOT LOADED")
'''

USES = '''
def test_uses(cf_launch):
    assert cf_launch.plan(hooks=["bridge"]).command[0] == "apptainer"
'''


def _pytest(folder: Path, *args: str, autoload: bool = True
            ) -> subprocess.CompletedProcess[str]:
    import os
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    if not autoload:
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                           *args], cwd=folder, capture_output=True, text=True, env=env,
                          timeout=120, check=False)


def test_loaded_by_entry_point_but_inert(tmp_path: Path) -> None:
    (tmp_path / "test_probe.py").write_text(textwrap.dedent(PROBE))
    plain = _pytest(tmp_path, "test_probe.py")
    assert plain.returncode == 0 and "LOADED" in plain.stdout, plain.stdout + plain.stderr
    both = _pytest(tmp_path, "-p", "coldfront_launch.testing", "test_probe.py")
    assert both.returncode == 0, "the entry point and -p do not register it twice\n" + \
        both.stdout + both.stderr
    off = _pytest(tmp_path, "test_probe.py", autoload=False)
    assert off.returncode == 0 and "NOT LOADED" in off.stdout, off.stdout + off.stderr


def test_opt_in_without_autoload(tmp_path: Path) -> None:
    (tmp_path / "test_uses.py").write_text(USES)
    missing = _pytest(tmp_path, "test_uses.py", autoload=False)
    assert missing.returncode == 1 and "fixture 'cf_launch' not found" in missing.stdout
    by_flag = _pytest(tmp_path, "-p", "coldfront_launch.testing", "test_uses.py",
                      autoload=False)
    assert by_flag.returncode == 0, by_flag.stdout + by_flag.stderr
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["coldfront_launch.testing"]\n')
    by_line = _pytest(tmp_path, "test_uses.py", autoload=False)
    assert by_line.returncode == 0, by_line.stdout + by_line.stderr
    with_autoload = _pytest(tmp_path, "test_uses.py")
    assert with_autoload.returncode == 0, with_autoload.stdout + with_autoload.stderr


def test_assertion_rewriting_changes_nothing() -> None:
    """pytest rewrites the asserts of every package that declares a pytest11 entry point,
    so cf-launch's own code (the kit aside) holds no assert statement to rewrite."""
    import ast

    root = Path(__file__).resolve().parents[3]
    found = []
    for path in [*(root / "coldfront_launch").rglob("*.py"), *(root / "hooks").rglob("*.py")]:
        if "testing" in path.relative_to(root).parts:
            continue
        tree = ast.parse(path.read_text())
        found += [f"{path.name}:{n.lineno}" for n in ast.walk(tree) if isinstance(n, ast.Assert)]
    assert found == []


def _core(change) -> bool:  # type: ignore[no-untyped-def]
    """The core's own bind files (the hardening and journald drop-ins), in every plan and
    start."""
    from coldfront_launch.coldfront import appdata, hardening

    return change.target.endswith((hardening.CAPS_DROPIN, hardening.ACCOUNT_FILE,
                                   appdata.JOURNALD_DROPIN))
