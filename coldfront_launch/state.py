"""Per-instance state: an exclusive lock and an append-only journal of undo actions.

Every host change writes its undo record (fsync'd) *before* the change is made, so a
``cf-launch`` process killed at any point leaves a journal that ``stop`` can replay.
Undo actions are idempotent: replaying one whose change never happened is harmless.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from .errors import LockedError

JOURNAL = "journal.jsonl"
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
    def locked(self, wait: bool = False) -> Iterator[None]:
        """Hold the instance's exclusive lock; fail at once if another process has it."""
        self.ensure()
        fd = os.open(self.directory / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                holder = _read_pid(fd)
                raise LockedError(
                    f"another cf-launch process{f' (pid {holder})' if holder else ''} "
                    f"is working on {self.directory.name}",
                    "wait for it to finish, then try again") from None
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            yield
        finally:
            os.close(fd)

    def record(self, undo: dict[str, Any]) -> None:
        """Append one undo action and flush it to disk before the change it undoes."""
        self.ensure()
        line = json.dumps(undo, sort_keys=True) + "\n"
        with self.journal_path.open("a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def entries(self) -> list[dict[str, Any]]:
        """All undo actions, oldest first. A torn last line (a kill mid-write) is skipped."""
        if not self.journal_path.exists():
            return []
        out = []
        for line in self.journal_path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def rewrite(self, remaining: list[dict[str, Any]]) -> None:
        """Atomically replace the journal with the actions still to undo."""
        if not remaining:
            self.journal_path.unlink(missing_ok=True)
            return
        tmp = self.journal_path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in remaining))
        os.replace(tmp, self.journal_path)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created if missing), waiting for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def shared_lock(state_root: Path) -> AbstractContextManager[None]:
    """The lock over state shared by all instances (the claims registry)."""
    return file_lock(state_root / ".shared.lock")


def _read_pid(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode().strip()
    except OSError:
        return ""
