"""Host resources shared by several instances: claimed by each, restored by the last.

A claim is keyed ``<kind>:<name>`` (``sysctl:net.ipv4.ip_forward``, ``file:/etc/...``,
``link:sbr0``, ``offloads:sbr0``). The first claimant records the resource's original
state; when the last claimant releases it, that state is put back. The registry lives in
``<state_root>/claims.json`` under the shared lock.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .state import shared_lock

FILE = "claims.json"


def _path(state_root: Path) -> Path:
    return state_root / FILE


def read(state_root: Path) -> dict[str, Any]:
    path = _path(state_root)
    if not path.exists():
        return {}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _write(state_root: Path, claims: dict[str, Any]) -> None:
    path = _path(state_root)
    if not claims:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(claims, indent=2, sort_keys=True))
    os.replace(tmp, path)


def claim(state_root: Path, instance: str, resource: str,
          original: Callable[[], Any], check: Callable[[dict[str, Any]], None] | None = None,
          extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Add ``instance`` as a holder; the first holder stores ``original()``.

    ``check`` sees an existing claim and may raise (e.g. a shared file's content differs).
    """
    with shared_lock(state_root):
        claims = read(state_root)
        entry = claims.get(resource)
        if entry is None:
            entry = {"original": original(), "holders": [], **(extra or {})}
        elif check is not None:
            check(entry)
        if instance not in entry["holders"]:
            entry["holders"].append(instance)
        claims[resource] = entry
        _write(state_root, claims)
        return dict(entry)


def release(state_root: Path, instance: str, resource: str,
            restore: Callable[[Any], None]) -> None:
    """Drop ``instance``'s hold; the last holder calls ``restore(original)``."""
    with shared_lock(state_root):
        claims = read(state_root)
        entry = claims.get(resource)
        if entry is None:
            return
        if instance in entry["holders"]:
            entry["holders"].remove(instance)
        if not entry["holders"]:
            restore(entry["original"])
            del claims[resource]
        _write(state_root, claims)


def holders(state_root: Path, resource: str) -> list[str]:
    entry = read(state_root).get(resource)
    return list(entry["holders"]) if entry else []
