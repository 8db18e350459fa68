"""The smallest file cf-launch takes for a SIF image, for tests that never boot one (the
fake ``apptainer`` builds these too): a global header as sylabs/sif writes it, no
descriptors, and ``payload`` as the data.

Standard library only: the fake ``apptainer`` loads this file by its path.
"""

from __future__ import annotations

import struct
import uuid
from pathlib import Path

#: The launch script Apptainer writes into byte 0 of every image.
LAUNCH = b"#!/usr/bin/env run-singularity\n"
_HEADER = struct.Struct("<32s10s3s3s16s8q")


def sif_bytes(payload: bytes = b"") -> bytes:
    """A whole SIF file: the 128-byte header, then ``payload`` as its data."""
    offset = _HEADER.size
    header = _HEADER.pack(LAUNCH, b"SIF_MAGIC\x00", b"01\x00", b"02\x00",
                          uuid.uuid4().bytes, 0, 0, 0, 0, offset, 0, offset, len(payload))
    return header + payload


def write_minimal_sif(path: Path, payload: bytes = b"") -> Path:
    """Write :func:`sif_bytes` to ``path``; return ``path``."""
    Path(path).write_bytes(sif_bytes(payload))
    return Path(path)


def payload(path: Path) -> bytes:
    """The data of a file :func:`write_minimal_sif` wrote (what the fake build put in)."""
    raw = Path(path).read_bytes()
    offset, size = struct.unpack_from("<2q", raw, 112)
    return raw[offset:offset + size]
