"""``cf-launch restore``: put a backup back, only while the instance is stopped.

Order, so that a refusal changes nothing: the instance must be stopped; the whole archive
is checked (structure, names, types, checksums) before anything is written; existing data
is replaced only with ``force``. Then, under the instance's lock, the archive is checked
again while it is extracted into a private folder beside the data, the database there is
given to the service account and must pass ``PRAGMA integrity_check``; only then are the
env file, data folder and certificate folder swapped in by rename. What they replace is
kept beside them as ``<name>.replaced-<UTC time>``.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coldfront_launch import apptainer
from coldfront_launch.coldfront.appdata import CERTS_DIR, DATA_DIR, ENV_FILE, data_locked, own
from coldfront_launch.config.settings import Settings
from coldfront_launch.errors import (
    ArchiveError,
    DataExistsError,
    HostChangeError,
    InstanceRunningError,
)
from coldfront_launch.operations import archive, sqlitedb
from coldfront_launch.state import record
from coldfront_launch.state.instance import InstanceState

Report = Callable[[str], None]
#: What a restore replaces, in the order it is swapped in.
ITEMS = (DATA_DIR, CERTS_DIR, ENV_FILE)


def restore(settings: Settings, path: Path, force: bool = False,
            report: Report | None = None) -> dict[str, Any]:
    """Restore the backup at ``path`` into the instance's state folder."""
    say = report or (lambda _message: None)
    _refuse_if_running(settings)
    say(f"checking {path}")
    contents = archive.verify(path)
    existing = _existing(settings.state_dir)
    if existing and not force:
        raise DataExistsError(
            f"instance {settings.name} already has data ({', '.join(existing)} in "
            f"{settings.state_dir})",
            "add --force to replace it (it is kept beside it as <name>.replaced-<time>)")
    state = InstanceState(settings.state_dir)
    with state.locked():
        _refuse_if_running(settings)
        with data_locked(settings.state_dir), \
                tempfile.TemporaryDirectory(prefix=".restore-", dir=settings.state_dir) as tmp:
            staging = Path(tmp)
            say("extracting and checking again")
            archive.extract(path, staging)
            os.chmod(staging / ENV_FILE, 0o600)
            ids = (settings.security.uid, settings.security.gid)
            own(staging / DATA_DIR, *ids)
            db = contents.database.split("/", 1)[1]
            say(f"checking {contents.database} with PRAGMA integrity_check")
            where = sqlitedb.Where(image=Path(record.read(settings.state_dir).image
                                              or settings.image_path),
                                   data_dir=staging / DATA_DIR)
            integrity = sqlitedb.integrity_check(where, db, ids)
            if integrity != "ok":
                raise ArchiveError(f"{path.name}: its database fails SQLite's integrity "
                                   f"check: {integrity}")
            replaced = _swap(settings.state_dir, staging, archive.stamp(time.time()))
    manifest = contents.manifest
    say(f"restored {settings.name} from the backup of {manifest.get('instance')} made "
        f"{manifest.get('created')}; start it with `cf-launch start`")
    return {"name": settings.name, "archive": str(path), "integrity_check": integrity,
            "replaced": replaced, "manifest": manifest}


def _refuse_if_running(settings: Settings) -> None:
    if apptainer.find(settings.name) is not None:
        raise InstanceRunningError(
            f"instance {settings.name} is running; restore replaces its data only while "
            "it is stopped",
            f"stop it first: `cf-launch stop --name {settings.name}` (or `systemctl stop "
            f"cf-launch@{settings.name}`), restore, then `cf-launch start`")


def _existing(state_dir: Path) -> list[str]:
    """The items that hold data (an empty folder holds none)."""
    found = []
    for item in ITEMS:
        path = state_dir / item
        if path.is_dir() and not path.is_symlink():
            if any(path.iterdir()):
                found.append(item)
        elif path.exists() or path.is_symlink():
            found.append(item)  # a file, a link, anything else: never replaced silently
    return found


def _swap(state_dir: Path, staging: Path, when: str) -> dict[str, str]:
    """Move each item aside (an empty folder is removed), then the restored one in; on
    failure put everything back. Returns where each replaced item was kept."""
    done: list[tuple[str, Path | None]] = []
    replaced: dict[str, str] = {}
    try:
        for item in ITEMS:
            live = state_dir / item
            aside: Path | None = None
            if live.is_dir() and not live.is_symlink() and not any(live.iterdir()):
                live.rmdir()
            elif live.exists() or live.is_symlink():
                aside = _aside(state_dir, item, when)
                os.rename(live, aside)
                replaced[item] = str(aside)
            done.append((item, aside))
            os.rename(staging / item, live)
    except OSError as err:
        _put_back(state_dir, staging, done)
        raise HostChangeError(f"restore could not swap in {state_dir}: {err}",
                              "nothing was replaced; check the state folder's disk") from None
    return replaced


def _aside(state_dir: Path, item: str, when: str) -> Path:
    path = state_dir / f"{item}.replaced-{when}"
    n = 1
    while path.exists() or path.is_symlink():
        n += 1
        path = state_dir / f"{item}.replaced-{when}-{n}"
    return path


def _put_back(state_dir: Path, staging: Path, done: list[tuple[str, Path | None]]) -> None:
    for item, aside in reversed(done):
        live = state_dir / item
        if live.exists() and not (staging / item).exists():
            os.rename(live, staging / item)
        if aside is not None:
            os.rename(aside, live)
        elif not live.exists() and item != ENV_FILE:
            live.mkdir(mode=0o700)  # it was an empty folder
