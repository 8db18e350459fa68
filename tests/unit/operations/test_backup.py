"""Backup archives: written 0600 and atomically; read only when every member is what the
manifest says (names, types, checksums); refusals change nothing. The SQLite copy itself
runs in the container: tests/integration/test_backup_e2e.py."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import stat
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from coldfront_launch.coldfront import appdata
from coldfront_launch.errors import ArchiveError, UnsupportedDatabaseError
from coldfront_launch.exitcodes import ExitCode
from coldfront_launch.operations import archive


def make_staging(root: Path, env: str | None = None) -> dict[str, Any]:
    """A staging folder as backup makes it, and its manifest."""
    (root / "data").mkdir(parents=True)
    (root / "coldfront.env").write_text(env or appdata.env_text("k" * 20))
    con = sqlite3.connect(root / "data/coldfront.db")
    con.execute("CREATE TABLE t (x)")
    con.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100)])
    con.commit()
    con.close()
    (root / "letsencrypt/archive/site").mkdir(parents=True)
    (root / "letsencrypt/live/site").mkdir(parents=True)
    (root / "letsencrypt/archive/site/cert1.pem").write_text("CERT")
    entries = [archive.Entry("data", "dir", 0o700),
               archive.Entry("letsencrypt", "dir", 0o755),
               archive.Entry("letsencrypt/archive", "dir", 0o755),
               archive.Entry("letsencrypt/archive/site", "dir", 0o755),
               archive.Entry("letsencrypt/live", "dir", 0o755),
               archive.Entry("letsencrypt/live/site", "dir", 0o755)]
    for name in ("coldfront.env", "data/coldfront.db", "letsencrypt/archive/site/cert1.pem"):
        entries.append(archive.file_entry(name, root / name))
    return {"format": archive.FORMAT, "format_version": archive.FORMAT_VERSION,
            "created_epoch": 1700000000, "instance": "x",
            "database": {"engine": "sqlite", "member": "data/coldfront.db"},
            "members": {e.name: e.to_json() for e in sorted(entries, key=lambda e: e.name)},
            "links": {"letsencrypt/live/site/cert.pem": "../../archive/site/cert1.pem"}}


@pytest.fixture
def good(tmp_path: Path) -> Path:
    staging = tmp_path / "staging"
    manifest = make_staging(staging)
    target = tmp_path / "good.tar.gz"
    archive.write(target, manifest, staging)
    return target


def repack(source: Path, target: Path, change: dict[str, bytes | None] | None = None,
           extra: list[tuple[tarfile.TarInfo, bytes]] | None = None) -> Path:
    """Copy ``source`` member by member: replace contents (None: drop), then add ``extra``."""
    change = change or {}
    with tarfile.open(source, "r:gz") as old, tarfile.open(target, "w:gz") as new:
        for member in old.getmembers():
            data = old.extractfile(member).read() if member.isreg() else b""  # type: ignore[union-attr]
            if member.name in change:
                replaced = change[member.name]
                if replaced is None:
                    continue
                data, member.size = replaced, len(replaced)
            new.addfile(member, io.BytesIO(data) if member.isreg() else None)
        for member, data in extra or []:
            member.size = len(data) if member.isreg() else 0
            new.addfile(member, io.BytesIO(data) if member.isreg() else None)
    return target


def manifest_of(path: Path) -> dict[str, Any]:
    with tarfile.open(path, "r:gz") as tar:
        return json.loads(tar.extractfile(archive.MANIFEST).read())  # type: ignore[union-attr]


def refused(path: Path, message: str) -> None:
    with pytest.raises(ArchiveError) as err:
        archive.verify(path)
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    assert err.value.exit_code == ExitCode.BAD_ARCHIVE


def test_round_trip_keeps_files_modes_and_links(good: Path, tmp_path: Path) -> None:
    contents = archive.verify(good)
    assert contents.database == "data/coldfront.db"
    dest = tmp_path / "out"
    dest.mkdir()
    archive.extract(good, dest)
    assert (dest / "letsencrypt/live/site/cert.pem").read_text() == "CERT"
    assert os.readlink(dest / "letsencrypt/live/site/cert.pem") == "../../archive/site/cert1.pem"
    assert (dest / "coldfront.env").stat().st_mode & 0o777 == 0o644  # restore makes it 0600
    assert (dest / "data").stat().st_mode & 0o777 == 0o700
    con = sqlite3.connect(dest / "data/coldfront.db")
    assert con.execute("SELECT count(*) FROM t").fetchone() == (100,)
    con.close()
    with tarfile.open(good, "r:gz") as tar:
        names = tar.getnames()
    assert names[0] == archive.MANIFEST and "letsencrypt/live/site/cert.pem" not in names


def test_a_member_changed_after_the_manifest_is_refused(good: Path, tmp_path: Path) -> None:
    with tarfile.open(good, "r:gz") as tar:
        db = bytearray(tar.extractfile("data/coldfront.db").read())  # type: ignore[union-attr]
    db[500] ^= 0xFF
    refused(repack(good, tmp_path / "x.tar.gz", {"data/coldfront.db": bytes(db)}),
            "data/coldfront.db does not match its checksum")


def test_a_wrong_checksum_in_the_manifest_is_refused(good: Path, tmp_path: Path) -> None:
    manifest = manifest_of(good)
    manifest["members"]["letsencrypt/archive/site/cert1.pem"]["sha256"] = "a" * 64
    refused(repack(good, tmp_path / "x.tar.gz", {"manifest.json": json.dumps(manifest).encode()}),
            "letsencrypt/archive/site/cert1.pem does not match its checksum")


@pytest.mark.parametrize(("name", "message"), [
    ("../evil", "leaves the folder"),
    ("letsencrypt/../../evil", "leaves the folder"),
    ("/etc/cron.d/evil", "an absolute path"),
    ("letsencrypt/./x", "canonical"),
    ("letsencrypt//x", "canonical"),
    ("letsencrypt/new.pem", "unexpected member"),
    ("data/other.db", "unexpected member"),
])
def test_unsafe_or_unexpected_member_names_are_refused(good: Path, tmp_path: Path, name: str,
                                                      message: str) -> None:
    refused(repack(good, tmp_path / "x.tar.gz", extra=[(tarfile.TarInfo(name), b"x")]), message)


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE,
                                  tarfile.FIFOTYPE])
def test_links_and_special_files_are_refused(good: Path, tmp_path: Path, kind: bytes) -> None:
    member = tarfile.TarInfo("letsencrypt/archive/site/cert1.pem")
    member.type, member.linkname = kind, "/etc/shadow"
    bad = repack(good, tmp_path / "x.tar.gz", {"letsencrypt/archive/site/cert1.pem": None},
                 [(member, b"")])
    with pytest.raises(ArchiveError, match="link member|regular file"):
        archive.verify(bad)


def test_duplicate_missing_and_misplaced_members_are_refused(good: Path, tmp_path: Path) -> None:
    with tarfile.open(good, "r:gz") as tar:
        env = tar.getmember("coldfront.env")
        env_data = tar.extractfile(env).read()  # type: ignore[union-attr]
    refused(repack(good, tmp_path / "dup.tar.gz", extra=[(env, env_data)]), "coldfront.env twice")
    refused(repack(good, tmp_path / "miss.tar.gz", {"coldfront.env": None}),
            "incomplete: coldfront.env is missing")
    no_manifest = repack(good, tmp_path / "nm.tar.gz", {"manifest.json": None})
    refused(no_manifest, "not a cf-launch backup")


def test_damaged_or_foreign_files_are_refused(good: Path, tmp_path: Path) -> None:
    raw = bytearray(good.read_bytes())
    for i in range(len(raw) // 2, len(raw) // 2 + 8):
        raw[i] ^= 0x55
    (tmp_path / "flip.tar.gz").write_bytes(bytes(raw))
    # Where the flip lands depends on the archive's layout (the env file's length): a gzip
    # error, or a member whose checksum no longer matches. Either way: refused.
    with pytest.raises(ArchiveError) as flipped:
        archive.verify(tmp_path / "flip.tar.gz")
    assert any(words in str(flipped.value) for words in (
        "not a readable .tar.gz archive", "does not match its checksum")), flipped.value
    assert flipped.value.exit_code == ExitCode.BAD_ARCHIVE
    (tmp_path / "cut.tar.gz").write_bytes(good.read_bytes()[:-100])
    refused(tmp_path / "cut.tar.gz", "not a readable .tar.gz archive")
    (tmp_path / "text.tar.gz").write_text("hello")
    refused(tmp_path / "text.tar.gz", "not a readable .tar.gz archive")
    refused(tmp_path / "absent.tar.gz", "does not exist")


@pytest.mark.parametrize(("edit", "message"), [
    ({"format_version": 2}, "format version 2"),
    ({"format": "other"}, "not a cf-launch backup"),
    ({"links": {"letsencrypt/live/site/x.pem": "../../../../etc/shadow"}}, "leaves letsencrypt/"),
    ({"links": {"letsencrypt/live/site/x.pem": "/etc/shadow"}}, "relative path"),
    ({"links": {"coldfront.env2": "letsencrypt"}}, "is not allowed"),
    ({"database": {"member": "coldfront.env"}}, "database.member"),
])
def test_bad_manifests_are_refused(good: Path, tmp_path: Path, edit: dict[str, Any],
                                   message: str) -> None:
    manifest = {**manifest_of(good), **edit}
    refused(repack(good, tmp_path / "x.tar.gz", {"manifest.json": json.dumps(manifest).encode()}),
            message)


def test_an_archive_whose_db_url_is_not_sqlite_is_out_of_scope(tmp_path: Path) -> None:
    """cf-launch never writes such a backup: exit 11, nothing changed (issue 26)."""
    staging = tmp_path / "s"
    manifest = make_staging(staging, "SECRET_KEY=x\nDB_URL=postgres://cf@db/coldfront\n")
    archive.write(tmp_path / "pg.tar.gz", manifest, staging)
    refused(tmp_path / "pg.tar.gz", "pg.tar.gz: DB_URL uses 'postgres', not SQLite: backup "
            "and restore of other databases are out of scope")


@pytest.mark.parametrize(("env", "message"), [
    ("DB_URL=mysql://u:p@h/db\n", "uses 'mysql', not SQLite"),
    ("SECRET_KEY=x\n", "sets no DB_URL"),
    ("DB_URL=sqlite:////tmp/x.db\n", "not a file directly in /srv/coldfront/data"),
])
def test_only_a_sqlite_file_in_the_data_folder_is_in_scope(env: str, message: str) -> None:
    with pytest.raises(UnsupportedDatabaseError, match=message):
        appdata.sqlite_name(env)
    assert appdata.sqlite_name(appdata.env_text("k")) == "coldfront.db"


# --- the CLI, with the fake apptainer: refusals are one line, a code, and no change ------


def cf(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CF_LAUNCH_SYSTEM_CONFIG": str(tmp_path / "none")}
    return subprocess.run([sys.executable, "-m", "coldfront_launch.cli", "--state-root",
                           str(tmp_path / "state"), *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=60, check=False)


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    return {str(p): (p.lstat().st_mode, p.lstat().st_mtime_ns,
                     p.read_bytes() if p.is_file() and not p.is_symlink() else b"")
            for p in sorted([root, *root.rglob("*")])}


def test_cli_refusals_change_nothing(fake_apptainer: Path, good: Path, tmp_path: Path) -> None:
    state = tmp_path / "state" / "site"
    (state / "data").mkdir(parents=True)
    (state / "data" / "coldfront.db").write_text("the live database")
    (state / "coldfront.env").write_text("SECRET_KEY=live\n")
    before = snapshot(tmp_path / "state")

    with tarfile.open(good, "r:gz") as tar:
        env = tar.extractfile("coldfront.env").read()  # type: ignore[union-attr]
    damaged = repack(good, tmp_path / "bad.tar.gz", {"coldfront.env": env.replace(b"k", b"K")})
    result = cf(["restore", str(damaged), "--name", "site", "--force"], tmp_path)
    assert result.returncode == ExitCode.BAD_ARCHIVE, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("cf-launch: ")]
    assert errors == ["cf-launch: error: bad.tar.gz: coldfront.env does not match its "
                      "checksum in the manifest (the archive is damaged or was changed)"]
    assert "Traceback" not in result.stderr

    result = cf(["restore", str(good), "--name", "site"], tmp_path)
    assert result.returncode == ExitCode.DATA_EXISTS, result.stderr
    assert "hint: add --force" in result.stderr
    assert snapshot(tmp_path / "state") == before


def test_cli_restore_refuses_a_running_instance(fake_apptainer: Path, good: Path,
                                               tmp_path: Path) -> None:
    subprocess.run(["apptainer", "instance", "start", "x.sif", "site"], check=True,
                   capture_output=True)
    result = cf(["restore", str(good), "--name", "site", "--force"], tmp_path)
    assert result.returncode == ExitCode.RUNNING, result.stderr
    assert "instance site is running" in result.stderr
    assert "hint: stop it first: `cf-launch stop --name site`" in result.stderr
    assert not (tmp_path / "state").exists()


def test_cli_backup_of_another_database_is_out_of_scope(tmp_path: Path) -> None:
    state = tmp_path / "state" / "site"
    state.mkdir(parents=True)
    (state / "coldfront.env").write_text("DB_URL=mysql://cf:pw@db/coldfront\n")
    result = cf(["backup", "--name", "site"], tmp_path)
    assert result.returncode == ExitCode.FAILURE
    assert "DB_URL uses 'mysql', not SQLite: backup and restore of other databases are out " \
           "of scope for now" in result.stderr
    assert "cf:pw" not in result.stderr, "no credentials in messages"
    assert not (state / "backups").exists()


def test_certificate_links_are_kept_as_data_and_may_not_leave_the_folder(tmp_path: Path) -> None:
    from coldfront_launch.errors import LaunchError
    from coldfront_launch.operations.backup import _copy_certs

    certs = tmp_path / "letsencrypt"
    (certs / "archive/site").mkdir(parents=True)
    (certs / "live/site").mkdir(parents=True)
    (certs / "archive/site/privkey1.pem").write_text("KEY")
    (certs / "archive/site/privkey1.pem").chmod(0o600)
    os.symlink("../../archive/site/privkey1.pem", certs / "live/site/privkey.pem")
    staging = tmp_path / "staging"
    staging.mkdir()
    entries, links = _copy_certs(certs, staging)
    assert links == {"letsencrypt/live/site/privkey.pem": "../../archive/site/privkey1.pem"}
    files = {e.name: e for e in entries if e.kind == "file"}
    assert files["letsencrypt/archive/site/privkey1.pem"].mode == 0o600
    assert not (staging / "letsencrypt/live/site/privkey.pem").exists()

    os.symlink("/etc/shadow", certs / "live/site/chain.pem")
    shutil_staging = tmp_path / "staging2"
    shutil_staging.mkdir()
    with pytest.raises(LaunchError, match="has a link that leaves it: "
                                          "letsencrypt/live/site/chain.pem -> /etc/shadow"):
        _copy_certs(certs, shutil_staging)


def test_default_and_folder_outputs(tmp_path: Path) -> None:
    from coldfront_launch.config.settings import settings_from_mapping
    from coldfront_launch.operations.backup import output_path

    settings = settings_from_mapping({"name": "site", "state_root": str(tmp_path)})
    epoch = 1795892547.0
    default = output_path(settings, None, epoch)
    assert default == tmp_path / "site/backups/site-20261128T190227Z.tar.gz"
    assert stat.S_IMODE(default.parent.stat().st_mode) == 0o700
    assert output_path(settings, tmp_path, epoch) == tmp_path / "site-20261128T190227Z.tar.gz"
    assert output_path(settings, tmp_path / "x.tgz", epoch) == tmp_path / "x.tgz"
