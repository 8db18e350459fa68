"""ColdFront's SQLite database, read through SQLite itself and never as a plain file copy.

Every step runs inside the container, with ColdFront's own Python and SQLite, under the
service account (``[security]`` uid and gid; the child drops root before it opens
anything): in the running instance (``apptainer exec instance://NAME``), or, when it is
stopped, in a throw-away container of its image with only the data folder bound in. The
database's own locks make the copy consistent while ColdFront writes (SQLite's online
backup API, the whole database in one step under one read lock); files SQLite may create
belong to the service; and the site's database is never opened by a root process.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, cast

from coldfront_launch import apptainer
from coldfront_launch.coldfront.appdata import CONTAINER_DATA
from coldfront_launch.errors import LaunchError

#: ColdFront's Python in the image (definitions/files/install-coldfront.sh).
PYTHON = "/srv/coldfront/venv/bin/python"
#: Temporary snapshots the child makes in the data folder (removed by the next run if a
#: kill left one).
TEMP_PREFIX = ".cf-launch-backup-"

# argv: snapshot|check NAME UID GID. snapshot: the copy on stdout; both: a JSON summary
# on stderr's last line.
CHILD = r"""
import glob, json, os, shutil, sqlite3, sys, tempfile
action, name, uid, gid = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if os.getuid() != uid:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
os.umask(0o077)
os.chdir(DATA)

def summary(con):
    rows = [r[0] for r in con.execute("PRAGMA integrity_check")]
    return {"integrity_check": "ok" if rows == ["ok"] else "; ".join(map(str, rows[:5])),
            "journal_mode": con.execute("PRAGMA journal_mode").fetchone()[0],
            "page_count": con.execute("PRAGMA page_count").fetchone()[0]}

def open_existing(path):
    return sqlite3.connect("file:" + path + "?mode=rw", uri=True, timeout=60)

if action == "check":
    try:
        con = open_existing(name)
        info = summary(con)
        con.close()
    except sqlite3.OperationalError:  # cannot open it (the host's side): an error
        raise
    except sqlite3.DatabaseError as err:  # not a database, or a damaged one: an answer
        info = {"integrity_check": "not a usable SQLite database: %s" % err}
    sys.stderr.write(json.dumps(info) + "\n")
    sys.exit(0)
for stale in glob.glob(PREFIX + "*"):
    os.unlink(stale)
fd, tmp = tempfile.mkstemp(prefix=PREFIX, suffix=".db", dir=DATA)
os.close(fd)
try:
    src = open_existing(name)
    dst = sqlite3.connect(tmp)
    src.backup(dst)  # pages=-1: the whole database in one step, under one read lock
    src.close()
    info = summary(dst)
    dst.close()
    with open(tmp, "rb") as fh:
        shutil.copyfileobj(fh, sys.stdout.buffer, 1 << 20)
    sys.stdout.flush()
finally:
    os.unlink(tmp)
sys.stderr.write(json.dumps(info) + "\n")
""".replace("PREFIX", repr(TEMP_PREFIX)).replace("DATA", repr(CONTAINER_DATA))


@dataclass(frozen=True)
class Where:
    """Where the child runs: in the running ``instance``, else in a container of ``image``
    with ``data_dir`` bound as ColdFront's data folder."""

    instance: str = ""
    image: Path | None = None
    data_dir: Path | None = None

    def argv(self, args: list[str]) -> list[str]:
        child = [PYTHON, "-I", "-c", CHILD, *args]
        if self.instance:
            return [apptainer.locate(), "exec", "--pwd", "/", f"instance://{self.instance}",
                    *child]
        if self.image is None or not self.image.is_file():
            raise LaunchError(f"the image {self.image} does not exist; cf-launch reads the "
                              "database with ColdFront's own Python and SQLite from it",
                              "build it (`cf-launch build`) or set `image` in the settings")
        return [apptainer.locate(), "exec", "--contain", "--pwd", "/", "--bind",
                f"{self.data_dir}:{CONTAINER_DATA}", str(self.image), *child]


@dataclass(frozen=True)
class Snapshot:
    """What the copy holds: its size and sha256, and what SQLite said of it."""

    size: int
    sha256: str
    integrity_check: str
    journal_mode: str
    page_count: int


def _run(where: Where, args: list[str], ids: tuple[int, int],
         stdout: BinaryIO | None) -> dict[str, object]:
    """Run the child; stream its stdout to ``stdout``; return its summary."""
    argv = where.argv([*args, str(ids[0]), str(ids[1])])
    with tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,  # noqa: S603
                                    stdout=subprocess.PIPE, stderr=errors)
        except OSError as err:
            raise LaunchError(f"cannot run {argv[0]}: {err.strerror or err}",
                              "check the Apptainer installation") from None
        pipe = cast(IO[bytes], proc.stdout)  # stdout=PIPE
        with pipe:
            while chunk := pipe.read(1 << 20):
                if stdout is not None:
                    stdout.write(chunk)
        code = proc.wait()
        errors.seek(0)
        text = errors.read().decode(errors="replace").strip()
    lines = [line for line in text.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if code != 0:
        raise LaunchError(f"SQLite failed on {CONTAINER_DATA}/{args[1]}: "
                          f"{last or f'exit {code}'}",
                          "is the database there and readable by the service account "
                          "([security] uid)? `cf-launch logs` shows ColdFront's side")
    try:
        summary: dict[str, object] = json.loads(last)
    except ValueError:
        raise LaunchError(f"SQLite's child process gave no summary: {last!r}",
                          "rerun with CF_LAUNCH_DEBUG=1 and report it") from None
    return summary


class _Hashing:
    """A write target that hashes and counts what passes through."""

    def __init__(self, target: BinaryIO) -> None:
        self.target = target
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> int:
        self.digest.update(chunk)
        self.size += len(chunk)
        return self.target.write(chunk)


def snapshot(where: Where, name: str, ids: tuple[int, int], target: Path) -> Snapshot:
    """A consistent copy of the database ``name`` in the data folder into ``target``
    (created 0600), online or not, with SQLite's backup API; checked with
    ``PRAGMA integrity_check``."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        hashing = _Hashing(out)
        summary = _run(where, ["snapshot", name], ids, hashing)  # type: ignore[arg-type]
        out.flush()
        os.fsync(out.fileno())
    return Snapshot(hashing.size, hashing.digest.hexdigest(), str(summary["integrity_check"]),
                    str(summary["journal_mode"]), int(str(summary["page_count"])))


def integrity_check(where: Where, name: str, ids: tuple[int, int]) -> str:
    """``PRAGMA integrity_check`` of the database ``name``: ``"ok"`` or the first
    problems."""
    summary = _run(where, ["check", name], ids, None)
    return str(summary["integrity_check"])
