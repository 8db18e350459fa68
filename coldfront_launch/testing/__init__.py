"""Test helpers for cf-launch plugins, and the pytest plugin that offers them as fixtures.

Opt in from your tests, in ``conftest.py``::

    pytest_plugins = ["coldfront_launch.testing"]

or in ``pyproject.toml``: ``[tool.pytest.ini_options] addopts = "-p coldfront_launch.testing"``.

cf-launch also declares this module under pytest's ``pytest11`` entry point, named
``coldfront_launch.testing`` like the module, so ``-p coldfront_launch.testing`` and
``pytest_plugins`` find it even with ``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1``, and never load
it twice. What loading it costs a pytest run that does not use it: this module, which
imports nothing heavy and defines only fixtures, none ``autouse``. A fixture does its work
only when a test asks for it.

Fixtures:

- ``cf_launch``: a :class:`~coldfront_launch.testing.harness.Harness` in the test's
  ``tmp_path``: ``settings``/``context`` from a TOML snippet, ``plan(hooks=[…],
  config=…)``, ``start_stop(hooks=[…], config=…)``, ``register(name, plugin)``.
- ``cf_launch_host``: a recorder ``HostChanges`` (changes nothing, lists every change).
- ``cf_launch_apptainer``: the fake ``apptainer`` first on PATH (for driving the
  ``cf-launch`` command in a subprocess); its ``calls()`` are the argv lists it got.

Without pytest's fixtures: ``Harness(folder)``, ``FakeApptainer.create(folder)``,
``recording_host()``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from coldfront_launch.changes.host import RecordingHost
    from coldfront_launch.testing.harness import (
        FakeApptainer,
        Harness,
        IsolationRequired,
        StartStop,
        recording_host,
    )

__all__ = ["FakeApptainer", "Harness", "IsolationRequired", "StartStop", "recording_host"]


def __getattr__(name: str) -> Any:
    """The harness's names, imported on first use (so loading this plugin stays cheap)."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.harness"), name)


@pytest.fixture
def cf_launch(tmp_path: Path) -> Iterator[Harness]:
    """A harness with its own state root, sysctl folder and fake Apptainer."""
    from coldfront_launch.testing.harness import Harness

    harness = Harness(tmp_path / "cf-launch")
    yield harness
    harness.close()


@pytest.fixture
def cf_launch_host() -> RecordingHost:
    """A recorder ``HostChanges``: hand it to a hook, then read ``.changes``."""
    from coldfront_launch.testing.harness import recording_host

    return recording_host()


@pytest.fixture
def cf_launch_apptainer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeApptainer:
    """The fake ``apptainer`` and ``singularity`` first on PATH for this test."""
    from coldfront_launch.testing.harness import FakeApptainer

    fake = FakeApptainer.create(tmp_path / "fake-apptainer")
    for key, value in fake.environ().items():
        monkeypatch.setenv(key, value)
    return fake
