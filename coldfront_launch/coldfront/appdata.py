"""ColdFront's persistent data on the host: database folder, certificates, secret env file,
and systemd's journal.

These live in the instance's state folder and survive ``stop``: they are the site's data.
The env file (root 0600, bound read-only; PID 1 reads it for the units) is rendered on
every start; its secret key is generated once, on the host, and kept. The journal
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

from coldfront_launch import atomic
from coldfront_launch.errors import LockedError, UnsupportedDatabaseError
from coldfront_launch.locks import try_lock

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


#: What every env file holds when no settings are given (``coldfront.env.values`` renders the
#: real ones from ``[coldfront]``).
DEFAULT_ENV = {
    "DB_URL": f"sqlite:///{CONTAINER_DATA}/coldfront.db",
    "STATIC_ROOT": "/srv/coldfront/static",
    "ALLOWED_HOSTS": "localhost,127.0.0.1",
    "DEBUG": "False",
}
HEADER = ("# Rendered by cf-launch from the [coldfront] settings on every start (edits here "
          "are lost);\n# SECRET_KEY is generated once and kept. Bound read-only into the "
          "container.\n")
ESCAPED = str.maketrans({"\\": "\\\\", '"': '\\"', "$": "\\$", "`": "\\`"})


def quote(value: str) -> str:
    """A double-quoted value that systemd's ``EnvironmentFile=`` and django-environ's
    ``read_env`` both read back as ``value``."""
    return '"' + value.translate(ESCAPED) + '"'


def env_text(secret_key: str, env: dict[str, str] | None = None) -> str:
    """The env file: ``SECRET_KEY`` first, then ``env`` (default :data:`DEFAULT_ENV`)."""
    lines = [f"SECRET_KEY={quote(secret_key)}"]
    lines += [f"{name}={quote(value)}" for name, value in (env or DEFAULT_ENV).items()]
    return HEADER + "\n".join(lines) + "\n"


def parse_env(text: str) -> dict[str, str]:
    """Read back an env file: this module's quoted form, and the unquoted one that
    cf-launch 0.1 wrote."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if not sep or line.startswith("#") or not name.strip():
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            out, chars = [], iter(value[1:-1])
            for char in chars:
                out.append(next(chars, "") if char == "\\" else char)
            value = "".join(out)
        found[name.strip()] = value
    return found


def read_env(state_dir: Path) -> dict[str, str] | None:
    """The env file's variables, or None when there is none yet."""
    try:
        return parse_env((state_dir / ENV_FILE).read_text())
    except FileNotFoundError:
        return None


def write_env(state_dir: Path, env: dict[str, str] | None = None,
              secret_key: str = "") -> None:
    """Render the env file from ``env`` with ``secret_key`` (the site's shared one), else
    keeping its ``SECRET_KEY`` (a new one the first time). Written atomically (a 0600
    file beside it, then renamed), owned by root."""
    old = read_env(state_dir) or {}
    key = secret_key or old.get("SECRET_KEY") or secrets.token_urlsafe(48)
    atomic.write_text(state_dir / ENV_FILE, env_text(key, env), mode=0o600)


def ensure(state_dir: Path, owner: tuple[int, int] | None = None,
           env: dict[str, str] | None = None, secret_key: str = "") -> list[str]:
    """Create the folders that are missing, render the env file from ``env`` (see
    :func:`write_env`); return the ``--bind`` specs.

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
    write_env(state_dir, env, secret_key)
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
    """The last ``KEY=value`` of an env file's text (:func:`parse_env`: the quoted form
    cf-launch renders now, and the unquoted one of earlier versions)."""
    return parse_env(text).get(key)


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
