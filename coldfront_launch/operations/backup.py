"""``cf-launch backup``: the site's data in one archive, while ColdFront runs or not.

The database is copied with SQLite's backup API
(:mod:`~coldfront_launch.operations.sqlitedb`), never as a plain file copy; the env file
(the secret key) and the certificate folder are copied as they are. Everything is staged
in a private folder inside the instance's state folder, checksummed, and written by
:mod:`~coldfront_launch.operations.archive` as one 0600 ``.tar.gz``.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coldfront_launch import apptainer, atomic
from coldfront_launch.apptainer import imageinfo, layers
from coldfront_launch.coldfront.appdata import (
    CERTS_DIR,
    DATA_DIR,
    ENV_FILE,
    data_locked,
    sqlite_name,
)
from coldfront_launch.config.settings import Settings
from coldfront_launch.errors import ConfigError, LaunchError
from coldfront_launch.operations import archive, sqlitedb
from coldfront_launch.state import record

Report = Callable[[str], None]
BACKUPS = "backups"
#: Pseudo file systems: an archive is never written under them.
PSEUDO = ("/proc", "/sys", "/dev")
MISSING, FILE, FOLDER = "missing", "a regular file", "a folder"
#: Modes kept of the certificate folder: without group or world write (restore refuses it).
KEPT_MODE = 0o755


def default_output(settings: Settings, epoch: float) -> Path:
    """``<state_dir>/backups/<name>-<UTC time>.tar.gz``."""
    return settings.state_dir / BACKUPS / f"{settings.name}-{archive.stamp(epoch)}.tar.gz"


def output_path(settings: Settings, output: Path | str | None, epoch: float) -> Path:
    """Where the archive goes (:func:`check_output`), its folder created if it is to be."""
    target, create = check_output(settings, output, epoch)
    if create is not None:
        make_folder(create, parents=output is None)
    return target


def check_output(settings: Settings, output: Path | str | None, epoch: float
                 ) -> tuple[Path, Path | None]:
    """The archive's path for ``--output`` (None: :func:`default_output`; a folder: the
    default name in it; ``DIR/``: a folder, made if missing) and the folder to create
    first, if any. Anything else at the path is a :class:`ConfigError`; changes nothing."""
    name = default_output(settings, epoch).name
    if output is None:
        target = default_output(settings, epoch)
        kind = _kind(target.parent)
        if kind not in (FOLDER, MISSING):
            raise _refused(target.parent, kind)
        return _file_target(settings, target), None if kind == FOLDER else target.parent
    text = os.fspath(output)
    if not text or "\0" in text:
        raise ConfigError("--output", "an empty path or a NUL byte",
                          "give the archive's path, or a folder for it")
    path = Path(text).absolute()
    _refuse_pseudo(path)
    kind = _kind(path)
    if kind == FOLDER:
        return _file_target(settings, path / name), None
    if text.endswith("/"):
        if kind != MISSING:
            raise _refused(path, kind, f"{text} names a folder, but ")
        if not path.parent.is_dir():
            raise ConfigError("--output", f"the folder {path.parent} does not exist",
                              f"create it first: cf-launch makes only {path.name}/ in it")
        return path / name, path
    if kind == MISSING and not path.parent.is_dir():
        raise ConfigError("--output", f"the folder {path.parent} does not exist",
                          "create it first, or give an existing folder")
    return _file_target(settings, path), None


def _kind(path: Path) -> str:
    """What is at ``path``, not following a link: :data:`MISSING`, :data:`FILE`,
    :data:`FOLDER` or the words for anything else."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return MISSING
    except NotADirectoryError:
        return "under something that is not a folder"
    except OSError as err:
        return f"unreadable ({err.strerror or err})"
    kind = atomic.file_kind(mode)
    return f"{kind} (cf-launch does not follow it)" if stat.S_ISLNK(mode) else kind


def _refused(path: Path, kind: str, prefix: str = "") -> ConfigError:
    return ConfigError("--output", f"{prefix}{path} is {kind}",
                       "give the path of a regular file or of a folder")


def _refuse_pseudo(path: Path) -> None:
    """No archive under /proc, /sys or /dev, by the path's text or where it leads."""
    for where in (os.path.abspath(path), os.path.join(os.path.realpath(path.parent),
                                                      path.name)):
        top = next((t for t in PSEUDO if where == t or where.startswith(f"{t}/")), None)
        if top is not None:
            raise ConfigError("--output", f"{path} is under {top}, the kernel's own "
                              "files, never a place for a backup",
                              "give a path on a real file system")


def _file_target(settings: Settings, target: Path) -> Path:
    """``target`` if a new file or a regular file may be written there: never a file of
    the instance's own state folder but a backup in its backups/ folder."""
    kind = _kind(target)
    if kind not in (FILE, MISSING):
        raise _refused(target, kind)
    if kind == FILE:
        real = Path(os.path.realpath(target.parent)) / target.name
        state = Path(os.path.realpath(settings.state_dir))
        if real.is_relative_to(state) and not real.is_relative_to(state / BACKUPS):
            raise ConfigError("--output", f"{target} is a file of instance {settings.name} "
                              "itself; a backup never replaces it",
                              f"give a path outside {settings.state_dir}, or in its "
                              f"{BACKUPS}/ folder")
    return target


def make_folder(folder: Path, parents: bool) -> None:
    """Create ``folder`` 0700 (and its parents only if ``parents``); one made meanwhile
    is fine."""
    try:
        folder.mkdir(mode=0o700, parents=parents)
    except FileExistsError:
        if _kind(folder) != FOLDER:
            raise _refused(folder, _kind(folder)) from None


def backup(settings: Settings, output: Path | str | None = None,
           report: Report | None = None) -> dict[str, Any]:
    """Back up the instance's data; return ``{"path": ..., "manifest": {...}}``.
    ``output``: see :func:`check_output` (a ``str`` keeps a trailing ``/``)."""
    say = report or (lambda _message: None)
    epoch = time.time()
    target, create = check_output(settings, output, epoch)  # before anything is read
    state_dir = settings.state_dir
    env_path = state_dir / ENV_FILE
    if not env_path.is_file():
        raise LaunchError(f"instance {settings.name} has no data to back up "
                          f"({env_path} does not exist)",
                          "check --name and --state-root; `cf-launch start` creates the data")
    db_name = sqlite_name(env_path.read_text(errors="replace"))
    data_dir = state_dir / DATA_DIR
    _check_database(settings, data_dir, db_name)
    if create is not None:
        make_folder(create, parents=output is None)
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
            _file_target(settings, target)  # again: nothing was put there meanwhile
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
    """Copy the certificate folder: files and folders as they are (without group or world
    write), links as data (only relative ones that stay inside it, followed hop by hop
    through the others, as certbot makes them)."""
    entries = [archive.Entry(CERTS_DIR, "dir", 0o755)]
    links: dict[str, str] = {}
    (staging / CERTS_DIR).mkdir(mode=0o700)
    if not source.is_dir():
        return entries, links
    entries[0] = archive.Entry(CERTS_DIR, "dir", source.stat().st_mode & KEPT_MODE)
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
                entries.append(archive.Entry(name, "dir", info.st_mode & KEPT_MODE))
            elif stat.S_ISREG(info.st_mode):
                shutil.copyfile(path, staging / name, follow_symlinks=False)
                copied = archive.file_entry(name, staging / name)
                entries.append(archive.Entry(name, "file", info.st_mode & KEPT_MODE,
                                             copied.size, copied.sha256))
            else:
                raise LaunchError(f"{path} is neither a file, a folder nor a link",
                                  f"move it out of {source}")
    kinds = {e.name: e.kind for e in entries}
    for name, target in sorted(links.items()):
        problem = "it is absolute" if target.startswith("/") else \
            archive.link_problem(name, links, kinds)
        if problem:
            raise LaunchError(f"{CERTS_DIR}/ has a link that leaves it: {name} -> {target} "
                              f"({problem})", "make it a relative link inside the folder "
                              "(as certbot does), or replace it by the file")
    return entries, links


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
