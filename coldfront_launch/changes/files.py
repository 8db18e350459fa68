"""Files and folders cf-launch creates on the host: a :class:`Directory`, a :class:`File`
one instance owns, and a :class:`SharedFile` several instances hold (the CNI conflist)."""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from coldfront_launch import atomic
from coldfront_launch.changes import claims
from coldfront_launch.changes.base import HostChange, HostEnv, Reading
from coldfront_launch.changes.shared import Claim
from coldfront_launch.errors import HostChangeError


def missing_dirs(path: Path) -> tuple[str, ...]:
    """The folders that must be created for ``path`` to exist, outermost first."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(str(probe))
        probe = probe.parent
    return tuple(reversed(missing))


def _make_dirs(created: tuple[str, ...]) -> None:
    for directory in created:
        Path(directory).mkdir(exist_ok=True)


def _remove_dirs(created: tuple[str, ...]) -> None:
    for directory in reversed(created):
        with contextlib.suppress(OSError):
            os.rmdir(directory)  # only if empty: never removes what others put there


@dataclass(frozen=True)
class Directory(HostChange):
    """A folder, with the parents it needed; removed on stop if left empty."""

    kind: ClassVar[str] = "dir"
    path: str = ""
    created: tuple[str, ...] = ()

    target_field = "path"

    def describe(self) -> str:
        return f"create directory {self.path}"

    def apply(self, env: HostEnv) -> None:
        _make_dirs(self.created)

    def undo(self, env: HostEnv) -> None:
        _remove_dirs(self.created)


@dataclass(frozen=True)
class _FileFields:
    """What a written file is: path, mode, content (plan only), folders it needed."""

    plan_only: ClassVar[tuple[str, ...]] = ("content",)
    path: str = ""
    mode: int = 0o644
    content: str = field(default="", repr=False)
    created: tuple[str, ...] = ()

    target_field = "path"

    @property
    def detail(self) -> dict[str, Any]:
        return {"mode": f"{self.mode:04o}", "content": self.content}


@dataclass(frozen=True)
class File(_FileFields, HostChange):
    """A file this instance owns (a bind file, a hook's file); removed on stop, with the
    folders it needed."""

    kind: ClassVar[str] = "file"

    repairable: ClassVar[bool] = False  # its content is not journaled (it may be secret)

    def describe(self) -> str:
        return f"write {self.path} (mode {self.mode:04o})"

    def drift(self, live: Reading) -> str:
        return "" if Path(self.path).exists() else f"{self.path} is gone"

    def check(self, env: HostEnv) -> None:
        if Path(self.path).exists() and self.identity() not in env.journaled:
            raise HostChangeError(f"{self.path} exists and cf-launch did not create it",
                                  "move it away or choose another path; cf-launch never "
                                  "overwrites files it does not own")

    def apply(self, env: HostEnv) -> None:
        _make_dirs(self.created)
        atomic.write_text(Path(self.path), self.content, mode=self.mode)

    def undo(self, env: HostEnv) -> None:
        Path(self.path).unlink(missing_ok=True)
        _remove_dirs(self.created)


@dataclass(frozen=True)
class SharedFile(_FileFields, Claim):
    """A file several instances need with the same content (the CNI conflist)."""

    kind: ClassVar[str] = "shared-file"
    claim_kind: ClassVar[str] = "file"
    plan_only: ClassVar[tuple[str, ...]] = ()  # journaled: repair writes it again
    sha256: str = ""

    def drift(self, live: Reading) -> str:
        try:
            found = hashlib.sha256(Path(self.path).read_bytes()).hexdigest()
        except OSError:
            return f"{self.path} is gone"
        return "" if found == self.sha256 else f"{self.path} was changed"

    def describe(self) -> str:
        """What is written, with the text when it is short (the CNI network: its bridge
        and subnets, as `plan` shows them)."""
        head = f"write {self.path} (mode {self.mode:04o}, shared by instances)"
        if not self.content or len(self.content) > 2048:
            return head
        return head + ":\n" + "\n".join(f"    {line}" for line in self.content.splitlines())

    def original_value(self) -> Any:
        return "absent"

    def check(self, env: HostEnv) -> None:
        if self.key() not in claims.read(env.state_root) and Path(self.path).exists():
            raise HostChangeError(f"{self.path} exists and cf-launch did not create it",
                                  "move it away or choose another name in the settings")

    def apply(self, env: HostEnv) -> None:
        digest = hashlib.sha256(self.content.encode()).hexdigest()

        def same_content(entry: dict[str, Any]) -> None:
            if entry.get("sha256") != digest:
                raise HostChangeError(
                    f"{self.path} is in use by {', '.join(entry['holders'])} with other "
                    "settings", "give this instance the same network settings, or another "
                    "network name")
        _make_dirs(self.created)
        self.hold(env, check=same_content, extra={"sha256": digest})
        if not Path(self.path).exists():
            atomic.write_text(Path(self.path), self.content, mode=self.mode)

    def restore(self, original: Any) -> None:
        if original == "absent":
            Path(self.path).unlink(missing_ok=True)

    def released(self) -> None:
        _remove_dirs(self.created)
