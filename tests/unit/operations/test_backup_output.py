"""`backup --output` never clobbers (issue 26, item 4): anything at the path but a regular
file or a folder is refused with exit 2 naming --output, before anything is read, written
or asked of the instance; `DIR/` makes a folder, never a file; a file is replaced by
rename, never written into."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from coldfront_launch.config.settings import Settings, settings_from_mapping
from coldfront_launch.errors import ConfigError
from coldfront_launch.exitcodes import ExitCode
from coldfront_launch.operations import archive, backup
from tests.conftest import calls
from tests.unit.operations.test_backup import make_staging, snapshot

EPOCH = 1795892547.0
NAME = "site-20261128T190227Z.tar.gz"


@pytest.fixture
def site(tmp_path: Path) -> Settings:
    """An instance with data (never read by a refusal), and a place for outputs."""
    settings = settings_from_mapping({"name": "site", "state_root": str(tmp_path / "state")})
    (settings.state_dir / "data").mkdir(parents=True)
    (settings.state_dir / "data" / "coldfront.db").write_text("db")
    (settings.state_dir / "coldfront.env").write_text("SECRET_KEY=live\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a-file").write_text("keep me")
    (out / "a-dir").mkdir()
    return settings


def _node(out: Path, kind: str) -> str:
    """Make a thing of ``kind`` in ``out``; return the --output that names it."""
    path = out / kind
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()
    elif kind == "device":
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # like /dev/null
    elif kind == "link-to-file":
        path.symlink_to(out / "a-file")
    elif kind == "link-to-dir":
        path.symlink_to(out / "a-dir")
    elif kind == "dangling-link":
        path.symlink_to(out / "nowhere")
    elif kind == "link-planted-in-dir":  # the default name, in the folder given
        (out / "a-dir" / NAME).symlink_to(out / "a-file")
        return str(out / "a-dir")
    elif kind == "dir-named-like-default":
        (out / "a-dir" / NAME).mkdir()
        return str(out / "a-dir")
    elif kind == "proc-through-link":
        path.symlink_to("/proc/self")
        return str(path / "x.tar.gz")
    return str(path)


@pytest.mark.parametrize(("kind", "message"), [
    ("fifo", "is a FIFO"),
    ("socket", "is a socket"),
    ("device", "is a device node"),
    ("link-to-file", "is a symbolic link (cf-launch does not follow it)"),
    ("link-to-dir", "is a symbolic link"),
    ("dangling-link", "is a symbolic link"),
    ("link-planted-in-dir", f"a-dir/{NAME} is a symbolic link"),
    ("dir-named-like-default", f"a-dir/{NAME} is a folder"),
    ("proc-through-link", "is under /proc"),
])
def test_anything_but_a_file_or_a_folder_is_refused(site: Settings, tmp_path: Path,
                                                    fake_apptainer: Path, kind: str,
                                                    message: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backup.time, "time", lambda: EPOCH)  # the default name: NAME
    output = _node(tmp_path / "out", kind)
    _refused(site, tmp_path, fake_apptainer, output, message)


@pytest.mark.parametrize(("output", "message"), [
    ("/dev/null", "--output: /dev/null is under /dev"),
    ("/dev/shm/x.tar.gz", "is under /dev"),
    ("/proc/self/cwd/x.tar.gz", "is under /proc"),  # it leads to a real folder: the text
    ("/sys/kernel/x.tar.gz", "is under /sys"),
    ("{out}/a-file/", "{out}/a-file/ names a folder, but {out}/a-file is a regular file"),
    ("{out}/nope/sub/", "the folder {out}/nope does not exist"),
    ("{out}/nope/x.tar.gz", "the folder {out}/nope does not exist"),
    ("{out}/a-file/x.tar.gz", "is under something that is not a folder"),
    ("{state}/coldfront.env", "is a file of instance site itself"),
    ("{state}/data/coldfront.db", "is a file of instance site itself"),
    ("", "an empty path"),
])
def test_paths_that_are_no_place_for_an_archive_are_refused(
        site: Settings, tmp_path: Path, fake_apptainer: Path, output: str,
        message: str) -> None:
    words = {"out": str(tmp_path / "out"), "state": str(site.state_dir)}
    _refused(site, tmp_path, fake_apptainer, output.format(**words), message.format(**words))


def _refused(site: Settings, tmp_path: Path, log: Path, output: str, message: str) -> None:
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError) as err:
        backup.backup(site, output)
    assert str(err.value).startswith("--output: ") and message in str(err.value), err.value
    assert err.value.exit_code == ExitCode.CONFIG
    assert calls(log) == [], "the instance is not asked anything"
    assert snapshot(tmp_path) == before, "nothing written, nothing followed"
    assert (tmp_path / "out" / "a-file").read_text() == "keep me"


def test_a_missing_folder_with_a_slash_is_made_never_a_file(site: Settings,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "out"
    target, create = backup.check_output(site, f"{out}/new/", EPOCH)
    assert (target, create) == (out / "new" / NAME, out / "new")
    assert not (out / "new").exists(), "checking makes nothing"
    assert backup.output_path(site, f"{out}/new/", EPOCH) == out / "new" / NAME
    assert stat.S_ISDIR((out / "new").lstat().st_mode)
    assert stat.S_IMODE((out / "new").stat().st_mode) == 0o700
    # Without the slash, a missing name is the archive itself.
    assert backup.output_path(site, str(out / "plain"), EPOCH) == out / "plain"
    assert not (out / "plain").exists()
    # An existing folder, with or without the slash: the default name inside.
    assert backup.output_path(site, f"{out}/a-dir/", EPOCH) == out / "a-dir" / NAME
    assert backup.output_path(site, out / "a-dir", EPOCH) == out / "a-dir" / NAME


def test_an_existing_file_is_replaced_by_rename(site: Settings, tmp_path: Path) -> None:
    """The old file's inode is left as it was (a hard link to it keeps its bytes): the
    archive is a new file renamed over the name, never written through it."""
    out = tmp_path / "out"
    os.link(out / "a-file", out / "hard-link")
    target = backup.output_path(site, str(out / "a-file"), EPOCH)
    assert target == out / "a-file"
    staging = tmp_path / "staging"
    archive.write(target, make_staging(staging), staging)
    assert (out / "hard-link").read_text() == "keep me"
    assert archive.verify(out / "a-file").database == "data/coldfront.db"
    assert stat.S_IMODE((out / "a-file").stat().st_mode) == 0o600
    assert sorted(p.name for p in out.iterdir()) == ["a-dir", "a-file", "hard-link"]
    # A backup in the instance's own backups/ folder may be replaced too.
    (site.state_dir / "backups").mkdir()
    (site.state_dir / "backups" / "x.tar.gz").write_text("old")
    assert backup.check_output(site, str(site.state_dir / "backups" / "x.tar.gz"),
                               EPOCH)[0] == site.state_dir / "backups" / "x.tar.gz"


def test_the_default_folder_is_checked_too(site: Settings, tmp_path: Path) -> None:
    (site.state_dir / "backups").symlink_to(tmp_path / "out")
    with pytest.raises(ConfigError, match="backups is a symbolic link"):
        backup.check_output(site, None, EPOCH)
