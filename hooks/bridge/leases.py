"""The CNI address lease of this instance (host-local IPAM keeps one file per address
under ``/var/lib/cni/networks/<network>``, holding the container's id).

CNI removes a lease when Apptainer stops the instance. An instance that dies (killed, a
crash of its starter) leaves it, and a fixed ``ip`` then looks "in use", or the network's
addresses run out. So ``post_start`` notes the lease the instance got, in the state folder,
and once the instance is gone (``post_stop``, or the next ``pre_start``) exactly that lease
is removed, if it still names that container; nothing else in the folder is touched."""

from __future__ import annotations

import json
from pathlib import Path

from coldfront_launch import atomic

NOTE = "cni-lease.json"


def _owner(lease: Path) -> str:
    try:
        return lease.read_text(errors="replace").split()[0]
    except (OSError, IndexError):
        return ""


def _noted(path: Path) -> list[tuple[Path, str]]:
    """The noted leases and owners (one per address family); the one-lease form of before
    IPv6 read too; a damaged note is no note."""
    try:
        data = json.loads(path.read_text())
        entries = data.get("leases", [data])
        return [(Path(e["lease"]), str(e["owner"])) for e in entries]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def note(state_dir: Path, lease: Path) -> None:
    """Remember ``lease`` and the container it names, beside the leases noted already (no
    lease: nothing to remember)."""
    owner = _owner(lease)
    if not owner:
        return
    kept = [(p, o) for p, o in _noted(state_dir / NOTE) if p != lease]
    atomic.write_json(state_dir / NOTE, {"leases": [
        {"lease": str(p), "owner": o} for p, o in [*kept, (lease, owner)]]}, mode=0o600)


def release(state_dir: Path) -> str:
    """Remove each noted lease that still names its noted container; forget the note.
    Returns the leases removed, comma-separated ("" for none). Call only once the
    instance is gone."""
    path = state_dir / NOTE
    removed = []
    for lease, owner in _noted(path):
        if owner and _owner(lease) == owner:
            lease.unlink(missing_ok=True)
            removed.append(str(lease))
    path.unlink(missing_ok=True)
    return ", ".join(removed)
