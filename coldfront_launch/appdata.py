"""ColdFront's persistent data on the host: database folder, certificates, secret env file,
and systemd's journal.

These live in the instance's state folder and survive ``stop``: they are the site's data.
The secret key is generated once, on the host, into a 0600 file bound read-only. The journal
of systemd inside is kept in ``journal/`` under a machine id fixed at the first start, so
that what happened at shutdown can be read after ``stop``
(``journalctl -D <state>/journal``).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import secrets
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

from .errors import LockedError, UnsupportedDatabaseError
from .locks import try_lock

ENV_FILE = "coldfront.env"
DATA_DIR = "data"
CERTS_DIR = "letsencrypt"
JOURNAL_DIR = "journal"
MACHINE_ID = "machine-id"
#: Held by ``backup`` and ``restore``: one of them at a time per instance.
DATA_LOCK = "data.lock"

CONTAINER_ENV = "/etc/coldfront/coldfront.env"
CONTAINER_DATA = "/srv/coldfront/data"
CONTAINER_CERTS = "/etc/letsencrypt"
CONTAINER_JOURNAL = "/var/log/journal"
CONTAINER_MACHINE_ID = "/etc/machine-id"
JOURNALD_DROPIN = "/etc/systemd/journald.conf.d/cf-launch.conf"
JOURNALD_CONF = ("# cf-launch: keep the journal in the state folder, bounded\n"
                 "[Journal]\nStorage=persistent\nSystemMaxUse=256M\n")
DB_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def env_text(secret_key: str) -> str:
    return (
        "# Written once by cf-launch; bound read-only into the container.\n"
        f"SECRET_KEY={secret_key}\n"
        f"DB_URL=sqlite:///{CONTAINER_DATA}/coldfront.db\n"
        "STATIC_ROOT=/srv/coldfront/static\n"
        "ALLOWED_HOSTS=*\n"
        "DEBUG=False\n"
    )


def ensure(state_dir: Path, owner: tuple[int, int] | None = None) -> list[str]:
    """Create what is missing (never overwrite); return the ``--bind`` specs.

    ``owner`` (uid, gid): the service account that owns the data folder (mode 0700) and
    everything in it; data from earlier versions, owned by root, is handed over."""
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)
    for name in (DATA_DIR, CERTS_DIR):
        (state_dir / name).mkdir(exist_ok=True)
    if owner is not None:
        own(state_dir / DATA_DIR, *owner)
    (state_dir / JOURNAL_DIR).mkdir(mode=0o755, exist_ok=True)
    machine_id = state_dir / MACHINE_ID
    if not machine_id.exists():
        machine_id.write_text(uuid.uuid4().hex + "\n")
    env = state_dir / ENV_FILE
    if not env.exists():
        fd = os.open(env, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(env_text(secrets.token_urlsafe(48)))
    return binds(state_dir)


def own(folder: Path, uid: int, gid: int) -> None:
    """Give ``folder`` and everything below it to uid:gid.

    Symbolic links are not followed, and a file with other hard links is left alone: the
    service must not be able to hand itself a file from elsewhere on the host."""
    os.chmod(folder, 0o700)
    for path in [folder, *folder.rglob("*")]:
        info = path.lstat()
        if (info.st_uid, info.st_gid) == (uid, gid):
            continue
        if stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
            continue
        os.chown(path, uid, gid, follow_symlinks=False)


def binds(state_dir: Path) -> list[str]:
    return [
        f"{state_dir / DATA_DIR}:{CONTAINER_DATA}",
        f"{state_dir / CERTS_DIR}:{CONTAINER_CERTS}",
        f"{state_dir / ENV_FILE}:{CONTAINER_ENV}:ro",
        f"{state_dir / JOURNAL_DIR}:{CONTAINER_JOURNAL}",
        f"{state_dir / MACHINE_ID}:{CONTAINER_MACHINE_ID}:ro",
    ]


def env_value(text: str, key: str) -> str | None:
    """The last ``KEY=value`` of an env file's text (systemd's EnvironmentFile= syntax,
    without quotes or continuations, as cf-launch writes it)."""
    found = None
    for line in text.splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name.strip() == key:
            found = value.strip().strip("'\"")
    return found


def sqlite_name(env: str) -> str:
    """The file name, in the data folder, of the SQLite database the env file's ``DB_URL``
    names. Anything else is out of scope for ``backup``/``restore`` for now: raises
    :class:`UnsupportedDatabaseError` with the reason."""
    url = env_value(env, "DB_URL")
    hint = ("back it up with the database's own tools (e.g. mysqldump, pg_dump); "
            "cf-launch backs up only a SQLite database in its data folder")
    if url is None:
        raise UnsupportedDatabaseError("the env file sets no DB_URL (ColdFront would use a "
                                       "database outside the data folder)", hint)
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("sqlite", "sqlite3"):
        raise UnsupportedDatabaseError(
            f"DB_URL uses {scheme or url!r}, not SQLite: backup and restore of other "
            "databases are out of scope for now", hint)
    path = rest[1:] if rest.startswith("/") else rest
    folder, name = posixpath.split(path)
    if folder != CONTAINER_DATA or not DB_NAME.fullmatch(name):
        raise UnsupportedDatabaseError(
            f"DB_URL names the SQLite file {path!r}, not a file directly in "
            f"{CONTAINER_DATA} (the data folder): out of scope for now", hint)
    return name


@contextlib.contextmanager
def data_locked(state_dir: Path) -> Iterator[None]:
    """The data lock of the instance in ``state_dir``; fail at once if a backup or
    restore holds it."""
    with try_lock(state_dir / DATA_LOCK) as held:
        if not held:
            raise LockedError(f"a backup or restore of {state_dir.name} is under way",
                              "wait for it to finish, then try again")
        yield
