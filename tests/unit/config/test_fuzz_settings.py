"""Property-based: random settings files never make ``plan`` or ``start`` exit 70 or print
a traceback (hypothesis, in tests/fuzz_settings.py). It runs in a sandbox network namespace
with a temporary state root: a random setting must never reach this machine's own sysctls,
rules or files."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from coldfront_launch.testing import FakeApptainer
from tests.unit.cli.test_bad_inputs import Namespace, pytestmark  # noqa: F401 - root only

EXAMPLES = int(os.environ.get("CF_FUZZ_EXAMPLES", "150"))


def test_random_settings_never_crash(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    # The kit's launchers run the fake with this Python; a symlink to FAKES/apptainer runs
    # `/usr/bin/env python3`, which can be a slow shim (pyenv: ~0.1 s on every call).
    FakeApptainer.create(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}",
           "CF_LAUNCH_SYSTEM_CONFIG": str(tmp_path / "none"),
           "FAKE_APPTAINER_STATE": str(tmp_path / "instances.json"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    ns = Namespace()
    try:
        before = ns.snapshot()
        result = ns.run([sys.executable, "-m", "tests.fuzz_settings", str(work),
                         str(EXAMPLES)], env=env, cwd=work, timeout_override=900)
        after = ns.snapshot()
    finally:
        ns.close()
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    seen = json.loads(result.stdout.split("exit codes seen:", 1)[1])
    print(f"{EXAMPLES} settings files, plan and start: exit codes {seen}")
    assert int(seen.get("0", 0)) >= (5 if EXAMPLES >= 150 else 1), \
        "valid files reach deep code (start succeeds)"
    assert set(seen) <= {"0", "2", "3", "6"}, seen
    assert after == before, "every start was undone: the namespace is as it was"
