"""Where the project's files are, and how to walk a nested field tree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def leaf_fields(properties: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """Dotted path -> definition for every leaf of a nested `properties` tree.

    Works for both an Elasticsearch mapping (leaves carry "type") and the JSON schema
    (object nodes carry "properties").
    """
    leaves: dict[str, dict[str, Any]] = {}
    for name, definition in properties.items():
        path = f"{prefix}{name}"
        if "properties" in definition:
            leaves.update(leaf_fields(definition["properties"], f"{path}."))
        else:
            leaves[path] = definition
    return leaves
