"""Property-based: a damaged journal (torn, junk lines, changed bytes, missing files)
never makes ``stop`` fail with an internal error, and a ``stop`` that reports success
has undone every change (issue 26, item 8).

One real start (the recorder plugin: a file, a sysctl through the claims registry, the
instance of the fake Apptainer); every example puts the host and state back as that start
left them, damages them, and stops."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coldfront_launch.errors import LaunchError
from coldfront_launch.exitcodes import ExitCode
from coldfront_launch.lifecycle.launcher import Launcher
from tests.unit.lifecycle.test_launcher import recorder

__all__ = ["recorder"]  # the fixture
EXAMPLES = int(os.environ.get("CF_FUZZ_EXAMPLES", "40"))

#: Damage after which a reported success must mean everything was undone.
STRICT = ("junk", "flip")


@dataclass
class Started:
    launcher: Launcher
    snapshot: Path  # the state root and the host files, as the start left them
    paths: dict[str, Path]


@pytest.fixture
def started(make_settings, fake_apptainer, recorder, sysctl_root: Path,  # type: ignore[no-untyped-def]
            tmp_path: Path) -> Started:
    launcher = Launcher(make_settings(hooks=["recorder"]))
    launcher.start(wait=False)
    paths = {"state": tmp_path / "state", "made": Path(os.environ["RECORDER_FILE"]),
             "sysctl": sysctl_root / "net/ipv4/ip_forward",
             "instances": Path(os.environ["FAKE_APPTAINER_STATE"])}
    snapshot = tmp_path / "snapshot"
    shutil.copytree(paths["state"], snapshot / "state", symlinks=True)
    for key in ("made", "sysctl", "instances"):
        shutil.copy2(paths[key], snapshot / key)
    return Started(launcher, snapshot, paths)


def _put_back(s: Started) -> None:
    shutil.rmtree(s.paths["state"])
    shutil.copytree(s.snapshot / "state", s.paths["state"], symlinks=True)
    for key in ("made", "sysctl", "instances"):
        s.paths[key].parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(s.snapshot / key, s.paths[key])


DAMAGE = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("junk"), st.floats(0, 1),
              st.binary(min_size=1, max_size=40).filter(lambda b: b"\n" not in b)),
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(1, 255)),
    st.tuples(st.just("delete"), st.sampled_from(["journal", "made", "claims", "record"])),
)


def _damage(s: Started, damage: tuple) -> None:  # type: ignore[type-arg]
    journal = s.launcher.state.journal_path
    data = journal.read_bytes()
    kind = damage[0]
    if kind == "truncate":
        journal.write_bytes(data[:int(damage[1] * len(data))])
    elif kind == "junk":
        lines = data.split(b"\n")
        lines.insert(int(damage[1] * (len(lines) - 1)), damage[2])
        journal.write_bytes(b"\n".join(lines))
    elif kind == "flip":  # any byte but the last newline (then the line looks torn)
        at = int(damage[1] * (len(data) - 2))
        journal.write_bytes(data[:at] + bytes([data[at] ^ damage[2]]) + data[at + 1:])
    else:
        target = {"journal": journal, "made": s.paths["made"],
                  "claims": s.paths["state"] / "claims.json",
                  "record": s.launcher.settings.state_dir / "launch.json"}[damage[1]]
        target.unlink(missing_ok=True)


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damage=DAMAGE)
def test_a_damaged_journal_never_crashes_stop_nor_lies(started: Started,
                                                         damage: tuple) -> None:  # type: ignore[type-arg]
    _put_back(started)
    _damage(started, damage)
    try:
        started.launcher.stop()
    except LaunchError as err:
        assert err.exit_code != ExitCode.INTERNAL, f"{damage}: {err}"
        return  # it said what it could not do
    if damage[0] in STRICT:
        assert not started.paths["made"].exists(), f"{damage}: said undone, file left"
        assert started.paths["sysctl"].read_text().strip() == "0", f"{damage}: sysctl left"
        assert json.loads(started.paths["instances"].read_text()) == {}, \
            f"{damage}: said undone, instance left"
