"""The JSON Schemas of the commands' ``--json`` output (docs/schemas), for the tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

SCHEMAS = Path(__file__).resolve().parents[1] / "docs" / "schemas"


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    return loaded


def valid(data: Any, name: str) -> Any:
    """``data``, once it is checked against the schema ``name`` (raises if it is not)."""
    jsonschema.validate(data, schema(name))
    return data
