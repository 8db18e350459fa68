"""One instance's state folder: its exclusive lock, the journal as plain records, the
supervisor's pid and the records set aside (``unresolved.jsonl``).

The journal is appended to (fsync'd) *before* each host change is made, so a ``cf-launch``
process killed at any point leaves a journal that ``stop`` can replay; undo rewrites it
with what is left. This module stores dicts and knows nothing of host changes: the typed
view (and cf-launch 0.1's format) is :mod:`coldfront_launch.changes.journal`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from coldfront_launch import atomic
from coldfront_launch.errors import LockedError

JOURNAL = "journal.jsonl"
SUPERVISOR = "supervisor.pid"
UNRESOLVED = "unresolved.jsonl"
LOCK = "lock"


class InstanceState:
    """The state folder of one instance: ``<state_root>/<name>``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def journal_path(self) -> Path:
        return self.directory / JOURNAL

    def ensure(self) -> None:
        """Create the folder (mode 0700: it holds the secret key)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)

    @contextmanager
    def locked(self, wait: bool = False, timeout: float = 0) -> Iterator[None]:
        """Hold the instance's exclusive lock; fail at once if another process has it
        (or after ``timeout`` seconds of trying; ``wait``: wait as long as it takes)."""
        self.ensure()
        fd = os.open(self.directory / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                    break
                except BlockingIOError:
                    if time.monotonic() < deadline:
                        time.sleep(0.1)
                        continue
                    holder = _read_pid(fd)
                    raise LockedError(
                        f"another cf-launch process{f' (pid {holder})' if holder else ''} "
                        f"is working on {self.directory.name}",
                        "wait for it to finish, then try again") from None
            with contextlib.suppress(OSError):  # who holds it, for messages; a full disk
                os.ftruncate(fd, 0)              # must not stop a stop
                os.write(fd, str(os.getpid()).encode())
            yield
        finally:
            os.close(fd)

    def append(self, record: dict[str, Any]) -> None:
        """Append one record and flush it to disk (before the change it describes is made)."""
        self.ensure()
        line = _line(record)
        with self.journal_path.open("a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def records(self) -> list[dict[str, Any]]:
        """The raw journal records, oldest first.

        A torn last line (a kill mid-write, so no newline after it) is skipped: its change
        was never made, since each change is journaled before it is made. Any other line
        that is not a JSON object in UTF-8 becomes an ``unreadable`` record naming its
        line, never skipped: what it described may still be on the host."""
        try:
            raw = self.journal_path.read_bytes()
        except FileNotFoundError:
            return []
        *complete, tail = raw.split(b"\n")
        out = []
        for number, line in enumerate(complete, 1):
            if line.strip():
                out.append(_parsed(line) or unreadable(number, line))
        if tail.strip():
            record = _parsed(tail)
            if record is not None:  # whole, but for its newline
                out.append(record)
        return out
    def count(self) -> int:
        """How many changes the journal holds, without reading them as typed changes
        (``status`` of a stopped instance): every record is one, but for 0.1's ``netns``."""
        return sum(1 for r in self.records() if "type" in r or r.get("kind") != "netns")

    @property
    def supervisor_path(self) -> Path:
        return self.directory / SUPERVISOR

    def supervisor(self) -> int:
        """The pid of a live ``cf-launch run`` supervising this instance (not this
        process), or 0."""
        try:
            pid = int(self.supervisor_path.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return 0
        return pid if pid != os.getpid() else 0

    @property
    def unresolved_path(self) -> Path:
        return self.directory / UNRESOLVED

    def set_aside(self) -> int:
        """Move what could not be undone to ``unresolved.jsonl`` (for the administrator
        to check), so it no longer blocks a new start. Returns how many records."""
        records = self.records()
        if records:
            with self.unresolved_path.open("a", encoding="utf-8") as fh:
                fh.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
            self.journal_path.unlink(missing_ok=True)
        return len(records)

    def unresolved(self) -> int:
        """How many records were set aside."""
        try:
            return len(self.unresolved_path.read_text().splitlines())
        except OSError:
            return 0

    def rewrite(self, records: list[dict[str, Any]]) -> None:
        """Atomically replace the journal with ``records`` (synced; none: no journal)."""
        if not records:
            self.journal_path.unlink(missing_ok=True)
            return
        atomic.write_text(self.journal_path, "".join(_line(r) for r in records), mode=0o600,
                          shrink_when_full=True)  # undo only shrinks it


CHECK = "crc32"


def _checksum(record: dict[str, Any]) -> str:
    body = json.dumps({k: v for k, v in record.items() if k != CHECK}, sort_keys=True)
    return f"{zlib.crc32(body.encode('utf-8')):08x}"


def _line(record: dict[str, Any]) -> str:
    """A journal line: the record with the checksum of the rest, so that a changed byte
    (a bad disk, an editor) makes the line unreadable instead of a different change."""
    return json.dumps({**record, CHECK: _checksum(record)}, sort_keys=True) + "\n"


def _parsed(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(record, dict):
        return None
    # lines written before the checksum are taken as they are
    if CHECK in record and record.pop(CHECK) != _checksum(record):
        return None
    return record


def unreadable(number: int, line: bytes) -> dict[str, Any]:
    """The record standing for journal line ``number`` that could not be read."""
    try:
        parsed = json.loads(line.decode("utf-8"))
        why = "its checksum does not match: changed since it was written" \
            if isinstance(parsed, dict) else "not a JSON object"
    except UnicodeDecodeError as err:
        why = f"not UTF-8 at byte {err.start + 1}"
    except (ValueError, RecursionError):
        why = "not a JSON object"
    return {"type": "unreadable", "line": number, "why": why,
            "text": line[:300].decode("utf-8", "backslashreplace")}


def _read_pid(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode().strip()
    except OSError:
        return ""


def known_instances(state_root: Path) -> list[str]:
    """Instances with host changes journaled under ``state_root``."""
    if not state_root.is_dir():
        return []
    return sorted(p.parent.name for p in state_root.glob(f"*/{JOURNAL}"))
