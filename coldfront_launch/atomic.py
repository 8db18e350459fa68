"""Replace a file atomically: readers see the old content or the new, never a part.

Every file cf-launch rewrites in place (journals, records, pins, claims, the env file,
archives, drop-ins, the supervisor's pid) goes through :func:`replace`: a uniquely named
temporary file beside the target (``O_EXCL | O_NOFOLLOW``, so a planted link is never
followed), its mode set whatever the umask, filled, synced, renamed over the target, then
the folder synced so the rename itself survives a power cut. ``sync=False`` skips both syncs
for caches. (The image build renames a finished image and swaps a symbolic link: those are
renames of their own, in ``apptainer/layers.py``.)
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from coldfront_launch.errors import HostChangeError

SUFFIX = ".cf-launch-tmp"


def file_kind(mode: int) -> str:
    """What a file of ``mode`` (``st_mode``) is, in words: "a regular file", "a FIFO"."""
    return {stat.S_IFREG: "a regular file", stat.S_IFDIR: "a folder",
            stat.S_IFLNK: "a symbolic link", stat.S_IFCHR: "a device node",
            stat.S_IFBLK: "a device node", stat.S_IFIFO: "a FIFO",
            stat.S_IFSOCK: "a socket"}.get(stat.S_IFMT(mode), "not a regular file")


def replace(path: Path, fill: Callable[[BinaryIO], None], *, mode: int = 0o644,
            sync: bool = True) -> None:
    """Create or replace ``path`` with what ``fill`` writes to the binary file it is given.

    Only a regular file is replaced (or a symbolic link: the link itself, never what it
    points to); a device, FIFO, socket or folder at ``path`` is refused, untouched."""
    try:
        found = os.lstat(path).st_mode
    except FileNotFoundError:
        found = stat.S_IFREG
    if not (stat.S_ISREG(found) or stat.S_ISLNK(found)):
        raise HostChangeError(f"{path} is {file_kind(found)}, not a regular file: cf-launch "
                              "does not replace it", "move it away, then try again")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            fill(out)
            if sync:
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync:
        sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    """fsync a folder, so a rename or an unlink in it is on disk."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text(path: Path, text: str, *, mode: int = 0o644, sync: bool = True,
               shrink_when_full: bool = False) -> None:
    """Replace ``path`` with ``text`` (UTF-8). ``shrink_when_full``: on a full disk, a
    text no longer than the file is written over the file itself (:func:`shrink`)."""
    data = text.encode("utf-8")

    def fill(out: BinaryIO) -> None:
        out.write(data)

    try:
        replace(path, fill, mode=mode, sync=sync)
    except OSError as err:
        if not shrink_when_full or err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        if not shrink(path, data):
            raise


def shrink(path: Path, data: bytes) -> bool:
    """Write ``data`` over ``path``'s own blocks, padded with spaces to the file's length,
    for a full disk (a new file needs a block; these are there). For JSON and JSON lines,
    whose readers skip trailing white space. Not atomic: only a fallback. False when
    ``data`` is longer than the file."""
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    try:
        size = os.fstat(fd).st_size
        if len(data) > size:
            return False
        os.pwrite(fd, data + b" " * (size - len(data)), 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def write_json(path: Path, value: Any, *, mode: int = 0o644, sync: bool = True,
               indent: int | None = None, shrink_when_full: bool = False) -> None:
    """Replace ``path`` with ``value`` as JSON (keys sorted, one trailing newline)."""
    write_text(path, json.dumps(value, indent=indent, sort_keys=True) + "\n", mode=mode,
               sync=sync, shrink_when_full=shrink_when_full)
