"""The SIF header reader (issue 26, item 3): the layout of sylabs/sif's global header, a
definition file or a truncated image refused, and never more than the header read."""

from __future__ import annotations

import os
import struct
import threading
from pathlib import Path

import pytest

from coldfront_launch.apptainer import sif
from coldfront_launch.testing.sif import payload, sif_bytes, write_minimal_sif

#: A real image from the test host's build (tests/host/provision.sh), when there is one:
#: only its first 128 bytes and its size are read.
TESTHOST_LAYERS = Path("/var/cache/cf-launch-testhost/rootfs/var/cache/cf-launch/layers")


def _header(magic: bytes = b"SIF_MAGIC\x00", descriptors: tuple[int, int] = (4096, 585),
            data: tuple[int, int] = (4681, 100)) -> bytes:
    """A header packed field by field, as sylabs/sif's ``header`` struct lays it out."""
    return (b"#!/usr/bin/env run-singularity\n".ljust(32, b"\x00") + magic + b"01\x00"
            + b"02\x00" + bytes(range(16))
            + struct.pack("<8q", 1, 2, 47, 48, *descriptors, *data))


def test_the_layout_is_sylabs_sifs() -> None:
    head = _header()
    assert len(head) == sif.HEADER.size == 128
    assert head[32:42] == sif.MAGIC
    header = sif.parse(head)
    assert (header.version, header.arch) == ("01", "02")
    assert (header.descriptors_offset, header.descriptors_size) == (4096, 585)
    assert (header.data_offset, header.data_size) == (4681, 100)
    assert header.minimum_size == 4781


def test_a_whole_image_passes_and_a_truncated_one_is_named(tmp_path: Path) -> None:
    image = tmp_path / "c.sif"
    image.write_bytes(_header() + b"\x00" * (4781 - 128))
    assert sif.problem(image) == ""
    image.write_bytes(_header() + b"\x00" * 1000)
    assert sif.problem(image) == f"{image} is truncated: 1128 bytes, its header says at " \
                                 "least 4781"
    image.write_bytes(_header(descriptors=(4096, 100_000)) + b"\x00" * (4781 - 128))
    assert "its header says at least 104096" in sif.problem(image), "the descriptors count too"


def test_a_definition_file_is_not_an_image(tmp_path: Path) -> None:
    definition = tmp_path / "coldfront.def"
    definition.write_text("Bootstrap: localimage\nFrom: base.sif\n\n%post\n" + "  true\n" * 30)
    assert sif.problem(definition) == (f"{definition} is not a SIF image (no SIF magic number "
                                       "at byte 32; it holds text: a definition file?)")


@pytest.mark.parametrize(("content", "why"), [
    (b"", "0 bytes, shorter than the 128-byte SIF header"),
    (b"\x00sif", "4 bytes, shorter than the 128-byte SIF header"),
    (b"sif", "no SIF magic number at byte 32; it holds text: a definition file?"),
    (sif_bytes()[:100], "100 bytes, shorter than the 128-byte SIF header"),
    (_header(magic=b"SIF_MAGIX\x00"), "no SIF magic number at byte 32"),
    (_header(data=(-1, 10)), "its header holds a negative offset or size"),
], ids=["empty", "short-binary", "short-text", "header-cut", "bad-magic", "negative"])
def test_not_an_image(tmp_path: Path, content: bytes, why: str) -> None:
    image = tmp_path / "c.sif"
    image.write_bytes(content)
    assert sif.problem(image) == f"{image} is not a SIF image ({why})"


def test_only_regular_files_and_a_fifo_never_hangs(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.sif"
    os.mkfifo(fifo)
    found: list[str] = []
    reader = threading.Thread(target=lambda: found.append(sif.problem(fifo)), daemon=True)
    reader.start()
    reader.join(5)
    assert found == [f"{fifo} is not a SIF image (not a regular file)"]
    assert sif.problem(tmp_path) == f"{tmp_path} is not a SIF image (not a regular file)"
    assert sif.problem(Path("/dev/zero")) == "/dev/zero is not a SIF image (not a regular file)"
    assert sif.problem(tmp_path / "none.sif") == f"{tmp_path / 'none.sif'} does not exist"
    link = tmp_path / "link.sif"
    link.symlink_to(write_minimal_sif(tmp_path / "real.sif"))
    assert sif.problem(link) == "", "a link (images/<top>.sif) leads to the image"


def test_reads_the_header_and_nothing_more(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    image = write_minimal_sif(tmp_path / "c.sif", b"x" * 1_000_000)
    asked: list[int] = []
    real_read = os.read

    def read(fd: int, size: int) -> bytes:
        asked.append(size)
        return real_read(fd, size)
    monkeypatch.setattr(os, "read", read)
    assert sif.problem(image) == ""
    assert sum(asked) <= 128


def test_the_test_kits_minimal_image_is_whole(tmp_path: Path) -> None:
    image = write_minimal_sif(tmp_path / "c.sif", b'{"a": 1}')
    assert sif.problem(image) == "" and payload(image) == b'{"a": 1}'
    image.write_bytes(sif_bytes(b"12345")[:-1])
    assert "is truncated: 132 bytes, its header says at least 133" in sif.problem(image)


@pytest.mark.skipif(not any(TESTHOST_LAYERS.glob("*.sif")) if TESTHOST_LAYERS.is_dir()
                    else True, reason="no image built by the test host")
def test_an_image_apptainer_built() -> None:
    image = sorted(TESTHOST_LAYERS.glob("*.sif"))[0]
    header, size = sif.read_header(image)
    assert header.version == "01" and header.descriptors_offset >= 128
    assert size >= header.minimum_size and sif.problem(image) == ""
