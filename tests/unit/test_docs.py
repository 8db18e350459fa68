"""Every hook is documented (one heading each) and exercised by the recording plugins."""

from __future__ import annotations

from pathlib import Path

import pytest

from coldfront_launch.plugins import SPEC_NAMES
from coldfront_launch.plugins import spec as hookspecs

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_hook_documented_and_tested(name: str) -> None:
    docs = (ROOT / "docs" / "hooks.md").read_text()
    assert f"\n## {name}\n" in docs, f"docs/hooks.md needs a '## {name}' section"
    section = docs.split(f"\n## {name}\n", 1)[1].split("\n## ", 1)[0]
    assert "```python" in section, f"{name} needs an example"
    assert getattr(hookspecs, name).__doc__, f"{name} needs a docstring"
    recorder = (ROOT / "tests" / "recorder_plugin.py").read_text()
    package_test = (ROOT / "tests" / "packaging" / "test_wheel.py").read_text()
    assert f"def {name}(" in recorder and f"def {name}(" in package_test


def test_builtin_hooks_documented() -> None:
    for hook in ("bridge", "override"):
        text = (ROOT / "docs" / f"{hook}.md").read_text()
        assert f"[hook.{hook}]" in text and "cf-launch start --hook " + hook in text


def test_hook_examples_are_self_contained() -> None:
    """Each example runs as copied: no undefined names (ruff's pyflakes rules)."""
    import re
    import subprocess
    import sys

    text = (ROOT / "docs" / "hooks.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= len(SPEC_NAMES)
    for block in blocks:
        result = subprocess.run([sys.executable, "-m", "ruff", "check", "--select", "F",
                                 "--stdin-filename", "example.py", "-"], input=block,
                                capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{result.stdout}\n--- example:\n{block}"


def test_documented_signatures_match_the_specs() -> None:
    """Each hook's documented signature names exactly the spec's arguments (datasette's
    test_docs does the same), and the sections follow the order the hooks run in."""
    import re

    from coldfront_launch import plugins

    docs = (ROOT / "docs" / "hooks.md").read_text()
    pm = plugins.load().pm
    for name in SPEC_NAMES:
        section = docs.split(f"\n## {name}\n", 1)[1].split("\n## ", 1)[0]
        match = re.search(rf"`{name}\((.*?)\)", section)
        assert match, f"{name}: no `{name}(...)` signature line"
        documented = tuple(arg.split(":")[0].strip() for arg in match.group(1).split(",")
                           if arg.strip())
        assert documented == tuple(getattr(pm.hook, name).spec.argnames), name
    headings = re.findall(r"^## (cf_launch_\w+)$", docs, re.M)
    assert headings == SPEC_NAMES, "docs/hooks.md follows the hookspecs' order"


# --- the docs/hooks.md example plugin, tested with coldfront_launch.testing ------------

def example_plugin_source() -> str:
    """The python examples of the hook sections of docs/hooks.md, as one module."""
    import re

    docs = (ROOT / "docs" / "hooks.md").read_text()
    blocks = []
    for name in SPEC_NAMES:
        section = docs.split(f"\n## {name}\n", 1)[1].split("\n## ", 1)[0]
        blocks += re.findall(r"```python\n(.*?)```", section, re.S)
    return "\n".join(blocks)


def load_example(folder: Path):  # type: ignore[no-untyped-def]
    import importlib.util

    path = folder / "cf_launch_dns_example.py"
    path.write_text(example_plugin_source())
    spec = importlib.util.spec_from_file_location("cf_launch_dns_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_plugin_plans(cf_launch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from coldfront_launch import ConfigError

    dns = load_example(tmp_path)
    config = f'[hook.dns]\nzone = "hpc.example."\nfolder = "{tmp_path}/etc/dns"\n'
    plan = cf_launch.plan(hooks=["dns"], config=config, plugins={"dns": dns})
    changes = {c.kind: c for c in plan.changes}
    assert changes["file"].target == f"{tmp_path}/etc/dns/zone.conf"
    assert "-d <instance-ip>/32 -p udp --dport 53" in changes["firewall"].describe()
    assert "--hostname" in plan.command
    assert "/dev/null:/etc/systemd/system/postfix.service:ro" in plan.binds
    for bad, setting in (('zone = "hpc"', "hook.dns.zone"), ('colour = "red"', "hook.dns.colour")):
        with pytest.raises(ConfigError, match=setting):
            cf_launch.plan(hooks=["dns"], config=f"[hook.dns]\n{bad}\n", plugins={"dns": dns})


DRIVER = '''
import importlib.util, json, subprocess, sys
from pathlib import Path
from coldfront_launch import hookimpl
from coldfront_launch.testing import Harness

folder = Path(sys.argv[1])
spec = importlib.util.spec_from_file_location("cf_launch_dns_example", sys.argv[2])
dns = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dns)

class Net:  # an address for the instance, as the bridge plugin's --net gives it
    @hookimpl
    def cf_launch_start_options(self, ctx):
        return ["--net"]

harness = Harness(folder / "harness")
seen = []
result = harness.start_stop(
    hooks=["dns", "net"], plugins={"dns": dns, "net": Net()},
    config=f'[hook.dns]\\nzone = "hpc.example."\\nfolder = "{folder}/etc/dns"\\n',
    during=lambda started: seen.append(subprocess.run(
        ["iptables-save", "-t", "filter"], capture_output=True, text=True).stdout))
after = subprocess.run(["iptables-save", "-t", "filter"], capture_output=True, text=True).stdout
print(json.dumps({"result": result.to_json(), "during": seen[0], "after": after}))
'''


def test_example_plugin_starts_and_stops_in_a_namespace(tmp_path: Path) -> None:
    """start_stop with the example, firewall included: in a network namespace of its own
    (`unshare --net`, gone with the process), never this machine's."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("iptables-save"):
        pytest.skip("needs root, unshare and iptables")
    load_example(tmp_path)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "nsupdate.log"
    (bindir / "nsupdate").write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    (bindir / "nsupdate").chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    run = subprocess.run(["unshare", "--net", sys.executable, "-c", DRIVER, str(tmp_path),
                          str(tmp_path / "cf_launch_dns_example.py")], capture_output=True,
                         text=True, env=env, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout)
    result = found["result"]
    kinds = [c["kind"] for c in result["journaled"]]
    assert {"file", "firewall", "instance"} <= set(kinds)
    assert sorted(kinds) == sorted(c["kind"] for c in result["undone"]) and result["left"] == []
    assert "-A CF-DNS-ALLOW -d 10.22.0.2/32 -p udp -m udp --dport 53 -j ACCEPT" in found["during"]
    assert "CF-DNS-ALLOW" not in found["after"]
    assert result["endpoint"][:2] == ["10.22.0.2", 8080]
    assert not (tmp_path / "etc" / "dns").exists()
    assert log.read_text().split() == ["-l", "/etc/cf-launch-dns/remove.txt"], "pre_stop ran"


def test_testing_docs_example_runs(tmp_path: Path) -> None:
    """The example of docs/testing.md passes as a test file."""
    import os
    import re
    import subprocess
    import sys

    text = (ROOT / "docs" / "testing.md").read_text()
    example = re.findall(r"```python\n(.*?)```", text.split("## Example", 1)[1], re.S)[0]
    (tmp_path / "test_example.py").write_text(example)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "-p", "coldfront_launch.testing", "test_example.py"], cwd=tmp_path,
                         capture_output=True, text=True, env=env, timeout=120, check=False)
    assert run.returncode == 0 and "2 passed" in run.stdout, run.stdout + run.stderr
