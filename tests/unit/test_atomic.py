"""coldfront_launch.atomic: the one writer of files replaced in place."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from coldfront_launch import atomic


def test_the_mode_holds_from_the_first_byte_whatever_the_umask(tmp_path: Path) -> None:
    target = tmp_path / "b.tar.gz"
    target.write_text("an older backup, world-readable")
    target.chmod(0o644)
    seen: list[int] = []

    def fill(out: Any) -> None:
        temp = [p for p in tmp_path.iterdir() if p.name.endswith(atomic.SUFFIX)]
        assert len(temp) == 1
        seen.append(temp[0].stat().st_mode)
        out.write(b"new")

    old = os.umask(0)
    try:
        atomic.replace(target, fill, mode=0o600)
    finally:
        os.umask(old)
    assert seen and all(stat.S_IMODE(m) == 0o600 for m in seen)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["b.tar.gz"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "b.tar.gz"
    target.write_bytes(b"old")

    def fill(out: Any) -> None:
        out.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic.replace(target, fill, mode=0o600)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["b.tar.gz"]


def test_a_link_at_the_target_is_replaced_not_written_through(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("not yours")
    target = tmp_path / "launch.json"
    target.symlink_to(elsewhere)
    atomic.write_json(target, {"b": 1, "a": [2]})
    assert elsewhere.read_text() == "not yours"
    assert not target.is_symlink() and target.read_text() == '{"a": [2], "b": 1}\n'
    assert json.loads(target.read_text()) == {"a": [2], "b": 1}


def test_text_and_mode(tmp_path: Path) -> None:
    target = tmp_path / "coldfront.env"
    atomic.write_text(target, "SECRET_KEY=x\n", mode=0o600, sync=False)
    assert target.read_text() == "SECRET_KEY=x\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    atomic.write_text(target, "SECRET_KEY=y\n", mode=0o600)
    assert target.read_text() == "SECRET_KEY=y\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coldfront.env"]


def test_only_a_regular_file_or_a_link_is_ever_replaced(tmp_path: Path) -> None:
    """A device, FIFO, socket or folder where cf-launch writes is refused, untouched; a
    link is replaced itself, never what it points to (issue 26, item 4)."""
    import socket

    from coldfront_launch.errors import HostChangeError
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    folder = tmp_path / "folder"
    folder.mkdir()
    sock = tmp_path / "sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock))
    targets = [fifo, folder, sock]
    if os.geteuid() == 0:
        device = tmp_path / "null"
        os.mknod(device, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        targets.append(device)
    for target in targets:
        before = target.lstat()
        with pytest.raises(HostChangeError, match="not a regular file"):
            atomic.write_text(target, "secret\n")
        assert target.lstat().st_mode == before.st_mode and target.lstat().st_ino == before.st_ino
    server.close()
    assert not list(tmp_path.glob(f"*{atomic.SUFFIX}")), "no temporary left"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("theirs\n")
    link = tmp_path / "link"
    link.symlink_to(elsewhere)
    atomic.write_text(link, "ours\n")
    assert elsewhere.read_text() == "theirs\n" and not link.is_symlink()
    assert link.read_text() == "ours\n"
