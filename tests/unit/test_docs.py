"""Every hook is documented (one heading each) and exercised by the recording plugins."""

from __future__ import annotations

from pathlib import Path

import pytest

from coldfront_launch import hookspecs
from coldfront_launch.plugins import SPEC_NAMES

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_hook_documented_and_tested(name: str) -> None:
    docs = (ROOT / "docs" / "hooks.md").read_text()
    assert f"\n## {name}\n" in docs, f"docs/hooks.md needs a '## {name}' section"
    section = docs.split(f"\n## {name}\n", 1)[1].split("\n## ", 1)[0]
    assert "```python" in section, f"{name} needs an example"
    assert getattr(hookspecs, name).__doc__, f"{name} needs a docstring"
    recorder = (ROOT / "tests" / "recorder_plugin.py").read_text()
    package_test = (ROOT / "tests" / "unit" / "test_package.py").read_text()
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
