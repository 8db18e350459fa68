"""``cf-launch backup``: the site's data in one archive, while ColdFront runs or not.

The database is copied with SQLite's backup API
(:mod:`~coldfront_launch.operations.sqlitedb`), never as a plain file copy; the env file
(the secret key) and the certificate folder are copied as they are. Everything is staged
in a private folder inside the instance's state folder, checksummed, and written by
:mod:`~coldfront_launch.operations.archive` as one 0600 ``.tar.gz``.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coldfront_launch import apptainer
from coldfront_launch.apptainer import imageinfo, layers
from coldfront_launch.coldfront.appdata import (
    CERTS_DIR,
    DATA_DIR,
    ENV_FILE,
    data_locked,
    sqlite_name,
)
from coldfront_launch.config.settings import Settings
from coldfront_launch.errors import LaunchError
from coldfront_launch.operations import archive, sqlitedb
from coldfront_launch.state import record

Report = Callable[[str], None]
BACKUPS = "backups"


def default_output(settings: Settings, epoch: float) -> Path:
    """``<state_dir>/backups/<name>-<UTC time>.tar.gz``."""
    return settings.state_dir / BACKUPS / f"{settings.name}-{archive.stamp(epoch)}.tar.gz"


def output_path(settings: Settings, output: Path | None, epoch: float) -> Path:
    """Where the archive goes: ``output``, or the default name inside a folder given as
    ``output``, or :func:`default_output`."""
    name = default_output(settings, epoch).name
    if output is None:
        target = default_output(settings, epoch)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return target
    if output.is_dir():
        return output / name
    if not output.parent.is_dir():
        raise LaunchError(f"--output: the folder {output.parent} does not exist",
                          "create it first, or give an existing folder")
    return output


def backup(settings: Settings, output: Path | None = None,
           report: Report | None = None) -> dict[str, Any]:
    """Back up the instance's data; return ``{"path": ..., "manifest": {...}}``."""
    say = report or (lambda _message: None)
    state_dir = settings.state_dir
    env_path = state_dir / ENV_FILE
    if not env_path.is_file():
        raise LaunchError(f"instance {settings.name} has no data to back up "
                          f"({env_path} does not exist)",
                          "check --name and --state-root; `cf-launch start` creates the data")
    db_name = sqlite_name(env_path.read_text(errors="replace"))
    data_dir = state_dir / DATA_DIR
    _check_database(settings, data_dir, db_name)
    epoch = time.time()
    target = output_path(settings, output, epoch)
    with data_locked(state_dir):
        running = _running(settings.name)
        with tempfile.TemporaryDirectory(prefix=".backup-", dir=state_dir) as tmp:
            staging = Path(tmp)
            say(f"copying {DATA_DIR}/{db_name} with SQLite's backup API "
                + ("(online: ColdFront is running)" if running else "(ColdFront is stopped)"))
            (staging / DATA_DIR).mkdir(mode=0o700)
            member = f"{DATA_DIR}/{db_name}"
            where = sqlitedb.Where(settings.name) if running else sqlitedb.Where(
                image=image_of(settings), data_dir=data_dir)
            snap = sqlitedb.snapshot(where, db_name,
                                     (settings.security.uid, settings.security.gid),
                                     staging / member)
            if snap.integrity_check != "ok":
                raise LaunchError(f"the copy of {member} fails SQLite's integrity check: "
                                  f"{snap.integrity_check}",
                                  "the live database may be damaged; keep your older "
                                  "backups and check it with `PRAGMA integrity_check`")
            entries = [archive.Entry(DATA_DIR, "dir", 0o700),
                       archive.Entry(member, "file", 0o600, snap.size, snap.sha256)]
            shutil.copy2(env_path, staging / ENV_FILE)
            entries.append(archive.file_entry(ENV_FILE, staging / ENV_FILE))
            cert_entries, links = _copy_certs(state_dir / CERTS_DIR, staging)
            entries += cert_entries
            say(f"adding {ENV_FILE} and {CERTS_DIR}/ ({sum(e.kind == 'file' for e in cert_entries)}"
                f" files, {len(links)} links)")
            manifest = _manifest(settings, epoch, running, entries, links, snap)
            say(f"writing {target}")
            archive.write(target, manifest, staging)
    size = target.stat().st_size
    say(f"backup of {settings.name} written: {target} ({size / 1e6:.1f} MB, mode 0600)")
    return {"path": str(target), "size": size, "manifest": manifest}


def _check_database(settings: Settings, data_dir: Path, db_name: str) -> None:
    db = data_dir / db_name
    try:
        info = db.lstat()
    except FileNotFoundError:
        raise LaunchError(f"{db} does not exist: ColdFront has not created its database yet",
                          "start the instance once (`cf-launch start`), then back it up"
                          ) from None
    if not stat.S_ISREG(info.st_mode):
        raise LaunchError(f"{db} is not a regular file", "move it aside and check the "
                          "data folder by hand")
    ids = (settings.security.uid, settings.security.gid)
    owner = data_dir.stat()
    if (owner.st_uid, owner.st_gid) != ids or (info.st_uid, info.st_gid) != ids:
        raise LaunchError(f"{data_dir} or {db_name} is not owned by the service account "
                          f"{ids[0]}:{ids[1]} ([security] uid/gid)",
                          "start the instance once with this cf-launch (it hands the data "
                          f"folder over), or: chown -R {ids[0]}:{ids[1]} {data_dir}")


def _running(name: str) -> bool:
    try:
        return apptainer.find(name) is not None
    except LaunchError:  # no Apptainer here: nothing runs
        return False


def _copy_certs(source: Path, staging: Path) -> tuple[list[archive.Entry], dict[str, str]]:
    """Copy the certificate folder: files and folders as they are, links as data (only
    relative ones that stay inside it, as certbot makes them)."""
    entries = [archive.Entry(CERTS_DIR, "dir", 0o755)]
    links: dict[str, str] = {}
    (staging / CERTS_DIR).mkdir(mode=0o700)
    if not source.is_dir():
        return entries, links
    entries[0] = archive.Entry(CERTS_DIR, "dir", source.stat().st_mode & 0o777)
    for folder, dirs, files in os.walk(source):
        dirs.sort()
        here = Path(folder)
        rel = here.relative_to(source.parent).as_posix()
        for item in sorted(dirs) + sorted(files):
            path, name = here / item, f"{rel}/{item}"
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                links[name] = os.readlink(path)
            elif stat.S_ISDIR(info.st_mode):
                (staging / name).mkdir(mode=0o700)
                entries.append(archive.Entry(name, "dir", info.st_mode & 0o777))
            elif stat.S_ISREG(info.st_mode):
                shutil.copyfile(path, staging / name, follow_symlinks=False)
                copied = archive.file_entry(name, staging / name)
                entries.append(archive.Entry(name, "file", info.st_mode & 0o777,
                                             copied.size, copied.sha256))
            else:
                raise LaunchError(f"{path} is neither a file, a folder nor a link",
                                  f"move it out of {source}")
    bad = [f"{name} -> {target}" for name, target in links.items()
           if not _inside(name, target)]
    if bad:
        raise LaunchError(f"{CERTS_DIR}/ has a link that leaves it: {bad[0]}",
                          "make it a relative link inside the folder (as certbot does), "
                          "or replace it by the file")
    return entries, links


def _inside(name: str, target: str) -> bool:
    if target.startswith("/"):
        return False
    return posixpath.normpath(posixpath.join(posixpath.dirname(name), target)) \
        .startswith(f"{CERTS_DIR}/")


def _manifest(settings: Settings, epoch: float, running: bool, entries: list[archive.Entry],
              links: dict[str, str], snap: sqlitedb.Snapshot) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version
    try:
        ours = version("coldfront-launch")
    except PackageNotFoundError:
        ours = "unknown"
    member = next(e.name for e in entries if e.name.startswith(f"{DATA_DIR}/"))
    return {
        "format": archive.FORMAT,
        "format_version": archive.FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch)),
        "created_epoch": int(epoch),
        "cf_launch_version": ours,
        "coldfront_version": _coldfront_version(settings, running),
        "instance": settings.name,
        "online": running,
        "image": _image(settings),
        "service_account": {"uid": settings.security.uid, "gid": settings.security.gid},
        "database": {"engine": "sqlite", "member": member,
                     "integrity_check": snap.integrity_check,
                     "journal_mode": snap.journal_mode, "page_count": snap.page_count},
        "members": {e.name: e.to_json() for e in sorted(entries, key=lambda e: e.name)},
        "links": links,
    }


def image_of(settings: Settings) -> Path:
    """The image the instance was started with (else the one it would start)."""
    return Path(record.read(settings.state_dir).image or settings.image_path)


def _image(settings: Settings) -> dict[str, Any]:
    path = image_of(settings)
    resolved = path.resolve()
    found = layers.LAYER_FILE.match(resolved.name)
    return {"path": str(path), "resolved": str(resolved),
            "layer": found.group("layer") if found else None,
            "key": found.group("key") if found else None}


def _coldfront_version(settings: Settings, running: bool) -> str | None:
    """ColdFront's version, from the running instance, else from the image; None if
    neither answers."""
    if running:
        return imageinfo.running_version(settings.name)
    image = image_of(settings)
    return imageinfo.coldfront_version(image) if image.is_file() else None
