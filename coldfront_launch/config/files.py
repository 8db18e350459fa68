"""Files an administrator names (the settings file, secret and password files, the
site's certificate and key), read with care: opened without blocking (a FIFO does not
hang the read), checked to be a regular file by the descriptor read from, and read to a
bound (``/dev/zero`` or a huge file does not fill memory). Each refusal is a
:class:`ConfigError` naming the setting or option (exit 2).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from coldfront_launch.errors import ConfigError

#: The most a secret or password file may hold.
SECRET_LIMIT = 64 * 1024
#: The most any other file cf-launch reads from the administrator may hold.
FILE_LIMIT = 1024 * 1024
#: What a file is, by the type bits of its mode, for messages.
KINDS = {stat.S_IFDIR: "a directory", stat.S_IFCHR: "a character device",
         stat.S_IFBLK: "a block device", stat.S_IFIFO: "a FIFO (named pipe)",
         stat.S_IFSOCK: "a socket", stat.S_IFLNK: "a symbolic link"}


def kind(mode: int) -> str:
    """``a FIFO (named pipe)``: what the file of ``mode`` is."""
    return KINDS.get(stat.S_IFMT(mode), "not a regular file")


def shown_size(size: int) -> str:
    """``64 KiB``, ``1 MiB``: a limit as people write it."""
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} bytes"


def open_regular(setting: str, path: Path, limit: int = FILE_LIMIT, *,
                 follow: bool = True) -> tuple[int, os.stat_result]:
    """An open descriptor of the regular file at ``path`` and its ``fstat``; the caller
    closes it. ``follow=False``: a symbolic link is refused (O_NOFOLLOW), not followed.
    Nothing but a regular file of at most ``limit`` bytes is opened or kept open."""
    try:
        found = os.stat(path, follow_symlinks=follow)
    except OSError as err:
        raise _unreadable(setting, path, err) from None
    if not stat.S_ISREG(found.st_mode):  # never opened: a device's open can act
        raise _not_regular(setting, path, found.st_mode, follow)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | (0 if follow else os.O_NOFOLLOW))
    except OSError as err:
        raise _unreadable(setting, path, err) from None
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):  # replaced since the stat above
        problem = _not_regular(setting, path, info.st_mode, follow)
    elif info.st_size > limit:
        problem = _too_big(setting, path, info.st_size, limit)
    if problem is not None:
        os.close(fd)
        raise problem
    return fd, info


def read_bounded(setting: str, path: Path, limit: int = FILE_LIMIT, *,
                 follow: bool = True) -> bytes:
    """The bytes of the regular file at ``path``, at most ``limit`` of them (a file that
    grows past it while read is refused too); see :func:`open_regular`."""
    fd, _info = open_regular(setting, path, limit, follow=follow)
    try:
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, min(65536, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as err:
        raise _unreadable(setting, path, err) from None
    finally:
        os.close(fd)
    if total > limit:
        raise _too_big(setting, path, total, limit, growing=True)
    return b"".join(chunks)


def _unreadable(setting: str, path: Path, err: OSError) -> ConfigError:
    if err.errno == errno.ENOENT:
        return ConfigError(setting, f"{path} does not exist", "check the path")
    if err.errno == errno.ELOOP:
        return _not_regular(setting, path, stat.S_IFLNK, False)
    return ConfigError(setting, f"cannot read {path}: {err.strerror}",
                       "check the path and its permissions (cf-launch runs as root)")


def _not_regular(setting: str, path: Path, mode: int, follow: bool) -> ConfigError:
    if stat.S_ISLNK(mode) and not follow:
        return ConfigError(setting, f"{path} is a symbolic link, which cf-launch does not "
                           "follow to a secret", "give the path of the file itself")
    return ConfigError(setting, f"{path} is {kind(mode)}, not a regular file",
                       "give the path of a regular file")


def _too_big(setting: str, path: Path, size: int, limit: int,
             growing: bool = False) -> ConfigError:
    held = f"grew past {shown_size(limit)} while read" if growing \
        else f"is {size} bytes, more than the {shown_size(limit)} allowed"
    return ConfigError(setting, f"{path} {held}", "give the right file")
