"""What an image holds, asked of the image itself: ColdFront's version, and the newest
version the package index offers (asked with the image's own pip, so the site's index,
proxy and CA bundle apply as they did at build time)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from coldfront_launch import apptainer
from coldfront_launch.errors import LaunchError

VENV = "/srv/coldfront/venv/bin"
VENV_PYTHON = f"{VENV}/python"
VERSION_CODE = "from importlib.metadata import version; print(version('coldfront'))"
#: Where a build's CA bundle is bound for pip (as the build binds it: layers.CA_MOUNT).
CA_TARGET = "/mnt/cf-launch-ca.crt"


def coldfront_version(image: Path) -> str | None:
    """ColdFront's version in ``image``; None if it cannot be asked."""
    try:
        probe = apptainer.exec_image(image, [VENV_PYTHON, "-c", VERSION_CODE], timeout=60)
    except (LaunchError, OSError):
        return None
    return probe.out or None if probe.code == 0 else None


def running_version(name: str) -> str | None:
    """ColdFront's version in the running instance ``name``; None if it cannot be asked."""
    probe = apptainer.exec_capture(name, [VENV_PYTHON, "-c", VERSION_CODE])
    return probe.out or None if probe.code == 0 else None


#: Passed from the host to pip (the rest of the host's environment is not: a host's CA
#: variables name files the image does not have).
PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                   "NO_PROXY", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL")


def index_options(ca_bundle: Path | None, environ: Mapping[str, str] = os.environ
                  ) -> tuple[str, ...]:
    """``apptainer exec`` options for pip in the image: a clean environment with the
    host's proxy and index variables, and the build's CA bundle when there is one."""
    options = ["--cleanenv"]
    for name in PROXY_VARIABLES:
        if environ.get(name):
            options += ["--env", f"{name}={environ[name]}"]
    if ca_bundle is not None:
        options += ["--bind", f"{ca_bundle}:{CA_TARGET}:ro", "--env", f"PIP_CERT={CA_TARGET}"]
    return tuple(options)


def newest_on_index(image: Path, ca_bundle: Path | None = None) -> str:
    """The newest ColdFront the package index offers, as pip in ``image`` resolves it."""
    options = index_options(ca_bundle)
    probe = apptainer.exec_image(
        image, [f"{VENV}/pip", "install", "--dry-run", "--ignore-installed", "--no-deps",
                "--no-cache-dir", "--quiet", "--report", "-", "coldfront"],
        options, timeout=180)
    try:
        report = json.loads(probe.out) if probe.code == 0 else {}
        return str(report["install"][0]["metadata"]["version"])
    except (ValueError, KeyError, IndexError, TypeError):
        last = (probe.err.strip().splitlines() or ["no answer"])[-1]
        raise LaunchError(f"could not ask the package index for ColdFront's newest version "
                          f"({last})",
                          "give the version: `cf-launch upgrade --coldfront-version V`")\
            from None
