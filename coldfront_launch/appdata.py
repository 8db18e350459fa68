"""ColdFront's persistent data on the host: database folder, certificates, secret env file.

These live in the instance's state folder and survive ``stop``: they are the site's data.
The secret key is generated once, on the host, into a 0600 file bound read-only.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

ENV_FILE = "coldfront.env"
DATA_DIR = "data"
CERTS_DIR = "letsencrypt"

CONTAINER_ENV = "/etc/coldfront/coldfront.env"
CONTAINER_DATA = "/srv/coldfront/data"
CONTAINER_CERTS = "/etc/letsencrypt"


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
    ]
