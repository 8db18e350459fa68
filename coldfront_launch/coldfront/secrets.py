"""The secret files the settings name, and whether they are kept as secrets: read by
root alone (mode 0640 at the widest, owned by root). ``doctor``, ``plan`` and ``start``
warn about any other; a file cf-launch would refuse to read is a fatal problem (``start``
then exits 2, naming the setting, before anything changes).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
from pathlib import Path

from coldfront_launch.config import files
from coldfront_launch.config.coldfront import SECTION
from coldfront_launch.config.settings import Settings
from coldfront_launch.errors import ConfigError
from coldfront_launch.types import Problem

#: The widest mode a secret file may have: read and write for its owner, read for its
#: group. Beyond it (warned about): group write, or anything for others.
WIDEST = 0o640
EXPOSING = 0o027


def secret_files(settings: Settings) -> list[tuple[str, Path]]:
    """Each ``[coldfront]`` secret file, with its setting: read as ColdFront's env."""
    cf = settings.coldfront
    found: list[tuple[str, Path]] = []
    if cf.email.password_file is not None:
        found.append((f"{SECTION}.email.password_file", cf.email.password_file))
    if cf.oidc is not None:
        found.append((f"{SECTION}.oidc.client_secret_file", cf.oidc.client_secret_file))
    if cf.database_url_file is not None:
        found.append((f"{SECTION}.database_url_file", cf.database_url_file))
    if cf.secret_key_file is not None:
        found.append((f"{SECTION}.secret_key_file", cf.secret_key_file))
    found += [(f"{SECTION}.extra_env_files.{name}", path)
              for name, path in cf.extra_env_files.items()]
    return found


def problems(settings: Settings) -> list[Problem]:
    """A warning for each secret file (and the site's private key) others may read or
    that root does not own; a fatal problem for one cf-launch would refuse to read."""
    found: list[Problem] = []
    for setting, path in secret_files(settings):
        try:
            fd, info = files.open_regular(setting, path, files.SECRET_LIMIT, follow=False)
        except ConfigError as err:
            found.append(Problem(err.setting, str(err).split(": ", 1)[1], err.hint))
            continue
        os.close(fd)
        found += _exposed(setting, path, info)
    tls = settings.coldfront.tls
    if tls is not None:  # a link (Let's Encrypt's live/): the key it leads to
        with contextlib.suppress(OSError):  # unreadable: the TLS check says why
            found += _exposed(f"{SECTION}.tls.key", tls.key, os.stat(tls.key))
    return found


def exposure(info: os.stat_result) -> str:
    """What makes a file with this ``stat`` a poorly kept secret ("" when nothing)."""
    mode = stat.S_IMODE(info.st_mode)
    why = []
    if mode & EXPOSING:
        why.append(f"has mode {mode:04o}, wider than {WIDEST:04o}")
    if info.st_uid != 0:
        try:
            owner = f"{pwd.getpwuid(info.st_uid).pw_name} (uid {info.st_uid})"
        except KeyError:
            owner = f"uid {info.st_uid}"
        why.append(f"is owned by {owner}, not root")
    return " and ".join(why)


def _exposed(setting: str, path: Path, info: os.stat_result) -> list[Problem]:
    why = exposure(info)
    if not why:
        return []
    return [Problem(setting, f"the secret file {path} {why}",
                    f"chmod 0600 {path}; chown root {path}", fatal=False)]
