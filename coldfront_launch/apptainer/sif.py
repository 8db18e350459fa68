"""The SIF global header (sylabs/sif v2, ``pkg/sif/sif.go``: ``header``), read and checked:
is a file an image Apptainer can boot, whole?

The header is 128 bytes, little-endian: a 32-byte launch script, ``SIF_MAGIC\\0`` at byte
32, a 3-byte version and a 3-byte architecture, a 16-byte UUID, then eight int64s:
created, modified, descriptors free, descriptors total, descriptors offset, descriptors
size, data offset, data size. A file is whole when it reaches past the descriptors and
the data its header describes. Only the header is read, never more.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

#: The global header: launch, magic, version, arch, uuid, then the eight int64s.
HEADER = struct.Struct("<32s10s3s3s16s8q")
MAGIC = b"SIF_MAGIC\x00"
MAGIC_AT = 32


class NotSif(ValueError):
    """The file is not a (whole) SIF image; ``str()`` says why, without the path."""


@dataclass(frozen=True)
class Header:
    """What the global header says about the file's layout."""

    version: str
    arch: str
    descriptors_offset: int
    descriptors_size: int
    data_offset: int
    data_size: int

    @property
    def minimum_size(self) -> int:
        """The fewest bytes the file must hold: the header, descriptors and data."""
        return max(HEADER.size, self.descriptors_offset + self.descriptors_size,
                   self.data_offset + self.data_size)


def parse(head: bytes) -> Header:
    """The header in ``head`` (the file's first bytes); :class:`NotSif` if there is none."""
    if head[MAGIC_AT:MAGIC_AT + len(MAGIC)] != MAGIC:
        if head and b"\x00" not in head:
            raise NotSif(f"no SIF magic number at byte {MAGIC_AT}; it holds text: a "
                         "definition file?")
        if len(head) >= HEADER.size:
            raise NotSif(f"no SIF magic number at byte {MAGIC_AT}")
    if len(head) < HEADER.size:
        held = "1 byte" if len(head) == 1 else f"{len(head)} bytes"
        raise NotSif(f"{held}, shorter than the {HEADER.size}-byte SIF header")
    _launch, _magic, version, arch, _uuid, *numbers = HEADER.unpack_from(head)
    offsets = numbers[4:]
    if any(n < 0 for n in offsets):
        raise NotSif("its header holds a negative offset or size")
    return Header(_text(version), _text(arch), *offsets)


def read_header(path: Path) -> tuple[Header, int]:
    """The header of the regular file at ``path`` (links followed) and the file's size.
    :class:`NotSif` for anything else; ``OSError`` if it cannot be opened."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise NotSif("not a regular file")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotSif("not a regular file")
        head = b""
        while len(head) < HEADER.size:
            chunk = os.read(fd, HEADER.size - len(head))
            if not chunk:
                break
            head += chunk
    finally:
        os.close(fd)
    return parse(head), info.st_size


def problem(path: Path) -> str:
    """Why ``path`` is not a whole SIF image ("" when it is), for messages that name it."""
    try:
        header, size = read_header(path)
    except FileNotFoundError:
        return f"{path} does not exist"
    except OSError as err:
        return f"{path} cannot be read: {err.strerror}"
    except NotSif as err:
        return f"{path} is not a SIF image ({err})"
    if size < header.minimum_size:
        return f"{path} is truncated: {size} bytes, its header says at least " \
               f"{header.minimum_size}"
    return ""


def _text(field: bytes) -> str:
    return field.split(b"\x00", 1)[0].decode("ascii", "replace")
