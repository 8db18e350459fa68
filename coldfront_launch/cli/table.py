"""``cf-launch status --all`` as a table, one line per instance (like ``podman ps``)."""

from __future__ import annotations

from typing import Any

COLUMNS = ("NAME", "STATE", "HOOKS", "ADDRESS", "SYSTEMD", "HTTP", "DRIFT", "URL")


def cells(row: dict[str, Any]) -> tuple[str, ...]:
    """One instance's cells, in :data:`COLUMNS` order."""
    inst = row.get("instance") or {}
    if row["running"]:
        state = "running"
        address = inst.get("ip") or "(host)"
        drifted = row.get("drift") or []
        drift = f"{len(drifted)} missing or changed" if drifted else "none"
    else:
        state = "stopped" if not row.get("host_changes") else "stopped, changes to undo"
        address = drift = "-"
    if not row.get("managed", True):
        state += " (not cf-launch)"
        drift = "-"
    return (row["name"], state, ",".join(row.get("hooks") or []) or "-", address,
            row.get("system_state") or "-", str(row.get("http_status") or "-"), drift,
            row.get("url") or "-")


def table(rows: list[dict[str, Any]]) -> str:
    """Aligned columns with a header; a header alone when there is nothing to list."""
    lines = [COLUMNS, *(cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() + "\n"
                   for line in lines)
