"""Host resources shared by several instances: claimed by each, restored by the last.

A claim is keyed by a :class:`ClaimKey`: a kind (``sysctl``, ``file``, ``link``,
``offloads``, ``iptables-table``, ``nft-chain``), a name, and the network namespace the
resource lives in (empty for files). The first claimant records the resource's original
state; when the last claimant releases it, that state is put back. The registry lives in
``<state_root>/claims.json`` under the shared lock.

``claims.json`` written by cf-launch 0.1 (keys like ``sysctl@NETNS:NAME``) is read and
rewritten in the current form.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coldfront_launch import atomic
from coldfront_launch.errors import HostChangeError
from coldfront_launch.locks import shared_lock

FILE = "claims.json"
VERSION = 2


@dataclass(frozen=True)
class ClaimKey:
    """Which shared resource: its kind, its name, and its network namespace (if any)."""

    kind: str
    name: str
    netns: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.name}" + (f" (netns {self.netns})" if self.netns else "")

    @classmethod
    def parse_v1(cls, text: str) -> ClaimKey:
        """A cf-launch 0.1 key: ``file:/path`` or ``kind@netns:name``."""
        kind, _, name = text.partition(":")
        kind, _, netns = kind.partition("@")
        return cls(kind, name, netns)


Registry = dict[ClaimKey, dict[str, Any]]


def _path(state_root: Path) -> Path:
    return state_root / FILE


def read(state_root: Path) -> Registry:
    """Every claim: key -> ``{"original", "holders", ...}`` (older formats migrated)."""
    path = _path(state_root)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise HostChangeError(f"cannot read {path}: {err}",
                              "restore it from a backup, or move it away if no instance "
                              "runs") from None
    if isinstance(data, dict) and data.get("version") == VERSION:
        return {ClaimKey(c.pop("kind"), c.pop("name"), c.pop("netns", "")): c
                for c in data.get("claims", [])}
    if isinstance(data, dict) and "version" not in data:
        return {ClaimKey.parse_v1(key): dict(entry) for key, entry in data.items()}
    raise HostChangeError(f"{path} has a format this cf-launch does not know",
                          "a newer cf-launch wrote it: use that version")


def _write(state_root: Path, registry: Registry) -> None:
    path = _path(state_root)
    if not registry:
        path.unlink(missing_ok=True)
        return
    claims = [{"kind": k.kind, "name": k.name, "netns": k.netns, **entry}
              for k, entry in sorted(registry.items(), key=lambda item: str(item[0]))]
    # A release only shrinks the registry: on a full disk it is written over itself.
    atomic.write_json(path, {"version": VERSION, "claims": claims}, indent=2,
                      shrink_when_full=True)


def claim(state_root: Path, instance: str, key: ClaimKey,
          original: Callable[[], Any], check: Callable[[dict[str, Any]], None] | None = None,
          extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Add ``instance`` as a holder; the first holder stores ``original()``.

    ``check`` sees an existing claim and may raise (e.g. a shared file's content differs).
    """
    with shared_lock(state_root):
        registry = read(state_root)
        entry = registry.get(key)
        boot = (extra or {}).get("boot")
        if entry is not None and boot and entry.get("boot", boot) != boot:
            entry = None  # held in an earlier boot: that namespace and its holders are gone
        if entry is None:
            entry = {"original": original(), "holders": [], **(extra or {})}
        elif check is not None:
            check(entry)
        if instance not in entry["holders"]:
            entry["holders"].append(instance)
        registry[key] = entry
        _write(state_root, registry)
        return dict(entry)


def release(state_root: Path, instance: str, key: ClaimKey,
            restore: Callable[[Any], None]) -> None:
    """Drop ``instance``'s hold; the last holder calls ``restore(original)``."""
    def restore_last(last: list[tuple[int, Any]]) -> None:
        for _index, original in last:
            restore(original)
    release_many(state_root, instance, [key], restore_last)


def release_many(state_root: Path, instance: str, keys: list[ClaimKey],
                 restore: Callable[[list[tuple[int, Any]]], None]) -> None:
    """:func:`release` for several claims, under one lock, with one read and one write of
    the registry. ``restore`` is called once, with ``(index in keys, original)`` of each
    claim ``instance`` held last. The registry is written only if it returns (a failure
    leaves it as it was; releasing is idempotent, so the caller may go one by one)."""
    with shared_lock(state_root):
        registry = read(state_root)
        last: list[tuple[int, Any]] = []
        for index, key in enumerate(keys):
            entry = registry.get(key)
            if entry is None:
                continue
            if instance in entry["holders"]:
                entry["holders"].remove(instance)
            if not entry["holders"]:
                last.append((index, entry["original"]))
                del registry[key]
        restore(last)
        _write(state_root, registry)

