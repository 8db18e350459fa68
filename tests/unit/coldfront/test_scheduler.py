"""``[coldfront] scheduler`` (issue 29, item 3): false masks django-q2's cluster."""

from __future__ import annotations

import pytest

from coldfront_launch.errors import ConfigError
from coldfront_launch.lifecycle.launcher import Launcher
from tests.unit.lifecycle.test_launcher import recorder

__all__ = ["recorder"]  # the fixture, shared with test_launcher

MASK = "/dev/null:/etc/systemd/system/coldfront-qcluster.service"


def test_the_cluster_runs_by_default_and_is_masked_with_scheduler_false(
        make_settings, fake_apptainer, recorder) -> None:  # type: ignore[no-untyped-def]
    default = Launcher(make_settings(hooks=["recorder"])).plan()
    assert not any(MASK in word for word in default.command)
    masked = Launcher(make_settings(hooks=["recorder"], coldfront={"scheduler": False})).plan()
    assert any(word.startswith(MASK) for word in masked.command), masked.command


@pytest.mark.parametrize("value", ["no", 0, "false"])
def test_scheduler_takes_a_boolean(make_settings, value: object) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as err:
        make_settings(coldfront={"scheduler": value})
    assert err.value.setting == "coldfront.scheduler"
