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


def note(state_dir: Path, lease: Path) -> None:
    """Remember ``lease`` and the container it names (no lease: nothing to remember)."""
    owner = _owner(lease)
    if owner:
        atomic.write_json(state_dir / NOTE, {"lease": str(lease), "owner": owner}, mode=0o600)


def release(state_dir: Path) -> str:
    """Remove the noted lease if it still names the noted container; forget the note.
    Returns the lease removed ("" for none). Call only once the instance is gone."""
    path = state_dir / NOTE
    try:
        noted = json.loads(path.read_text())
        lease, owner = Path(noted["lease"]), str(noted["owner"])
    except (OSError, ValueError, KeyError, TypeError):
        path.unlink(missing_ok=True)
        return ""
    removed = ""
    if owner and _owner(lease) == owner:
        lease.unlink(missing_ok=True)
        removed = str(lease)
    path.unlink(missing_ok=True)
    return removed
