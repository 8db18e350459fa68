"""The ``[backup]`` settings: how many pre-upgrade backups ``cf-launch upgrade`` keeps
(docs/operations.md). Validation only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from coldfront_launch.config import validate as v

SECTION = "backup"
KEYS = {"keep"}
MAX_KEEP = 1000


@dataclass(frozen=True)
class BackupSettings:
    """``keep``: the pre-upgrade backups of an instance kept, the newest included."""

    keep: int = 3

    def to_raw(self) -> dict[str, Any]:
        return {"keep": self.keep}


def backup_from_mapping(data: Any) -> BackupSettings:
    """Validate the ``[backup]`` table."""
    data = v.table(SECTION, data, KEYS)
    keep = BackupSettings().keep
    if "keep" in data:
        keep = v.whole_number(f"{SECTION}.keep", data["keep"], 1, MAX_KEEP)
    return BackupSettings(keep=keep)
