"""`cf-launch restore` of archives that are not what `cf-launch backup` writes (issue 26,
item 5): links followed where they lead, hop by hop; modes with group or world write;
members that do not make a backup (a gzip bomb, random files, a non-database where the
database should be, an oversized manifest). Each is exit 11 with a one-line cause, and
the instance's folder is byte-identical afterwards. Archives are built with tarfile."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from coldfront_launch.config.settings import Settings, settings_from_mapping
from coldfront_launch.errors import ArchiveError
from coldfront_launch.exitcodes import ExitCode
from coldfront_launch.operations import archive, restore, sqlitedb
from tests.unit.operations.test_backup import make_staging, snapshot

pytestmark = pytest.mark.usefixtures("fake_apptainer")  # apptainer.find: nothing runs


def member(name: str, data: bytes = b"", mode: int = 0o644, kind: bytes = tarfile.REGTYPE
           ) -> tuple[tarfile.TarInfo, bytes]:
    item = tarfile.TarInfo(name)
    item.type, item.mode, item.size = kind, mode, len(data) if kind == tarfile.REGTYPE else 0
    return item, data


def build(target: Path, members: list[tuple[tarfile.TarInfo, bytes]],
          trailer: bytes = b"") -> Path:
    """A .tar.gz of ``members`` in order (``trailer``: bytes after tar's end, in gzip)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for item, data in members:
            tar.addfile(item, io.BytesIO(data) if item.isreg() else None)
    target.write_bytes(gzip.compress(raw.getvalue() + trailer, 1))
    return target


def backup_like(tmp_path: Path, edit: Callable[[dict[str, Any], dict[str, bytes]], None]
                | None = None, modes: dict[str, int] | None = None,
                trailer: bytes = b"") -> Path:
    """An archive laid out as `cf-launch backup` writes it, from a fresh staging folder;
    ``edit`` changes its manifest and member contents first (sizes and sha256 follow)."""
    here = Path(tempfile.mkdtemp(dir=tmp_path))
    staging = here / "staging"
    manifest = make_staging(staging)
    files = {name: (staging / name).read_bytes() for name, raw in manifest["members"].items()
             if raw["type"] == "file"}
    if edit is not None:
        edit(manifest, files)
    for name, data in files.items():
        manifest["members"][name].update(size=len(data),
                                         sha256=hashlib.sha256(data).hexdigest())
    members = [member(archive.MANIFEST, archive.manifest_json(manifest), 0o600)]
    for name, raw in sorted(manifest["members"].items()):
        mode = (modes or {}).get(name, int(raw["mode"], 8) & 0o755)
        members.append(member(name, files[name], mode) if raw["type"] == "file"
                       else member(name, mode=mode, kind=tarfile.DIRTYPE))
    return build(here / "bad.tar.gz", members, trailer)


@pytest.fixture
def site(tmp_path: Path) -> Settings:
    """An instance with live data, stopped."""
    settings = settings_from_mapping({"name": "site", "state_root": str(tmp_path / "state")})
    live = settings.state_dir
    (live / "data").mkdir(parents=True)
    (live / "data" / "coldfront.db").write_bytes(b"the live database")
    (live / "coldfront.env").write_text("SECRET_KEY=live\n")
    (live / "letsencrypt" / "live").mkdir(parents=True)
    (live / "letsencrypt" / "live" / "cert.pem").write_text("LIVE CERT")
    return settings


def refused_by_restore(settings: Settings, path: Path, message: str) -> None:
    """restore refuses ``path`` with exit 11 and one line holding ``message``, and the
    state folder (data, env file, certificates, modes, times) is as it was."""
    before = snapshot(settings.state_root)
    with pytest.raises(ArchiveError) as err:
        restore.restore(settings, path, force=True)
    assert message in str(err.value), str(err.value)
    assert "\n" not in str(err.value)
    assert err.value.exit_code == ExitCode.BAD_ARCHIVE
    assert err.value.hint
    assert snapshot(settings.state_root) == before


# --- (a) links, followed where they lead -------------------------------------------------

def _escape_through_a_link(manifest: dict[str, Any], _files: dict[str, bytes]) -> None:
    # `up` stays inside (letsencrypt/archive); `esc` is inside by its text
    # (letsencrypt/live/site/up/../.. is letsencrypt/live), but `..` after `up` goes up
    # from letsencrypt/archive: to the state folder, then its coldfront.env.
    manifest["links"] = {"letsencrypt/live/site/up": "../../archive",
                         "letsencrypt/live/site/esc": "up/../../coldfront.env"}


def test_a_link_that_leaves_through_another_link_is_refused(site: Settings,
                                                            tmp_path: Path) -> None:
    bad = backup_like(tmp_path, _escape_through_a_link)
    refused_by_restore(site, bad, "link letsencrypt/live/site/esc -> up/../../coldfront.env: "
                       "it leaves letsencrypt/ through the link letsencrypt/live/site/up")


def test_the_kernel_agrees_that_such_a_link_leaves(tmp_path: Path) -> None:
    """The case above is real: on disk, the link leads to the env file beside
    letsencrypt/, though the old check by its text alone said it stays inside."""
    root = tmp_path / "tree"
    (root / "letsencrypt/live/site").mkdir(parents=True)
    (root / "letsencrypt/archive").mkdir()
    (root / "coldfront.env").write_text("SECRET_KEY=x")
    os.symlink("../../archive", root / "letsencrypt/live/site/up")
    os.symlink("up/../../coldfront.env", root / "letsencrypt/live/site/esc")
    assert (root / "letsencrypt/live/site/esc").read_text() == "SECRET_KEY=x"
    import posixpath
    assert posixpath.normpath("letsencrypt/live/site/up/../../coldfront.env") \
        .startswith("letsencrypt/")


@pytest.mark.parametrize(("links", "message"), [
    ({"letsencrypt/live/site/a": "b", "letsencrypt/live/site/b": "a"},
     "more than 40 links deep"),
    ({"letsencrypt/live/site/a": "../../archive/site/cert1.pem/../../../.."},
     "goes through the file letsencrypt/archive/site/cert1.pem"),
    ({"letsencrypt/live/site/a": "../.."}, "leads to letsencrypt/ itself"),
    ({"letsencrypt/live/site/a": "../../archive", "letsencrypt/live/site/b": "a/../../.."},
     "it leaves letsencrypt/ through the link letsencrypt/live/site/a"),
])
def test_links_are_resolved_hop_by_hop(site: Settings, tmp_path: Path,
                                       links: dict[str, str], message: str) -> None:
    bad = backup_like(tmp_path, lambda manifest, _files: manifest.update(links=links))
    refused_by_restore(site, bad, message)


def test_whatever_the_resolver_accepts_the_kernel_keeps_inside(tmp_path: Path) -> None:
    """Random link sets, made on disk: every link the resolver accepts really resolves
    inside letsencrypt/ (the resolver may be stricter, never looser)."""
    import random

    rng = random.Random(26)
    folders = ["letsencrypt", "letsencrypt/a", "letsencrypt/a/b", "letsencrypt/c"]
    pieces = ["..", ".", "a", "b", "c", "l0", "l1", "l2", "f.pem", "x"]
    counts = {True: 0, False: 0}
    for trial in range(300):
        root = tmp_path / f"t{trial}"
        for folder in folders:
            (root / folder).mkdir(parents=True)
        (root / "letsencrypt/a/f.pem").write_text("F")
        kinds = {name: "dir" for name in folders} | {"letsencrypt/a/f.pem": "file"}
        links = {f"{rng.choice(folders)}/l{i}": "/".join(rng.choices(pieces,
                                                                     k=rng.randint(1, 5)))
                 for i in range(3)}
        for name, target in links.items():
            os.symlink(target, root / name)
        inside = os.path.realpath(root / "letsencrypt") + "/"
        for name in links:
            accepted = archive.link_problem(name, links, kinds) == ""
            counts[accepted] += 1
            if accepted:
                assert os.path.realpath(root / name).startswith(inside), (links, name)
    assert counts[True] > 100 and counts[False] > 50, counts


# --- (b) modes with group or world write ---------------------------------------------------

@pytest.mark.parametrize(("name", "mode"), [
    ("letsencrypt/archive/site/cert1.pem", "0666"),
    ("letsencrypt/live", "0777"),
    ("letsencrypt/archive", "0775"),
    ("coldfront.env", "0620"),
])
def test_modes_with_group_or_world_write_are_refused(site: Settings, tmp_path: Path,
                                                     name: str, mode: str) -> None:
    def edit(manifest: dict[str, Any], _files: dict[str, bytes]) -> None:
        manifest["members"][name]["mode"] = mode
    refused_by_restore(site, backup_like(tmp_path, edit),
                       f"{name}: mode {mode} lets group or others write it")


def test_a_member_whose_own_mode_has_world_write_is_refused(site: Settings,
                                                            tmp_path: Path) -> None:
    """The manifest says 0644; the member's tar header says 0777."""
    bad = backup_like(tmp_path, modes={"letsencrypt/archive/site/cert1.pem": 0o777})
    refused_by_restore(site, bad, "letsencrypt/archive/site/cert1.pem has mode 0777 "
                       "(writable by group or others")


def test_backup_drops_group_and_world_write(tmp_path: Path) -> None:
    """What restore refuses, backup never writes: a live 0666 certificate is kept 0644."""
    from coldfront_launch.operations.backup import _copy_certs

    certs = tmp_path / "letsencrypt"
    (certs / "live").mkdir(parents=True)
    (certs / "live" / "cert.pem").write_text("C")
    (certs / "live" / "cert.pem").chmod(0o666)
    (certs / "live").chmod(0o777)
    (tmp_path / "staging").mkdir()
    entries, _links = _copy_certs(certs, tmp_path / "staging")
    modes = {e.name: e.mode for e in entries}
    assert modes["letsencrypt/live/cert.pem"] == 0o644
    assert modes["letsencrypt/live"] == 0o755


# --- (c) members that do not make a cf-launch backup: exit 11, never 1 ------------------

def _db(manifest: dict[str, Any], files: dict[str, bytes], data: bytes) -> None:
    files["data/coldfront.db"] = data


def test_a_gzip_bomb_where_the_database_should_be_is_refused_early(site: Settings,
                                                                   tmp_path: Path) -> None:
    bomb = b"\0" * (64 << 20)  # 64 MiB of zeros, about 64 KB compressed
    bad = backup_like(tmp_path, lambda m, f: _db(m, f, bomb))
    assert bad.stat().st_size < 1 << 20
    refused_by_restore(site, bad, "bad.tar.gz: data/coldfront.db is not a SQLite database "
                       "(no SQLite header)")


@pytest.mark.parametrize(("data", "message"), [
    (b"just some text, not a database\n", "not a SQLite database (no SQLite header)"),
    (b"SQLite format 3\0" + b"\xff" * 84, "its header is damaged"),
])
def test_a_non_database_where_the_database_should_be_is_refused(site: Settings,
                                                                tmp_path: Path, data: bytes,
                                                                message: str) -> None:
    refused_by_restore(site, backup_like(tmp_path, lambda m, f: _db(m, f, data)), message)


def test_a_database_cut_short_is_refused(site: Settings, tmp_path: Path) -> None:
    """Its header counts more pages than the file holds."""
    def cut(manifest: dict[str, Any], files: dict[str, bytes]) -> None:
        db = files["data/coldfront.db"]
        page = int.from_bytes(db[16:18], "big")
        assert len(db) > page
        files["data/coldfront.db"] = db[:page]
    refused_by_restore(site, backup_like(tmp_path, cut),
                       "is not the SQLite database its header describes")


def test_a_tar_of_random_files_is_refused(site: Settings, tmp_path: Path) -> None:
    bad = build(tmp_path / "random.tar.gz", [member("notes.txt", b"hello"),
                                             member("coldfront.env", b"SECRET_KEY=x\n")])
    refused_by_restore(site, bad, "random.tar.gz is not a cf-launch backup (its first "
                       "member is not manifest.json)")


def test_an_oversized_manifest_is_reported_as_oversized(site: Settings,
                                                        tmp_path: Path) -> None:
    big = b" " * (archive.MAX_MANIFEST + 1)
    bad = build(tmp_path / "big.tar.gz", [member(archive.MANIFEST, big)])
    refused_by_restore(site, bad, f"big.tar.gz: its manifest.json is {len(big)} bytes, "
                       "more than the 4 MiB a cf-launch manifest may be")


def test_a_manifest_nested_too_deep_is_refused(site: Settings, tmp_path: Path) -> None:
    deep = b"[" * 100000 + b"]" * 100000
    bad = build(tmp_path / "deep.tar.gz", [member(archive.MANIFEST, deep)])
    refused_by_restore(site, bad, "its manifest.json is not valid JSON")


def test_data_after_the_last_member_is_refused(site: Settings, tmp_path: Path) -> None:
    bad = backup_like(tmp_path, trailer=b"\0" * 1024 + b"hidden payload")
    refused_by_restore(site, bad, "bad.tar.gz holds data after its last member")
    assert archive.verify(backup_like(tmp_path, trailer=b"\0" * 4096)).database


def test_oversized_env_and_certificate_files_are_refused(site: Settings,
                                                         tmp_path: Path) -> None:
    def big_env(manifest: dict[str, Any], files: dict[str, bytes]) -> None:
        files["coldfront.env"] += b"#" * archive.MAX_ENV
    refused_by_restore(site, backup_like(tmp_path, big_env), "coldfront.env: 1048")

    def big_cert(manifest: dict[str, Any], files: dict[str, bytes]) -> None:
        files["letsencrypt/archive/site/cert1.pem"] = b"C" * (archive.MAX_CERT_FILE + 1)
    refused_by_restore(site, backup_like(tmp_path, big_cert),
                       "letsencrypt/archive/site/cert1.pem: 16777217 bytes is more than such "
                       "a file may be (16 MiB)")


def test_an_env_file_of_another_database_is_exit_11(site: Settings, tmp_path: Path) -> None:
    def pg(manifest: dict[str, Any], files: dict[str, bytes]) -> None:
        files["coldfront.env"] = b"SECRET_KEY=x\nDB_URL=postgres://cf@db/coldfront\n"
    refused_by_restore(site, backup_like(tmp_path, pg), "DB_URL uses 'postgres', not SQLite")


@pytest.mark.parametrize("kind", ["folder", "fifo", "device"])
def test_an_archive_path_that_is_not_a_file_is_refused_without_reading(
        site: Settings, tmp_path: Path, kind: str) -> None:
    path = tmp_path / kind
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path = Path("/dev/zero")
    done: list[BaseException] = []

    def run() -> None:
        try:
            refused_by_restore(site, path, "not a backup file")
        except BaseException as err:  # noqa: BLE001 - reported below
            done.append(err)
        else:
            done.append(AssertionError("ok"))
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(20)
    if worker.is_alive() and kind == "fifo":
        with open(path, "wb"):  # unblock the reader before failing
            pass
    assert not worker.is_alive(), "restore blocked on it"
    assert str(done[0]) == "ok", done[0]


def test_random_damage_is_always_exit_11(tmp_path: Path) -> None:
    """Bytes flipped, cut or appended anywhere in a good archive: ArchiveError, nothing
    else (never exit 1 or 70)."""
    import random

    staging = tmp_path / "s"
    good = tmp_path / "good.tar.gz"
    archive.write(good, make_staging(staging), staging)
    raw = good.read_bytes()
    tar = gzip.decompress(raw)
    rng = random.Random(5)
    for i in range(150):
        source = bytearray(tar if i % 2 else raw)
        for _ in range(rng.randint(1, 4)):
            source[rng.randrange(len(source))] = rng.randrange(256)
        if i % 5 == 0:
            source = source[:rng.randrange(len(source))]
        data = gzip.compress(bytes(source), 1) if i % 2 else bytes(source)
        (tmp_path / "x.tar.gz").write_bytes(data)
        try:
            archive.verify(tmp_path / "x.tar.gz")
        except ArchiveError:
            continue


# --- the integrity check's answer for a file SQLite cannot read ---------------------------

def test_the_integrity_check_answers_for_a_non_database(tmp_path: Path) -> None:
    """SQLite's child (run here with the host's Python, as this user) says what is wrong
    with a file that is not a database, as an answer restore turns into exit 11."""
    (tmp_path / "coldfront.db").write_bytes(b"SQLite format 3\0" + b"x" * 4000)
    child = sqlitedb.CHILD.replace(repr(sqlitedb.CONTAINER_DATA), repr(str(tmp_path)))
    result = subprocess.run([sys.executable, "-I", "-c", child, "check", "coldfront.db",
                             str(os.getuid()), str(os.getgid())], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stderr.splitlines()[-1])["integrity_check"]
    assert answer.startswith("not a usable SQLite database: "), answer
    con = sqlite3.connect(tmp_path / "ok.db")
    con.execute("CREATE TABLE t (x)")
    con.close()
    result = subprocess.run([sys.executable, "-I", "-c", child, "check", "ok.db",
                             str(os.getuid()), str(os.getgid())], capture_output=True,
                            text=True, timeout=60, check=False)
    assert json.loads(result.stderr.splitlines()[-1])["integrity_check"] == "ok"


def test_cli_restore_of_a_bomb_is_exit_11_not_1(site: Settings, tmp_path: Path) -> None:
    """Through the CLI: the exit code, one error line (no hint to read the logs), and
    the data folder byte-identical."""
    from tests.unit.operations.test_backup import cf

    bad = backup_like(tmp_path, lambda m, f: _db(m, f, b"\0" * (8 << 20)))
    before = snapshot(site.state_root)
    result = cf(["restore", str(bad), "--name", "site", "--force"], tmp_path)
    assert result.returncode == ExitCode.BAD_ARCHIVE, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("cf-launch: ")]
    assert errors == ["cf-launch: error: bad.tar.gz: data/coldfront.db is not a SQLite "
                      "database (no SQLite header)"]
    assert "hint: nothing was changed" in result.stderr and "logs" not in result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(site.state_root) == before
