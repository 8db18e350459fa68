"""Tests of the `site-audit` plugin with cf-launch's test helpers (coldfront_launch.testing).

`cf_launch` is a harness in the test's own folder: a private state root and /proc/sys, a
fake `apptainer` on PATH. plan() changes nothing; start_stop() runs the real start and
stop and reports what was journaled and undone.
"""

from __future__ import annotations

import pytest

from coldfront_launch import ConfigError

NAME = "site-audit"


def config(tmp_path, **extra):
    """A [hook.site-audit] table that writes under tmp_path, not /etc."""
    lines = [f"[hook.{NAME}]", f'folder = "{tmp_path / "etc"}"']
    lines += [f"{key} = {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


def test_plan_lists_the_file_and_the_bind(cf_launch, tmp_path):
    plan = cf_launch.plan(hooks=[NAME], config=config(tmp_path))
    assert str(tmp_path / "etc" / f"{NAME}.conf") in [c.target for c in plan.changes]
    assert any(spec.endswith(f":/etc/cf-launch-{NAME}.conf:ro") for spec in plan.binds)
    assert plan.problems == []


def test_start_writes_the_file_and_stop_removes_it(cf_launch, tmp_path):
    conf = tmp_path / "etc" / f"{NAME}.conf"
    seen = []
    result = cf_launch.start_stop(hooks=[NAME], config=config(tmp_path),
                                  during=lambda started: seen.append(conf.read_text()))
    assert seen == ["instance = coldfront\n"]
    assert not conf.exists() and not conf.parent.exists()
    assert str(conf) in [c.target for c in result.undone]
    assert result.left == []


def test_unknown_setting_is_refused(cf_launch, tmp_path):
    with pytest.raises(ConfigError, match=f"hook.{NAME}.colour"):
        cf_launch.plan(hooks=[NAME], config=config(tmp_path, colour='"red"'))


def test_missing_program_is_a_fatal_problem(cf_launch, tmp_path):
    plan = cf_launch.plan(hooks=[NAME], config=config(tmp_path, requires='["no-such-tool"]'))
    assert [(p.check, p.fatal) for p in plan.problems] == [(NAME, True)]
