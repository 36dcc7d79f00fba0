"""Fixtures shared by the pipeline tests: the project's config files, parsed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from dotenv import dotenv_values

from .project import ROOT, leaf_fields


@pytest.fixture(scope="session")
def root() -> Path:
    """The repository root."""
    return ROOT


@pytest.fixture(scope="session")
def api_env() -> dict[str, str | None]:
    """api.env as the gateway reads it."""
    return dotenv_values(ROOT / "api.env")


@pytest.fixture(scope="session")
def event_schema() -> dict[str, Any]:
    """The JSON schema of a gateway event."""
    return json.loads((ROOT / "logstash" / "event.schema.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def index_template() -> dict[str, Any]:
    """The composable index template for abtest-events-*."""
    return json.loads((ROOT / "logstash" / "index-template.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def template_fields(index_template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Dotted field name -> mapping, for every mapped field."""
    return leaf_fields(index_template["template"]["mappings"]["properties"])


@pytest.fixture(scope="session")
def dlq_index_template() -> dict[str, Any]:
    """The composable index template for abtest-dlq-* (events Elasticsearch refused)."""
    return json.loads((ROOT / "logstash" / "dlq-index-template.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def fields_by_data_view(template_fields, dlq_index_template) -> dict[str, dict[str, dict[str, Any]]]:
    """Kibana data view id -> the mapped fields of the indices it covers."""
    return {"abtest-events": template_fields,
            "abtest-dlq": leaf_fields(dlq_index_template["template"]["mappings"]["properties"])}


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    """docker-compose.yml, parsed (YAML merge keys resolved)."""
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def saved_objects() -> list[dict[str, Any]]:
    """The Kibana saved objects, export-details line excluded."""
    lines = (ROOT / "kibana" / "saved-objects.ndjson").read_text(encoding="utf-8").splitlines()
    objects = [json.loads(line) for line in lines if line.strip()]
    return [obj for obj in objects if "exportedCount" not in obj]


@pytest.fixture(scope="session")
def examples() -> dict[str, dict[str, Any]]:
    """Example events by file stem (one per event.action)."""
    return {
        path.stem: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted((ROOT / "logstash" / "examples").glob("*.json"))
    }
