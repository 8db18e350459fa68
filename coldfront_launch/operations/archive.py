"""The backup archive: one ``.tar.gz`` whose first member is a JSON manifest.

The manifest lists every other member (type, mode, size, sha256) and the certificates'
symbolic links (as data, never as link members). An archive is accepted only if it is
exactly that: members in canonical relative form under the known names, only regular
files and folders, each once, none writable by group or others, each matching its
checksum, none missing, the database a SQLite file, nothing after the last member; and
each link, resolved hop by hop through the others as the kernel would, stays inside the
certificate folder. Anything else is an :class:`ArchiveError` (exit 11, nothing changed).
Reading never follows anything outside the folder it extracts into.

Written with mode 0600 from the first byte (it holds the secret key), to a temporary
name beside the target, then renamed.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import posixpath
import re
import stat
import tarfile
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any, BinaryIO, TypeVar

from coldfront_launch import atomic
from coldfront_launch.atomic import file_kind
from coldfront_launch.coldfront.appdata import CERTS_DIR, DATA_DIR, DB_NAME, ENV_FILE, sqlite_name
from coldfront_launch.errors import ArchiveError, HostChangeError, UnsupportedDatabaseError

FORMAT = "cf-launch-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MAX_MANIFEST = 4 << 20
MAX_ENV = 1 << 20
#: A file under letsencrypt/ (certificates, keys, certbot's settings are a few KB).
MAX_CERT_FILE = 16 << 20
#: What may follow the last member: tar's zero blocks, padded to its record size.
MAX_TRAILER = 1 << 20
#: Links followed in one resolution before it counts as a loop (Linux's own limit).
MAX_HOPS = 40
PATH_MAX = 4095
#: Group or world write: refused in every member's mode.
SHARED_WRITE = 0o022
SQLITE_MAGIC = b"SQLite format 3\0"
SQLITE_HEADER = 100
CHUNK = 1 << 20
SHA256 = re.compile(r"[0-9a-f]{64}")
T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    """One member: ``kind`` is ``file`` or ``dir``; ``mode`` its permission bits."""

    name: str
    kind: str
    mode: int
    size: int = 0
    sha256: str = ""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.kind, "mode": f"{self.mode:04o}"}
        if self.kind == "file":
            data.update(size=self.size, sha256=self.sha256)
        return data


@dataclass
class Contents:
    """A checked archive: its manifest, members and links."""

    manifest: dict[str, Any]
    entries: dict[str, Entry]
    links: dict[str, str] = field(default_factory=dict)

    @property
    def database(self) -> str:
        """The database member, ``data/<name>``."""
        return str(self.manifest["database"]["member"])


def manifest_json(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()


def stamp(epoch: float) -> str:
    """A UTC time for file names (backups, data set aside): 20261128T020000Z."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(epoch))


# --- writing -------------------------------------------------------------------------


def write(target: Path, manifest: dict[str, Any], root: Path) -> None:
    """Write the archive: the manifest, then each member listed in it, read from
    ``root/<name>`` (checked against the manifest once more as it is added)."""
    created = int(manifest.get("created_epoch", 0))

    def info(name: str, mode: int) -> tarfile.TarInfo:
        item = tarfile.TarInfo(name)
        item.mode, item.mtime, item.uid, item.gid = mode, created, 0, 0
        item.uname = item.gname = "root"
        return item

    def fill(out: BinaryIO) -> None:
        with tarfile.open(fileobj=out, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
            text = manifest_json(manifest)
            head = info(MANIFEST, 0o600)
            head.size = len(text)
            tar.addfile(head, _Reader(text))
            for name, raw in manifest["members"].items():
                entry = _entry(name, raw)
                item = info(name, entry.mode)
                if entry.kind == "dir":
                    item.type = tarfile.DIRTYPE
                    tar.addfile(item)
                    continue
                item.size = entry.size
                with (root / name).open("rb") as src:
                    checked = _Checked(src, entry)
                    tar.addfile(item, checked)
                    checked.finish()
    atomic.replace(target, fill, mode=0o600)  # never readable by others, even half-written


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.offset = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size < 0 else self.offset + size
        chunk, self.offset = self.data[self.offset:end], min(end, len(self.data))
        return chunk


class _Checked:
    """Reads a source file for the archive and proves it still matches the manifest."""

    def __init__(self, src: IO[bytes], entry: Entry) -> None:
        self.src, self.entry = src, entry
        self.digest, self.size = hashlib.sha256(), 0

    def read(self, size: int = -1) -> bytes:
        chunk = self.src.read(size)
        self.digest.update(chunk)
        self.size += len(chunk)
        return chunk

    def finish(self) -> None:
        if (self.size, self.digest.hexdigest()) != (self.entry.size, self.entry.sha256):
            raise ArchiveError(f"{self.entry.name} changed while the backup was written",
                               "run the backup again")


def file_entry(name: str, path: Path) -> Entry:
    """The manifest entry of a file: its mode, size and sha256."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    mode = path.stat().st_mode & 0o777 & ~SHARED_WRITE  # restore refuses shared write
    return Entry(name, "file", mode, size, digest.hexdigest())


# --- reading -------------------------------------------------------------------------


def verify(path: Path) -> Contents:
    """Check the whole archive (structure, names, types, checksums) and change nothing."""
    return _walk(path, None)


def extract(path: Path, dest: Path) -> Contents:
    """Check the archive again while extracting it into the empty folder ``dest``
    (files 0600 until complete; then the recorded modes; links last)."""
    contents = _walk(path, dest)
    for name, target in sorted(contents.links.items()):
        os.symlink(target, dest / name)
    for name, entry in sorted(contents.entries.items(), key=lambda kv: -kv[0].count("/")):
        os.chmod(dest / name, entry.mode)
    return contents


def _walk(path: Path, dest: Path | None) -> Contents:
    label = path.name
    try:
        # gzip itself (not tarfile's stream) so that the CRC is checked: the rest of the
        # stream is read to its end before anything is judged complete.
        with _open_regular(path) as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz, \
                tarfile.open(fileobj=gz, mode="r|") as tar:
            contents, seen, env_text = _members(tar, label, dest)
            _read_trailer(gz, label)
    except ArchiveError:
        raise
    except FileNotFoundError:
        raise ArchiveError(f"{path} does not exist", "give the path of a backup made by "
                           "`cf-launch backup`") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError, ValueError) as err:
        reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
        raise ArchiveError(f"{label} is not a readable .tar.gz archive "
                           f"(damaged or truncated: {reason})") from None
    missing = sorted(set(contents.entries) - seen)
    if missing:
        raise ArchiveError(f"{label} is incomplete: {', '.join(missing[:3])} "
                           f"{'is' if len(missing) == 1 else 'are'} missing")
    try:
        db = sqlite_name(env_text)  # a DB_URL other than SQLite in the data folder
    except UnsupportedDatabaseError as err:  # cf-launch never writes such a backup
        raise ArchiveError(f"{label}: {err}") from None
    if contents.database != f"{DATA_DIR}/{db}":
        raise ArchiveError(f"{label}: its env file's DB_URL names {db}, but the archive "
                           f"holds {contents.database}")
    return contents


def _open_regular(path: Path) -> BinaryIO:
    """``path`` opened for reading, if it is a regular file (never blocks on a FIFO)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ArchiveError(f"{path} is {file_kind(mode)}, not a backup file",
                               "nothing was changed; give the path of a backup made by "
                               "`cf-launch backup`")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _read_trailer(gz: gzip.GzipFile, label: str) -> None:
    """Read the stream to its end (gzip's CRC): only tar's zero padding may follow."""
    extra = 0
    while chunk := gz.read(CHUNK):
        extra += len(chunk)
        if extra > MAX_TRAILER or chunk.strip(b"\0"):
            raise ArchiveError(f"{label} holds data after its last member (it is not a "
                               "cf-launch backup)")


def _members(tar: tarfile.TarFile, label: str, dest: Path | None
             ) -> tuple[Contents, set[str], str]:
    contents = parse_manifest(_manifest_member(tar, label), label)
    seen: set[str] = set()
    env_text = ""
    while (member := tar.next()) is not None:
        name = member.name
        entry = _expected(member, contents, seen, label)
        seen.add(name)
        if entry.kind == "dir":
            if not member.isdir():
                raise ArchiveError(f"{label}: {name} should be a folder")
            if dest is not None:
                _writing(dest / name, lambda path: os.mkdir(path, 0o700))
            continue
        if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE) or member.size != entry.size:
            raise ArchiveError(f"{label}: {name} is not the regular file of "
                               f"{entry.size} bytes its manifest lists")
        kept = _copy_checked(_open(tar, member), entry, label, dest,
                             database=name == contents.database)
        if name == ENV_FILE:
            env_text = kept.decode(errors="replace")
    return contents, seen, env_text


def _manifest_member(tar: tarfile.TarFile, label: str) -> bytes:
    """The text of the first member, which must be the manifest."""
    first = tar.next()
    if first is None or first.name != MANIFEST or not first.isreg():
        raise ArchiveError(f"{label} is not a cf-launch backup (its first member is not "
                           f"{MANIFEST})")
    if first.size > MAX_MANIFEST:
        raise ArchiveError(f"{label}: its {MANIFEST} is {first.size} bytes, more than the "
                           f"{MAX_MANIFEST >> 20} MiB a cf-launch manifest may be (it is "
                           "not a cf-launch backup)")
    return _open(tar, first).read()


def _expected(member: tarfile.TarInfo, contents: Contents, seen: set[str],
              label: str) -> Entry:
    """The manifest's entry for ``member``, if it is safe and expected here."""
    name = member.name
    problem = name_problem(name)
    if problem:
        raise ArchiveError(f"{label} holds an unsafe member {name!r} ({problem})")
    if name in seen:
        raise ArchiveError(f"{label} holds {name} twice")
    entry = contents.entries.get(name)
    if entry is None:
        raise ArchiveError(f"{label} holds an unexpected member {name!r} (not in its "
                           "manifest)")
    parent = posixpath.dirname(name)
    if parent and parent not in seen:
        raise ArchiveError(f"{label}: {name} comes before its folder {parent}")
    if member.issym() or member.islnk():
        raise ArchiveError(f"{label} holds a link member {name!r} (cf-launch backups "
                           "hold no links)")
    if member.mode & SHARED_WRITE or member.mode & ~0o777:
        raise ArchiveError(f"{label}: {name} has mode {member.mode:04o} (writable by group "
                           "or others, or set-id): cf-launch backups hold none")
    return entry


def _open(tar: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    """A regular member's content (extractfile answers None only for other types)."""
    data = tar.extractfile(member)
    if data is None:
        raise ArchiveError(f"{member.name} is not a regular file")
    return data


def _copy_checked(data: IO[bytes], entry: Entry, label: str, dest: Path | None,
                  database: bool = False) -> bytes:
    """Hash (and write, to ``dest``) one member; keep the env file's text. The
    ``database``'s SQLite header is checked as soon as it is read."""
    digest = hashlib.sha256()
    keep = MAX_ENV if entry.name == ENV_FILE else SQLITE_HEADER if database else 0
    kept = b""
    target = dest / entry.name if dest is not None else None
    out: IO[bytes] | None = None
    if target is not None:
        out = _writing(target, lambda path: os.fdopen(os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600), "wb"))
    try:
        while chunk := data.read(CHUNK):  # reading errors are the archive's
            digest.update(chunk)
            if len(kept) < keep:
                kept += chunk[:keep - len(kept)]
                if database and len(kept) == keep:
                    _check_database(kept, entry, label)
            if out is not None and target is not None:
                _writing(target, partial(_write, out, chunk))
        if out is not None and target is not None:
            _writing(target, partial(_write, out, b""))
    finally:
        if out is not None:
            out.close()
    if database and len(kept) < keep:
        _check_database(kept, entry, label)
    if digest.hexdigest() != entry.sha256:
        raise ArchiveError(f"{label}: {entry.name} does not match its checksum in the "
                           "manifest (the archive is damaged or was changed)")
    return kept


def _check_database(header: bytes, entry: Entry, label: str) -> None:
    problem = database_problem(header, entry.size)
    if problem:
        raise ArchiveError(f"{label}: {entry.name} is {problem}")


def database_problem(header: bytes, size: int) -> str:
    """Why a file of ``size`` bytes that starts with ``header`` (its first 100 bytes) is
    not a SQLite database ("" if it may be): SQLite's own file header, read as bytes."""
    if len(header) < SQLITE_HEADER or not header.startswith(SQLITE_MAGIC):
        return "not a SQLite database (no SQLite header)"
    page = int.from_bytes(header[16:18], "big")
    page = 65536 if page == 1 else page
    if not 512 <= page <= 65536 or page & (page - 1) or header[21:24] != b"\x40\x20\x20":
        return "not a SQLite database (its header is damaged)"
    if size % page:
        return f"not a SQLite database ({size} bytes: not whole {page}-byte pages)"
    pages = int.from_bytes(header[28:32], "big")
    if pages and header[24:28] == header[92:96] and pages * page != size:
        return (f"not the SQLite database its header describes ({pages} pages of {page} "
                f"bytes, but {size} bytes)")
    return ""


def _write(out: IO[bytes], chunk: bytes, _path: Path) -> None:
    """Write a chunk; an empty one flushes and syncs."""
    if chunk:
        out.write(chunk)
    else:
        out.flush()
        os.fsync(out.fileno())


def _writing(path: Path, action: Callable[[Path], T]) -> T:
    """Do ``action`` on the extraction folder; a failure there is the host's (a full
    disk), never the archive's."""
    try:
        return action(path)
    except OSError as err:
        raise HostChangeError(f"cannot write {path}: {err.strerror or err}",
                              "nothing was replaced; free space in the state folder and "
                              "try again") from None


def name_problem(name: str) -> str:
    """Why ``name`` is not a canonical, relative member name ("" if it is)."""
    if not isinstance(name, str) or not name or len(name) > 1024:
        return "empty or too long"
    if "\0" in name or "\\" in name:
        return "odd characters"
    if name.startswith("/"):
        return "an absolute path"
    parts = name.split("/")
    if ".." in parts:
        return "it leaves the folder with '..'"
    if posixpath.normpath(name) != name or "." in parts or "" in parts:
        return "not in canonical form"
    if any(len(part) > 255 for part in parts):
        return "a name too long"
    return ""


def _allowed(name: str) -> bool:
    top = name.split("/", 1)[0]
    return name in (ENV_FILE, DATA_DIR, CERTS_DIR) or top in (DATA_DIR, CERTS_DIR)


def _entry(name: str, raw: Any) -> Entry:
    if not isinstance(raw, dict) or raw.get("type") not in ("file", "dir"):
        raise ValueError(f"{name}: type must be file or dir")
    mode = raw.get("mode")
    if not isinstance(mode, str) or not re.fullmatch(r"0?[0-7]{3}", mode):
        raise ValueError(f"{name}: mode must be like 0600")
    if int(mode, 8) & SHARED_WRITE:
        raise ValueError(f"{name}: mode {mode} lets group or others write it")
    if raw["type"] == "dir":
        return Entry(name, "dir", int(mode, 8))
    size, sha = raw.get("size"), raw.get("sha256")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(f"{name}: size must be a whole number")
    limit = MAX_ENV if name == ENV_FILE else MAX_CERT_FILE if name.startswith(CERTS_DIR) \
        else None
    if limit is not None and size > limit:
        raise ValueError(f"{name}: {size} bytes is more than such a file may be "
                         f"({limit >> 20} MiB)")
    if not isinstance(sha, str) or not SHA256.fullmatch(sha):
        raise ValueError(f"{name}: sha256 must be 64 hex digits")
    return Entry(name, "file", int(mode, 8), size, sha)


def parse_manifest(text: bytes, label: str = "the archive") -> Contents:
    """Validate a manifest: format, member names and types, the database, the links."""
    try:
        manifest = json.loads(text)
    except (ValueError, RecursionError):
        raise ArchiveError(f"{label}: its {MANIFEST} is not valid JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArchiveError(f"{label} is not a cf-launch backup (no format {FORMAT!r} in "
                           f"its {MANIFEST})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArchiveError(f"{label} has format version {manifest.get('format_version')!r}; "
                           f"this cf-launch reads version {FORMAT_VERSION}",
                           "restore it with the cf-launch version that made it")
    try:
        return _contents(manifest)
    except ValueError as err:
        raise ArchiveError(f"{label}: its manifest is not valid: {err}") from None


def _contents(manifest: dict[str, Any]) -> Contents:
    members, links = manifest.get("members"), manifest.get("links", {})
    if not isinstance(members, dict) or not isinstance(links, dict):
        raise ValueError("members and links must be objects")
    entries: dict[str, Entry] = {}
    for name, raw in members.items():
        problem = name_problem(name)
        if problem or not _allowed(name):
            raise ValueError(f"member {name!r} is not allowed ({problem or 'unknown name'})")
        entries[name] = _entry(name, raw)
    for name in entries:
        parent = posixpath.dirname(name)
        if parent and entries.get(parent, Entry("", "file", 0)).kind != "dir":
            raise ValueError(f"{name}: its folder {parent} is not listed")
    for name, want in ((ENV_FILE, "file"), (DATA_DIR, "dir"), (CERTS_DIR, "dir")):
        if name not in entries or entries[name].kind != want:
            raise ValueError(f"{name} is missing")
    database = manifest.get("database")
    member = database.get("member") if isinstance(database, dict) else None
    if not isinstance(member, str) or not member.startswith(f"{DATA_DIR}/") \
            or not DB_NAME.fullmatch(member[len(DATA_DIR) + 1:]) \
            or entries.get(member, Entry("", "dir", 0)).kind != "file":
        raise ValueError("database.member must name the database file in data/")
    others = [n for n in entries if n.startswith(f"{DATA_DIR}/") and n != member]
    if others:
        raise ValueError(f"{others[0]}: only the database belongs under {DATA_DIR}/")
    for name, target in links.items():
        _check_link(name, target, entries)
    kinds = {name: entry.kind for name, entry in entries.items()}
    for name in links:
        problem = link_problem(name, links, kinds)
        if problem:
            raise ValueError(f"link {name} -> {links[name]}: {problem}")
    return Contents(manifest, entries, dict(links))


def _check_link(name: str, target: Any, entries: dict[str, Entry]) -> None:
    """A certificate link: inside letsencrypt/, pointing inside it, relative."""
    if name_problem(name) or not name.startswith(f"{CERTS_DIR}/") or name in entries:
        raise ValueError(f"link {name!r} is not allowed")
    parent = posixpath.dirname(name)
    if entries.get(parent, Entry("", "file", 0)).kind != "dir":
        raise ValueError(f"link {name}: its folder {parent} is not listed")
    if not isinstance(target, str) or not target or target.startswith("/") or "\0" in target:
        raise ValueError(f"link {name}: its target must be a relative path")
    if len(target) > PATH_MAX or any(len(part) > 255 for part in target.split("/")):
        raise ValueError(f"link {name}: its target is too long")


def link_problem(name: str, links: Mapping[str, str], kinds: Mapping[str, str]) -> str:
    """Why the link ``name`` does not lead inside letsencrypt/ ("" if it does), resolved
    as the kernel would in the extracted tree: every hop, through the other ``links``
    (``..`` after a link goes up from where it leads), never leaving the folder on the way.
    ``kinds``: the tree's other members, ``file`` or ``dir``. A path that reaches a name
    the tree lacks is judged by its text from there (nothing below it exists)."""
    parts = name.split("/")[:-1]
    todo = list(reversed(links[name].split("/")))
    hops, via = 1, ""
    while todo:
        part = todo.pop()
        if part in ("", "."):
            continue
        here = "/".join([*parts, part])
        if part == "..":
            parts = parts[:-1]
        elif here in links:
            hops, via = hops + 1, here
            if hops > MAX_HOPS:
                return f"more than {MAX_HOPS} links deep (a loop through {here})"
            if links[here].startswith("/"):
                return f"it leaves {CERTS_DIR}/ through the absolute link {here}"
            todo.extend(reversed(links[here].split("/")))
        elif kinds.get(here) == "file" and todo:
            return f"it goes through the file {here}"
        else:
            parts.append(part)
        if not parts or parts[0] != CERTS_DIR:
            return f"it leaves {CERTS_DIR}/" + (f" through the link {via}" if via else "")
    if len(parts) < 2:
        return f"it leads to {CERTS_DIR}/ itself"
    return ""
