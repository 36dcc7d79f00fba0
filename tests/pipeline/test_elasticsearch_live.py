"""Against a real Elasticsearch (ELASTICSEARCH_URL): setup is repeatable and maps events as designed."""

from __future__ import annotations

import copy
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from ml_api.telemetry import elastic

from .project import leaf_fields

ELASTICSEARCH_URL = os.environ.get("ELASTICSEARCH_URL")

pytestmark = pytest.mark.skipif(
    not ELASTICSEARCH_URL,
    reason="ELASTICSEARCH_URL is not set: no Elasticsearch to install the template into "
    "(e.g. `docker compose up -d elasticsearch` and ELASTICSEARCH_URL=http://127.0.0.1:9200)",
)


@pytest.fixture(scope="module")
def es() -> Iterator[Any]:
    """A client for the Elasticsearch named by ELASTICSEARCH_URL."""
    from elasticsearch import Elasticsearch

    client = Elasticsearch(ELASTICSEARCH_URL, request_timeout=30)
    yield client
    client.close()


@pytest.fixture()
def index(es: Any) -> Iterator[str]:
    """A fresh index name under the template's pattern, deleted afterwards."""
    name = f"abtest-events-pytest-{uuid.uuid4().hex}"
    yield name
    es.indices.delete(index=name, ignore_unavailable=True)


def test_setup_twice_then_a_sample_event_gets_the_template_mapping(es, index, examples, template_fields) -> None:
    elastic.setup(es, retention_days=30)
    elastic.setup(es, retention_days=30)

    policy = es.ilm.get_lifecycle(name=elastic.POLICY_NAME)[elastic.POLICY_NAME]["policy"]
    assert policy["phases"]["delete"]["min_age"] == "30d"

    event = copy.deepcopy(examples["predict"])
    event["not_in_the_template"] = {"value": 1}
    es.index(index=index, document=event, refresh=True)
    regression = copy.deepcopy(examples["predict"])
    regression["prediction"]["label"] = 3.25
    es.index(index=index, document=regression, refresh=True)

    mapping = es.indices.get_mapping(index=index)[index]["mappings"]
    mapped = {path: field["type"] for path, field in leaf_fields(mapping["properties"]).items()}
    assert mapped == {path: field["type"] for path, field in template_fields.items()}
    assert "not_in_the_template" not in mapping["properties"], "dynamic: false must not add fields"

    settings = es.indices.get_settings(index=index)[index]["settings"]["index"]
    assert settings["lifecycle"]["name"] == elastic.POLICY_NAME

    labels = es.search(index=index, size=0, aggs={"labels": {"terms": {"field": "prediction.label"}}})
    assert {b["key"] for b in labels["aggregations"]["labels"]["buckets"]} == {"setosa", "3.25"}


def test_a_refused_event_is_kept_in_the_dlq_indices_whatever_its_fields_hold(es, examples) -> None:
    """The dead-letter pipeline's documents: the refused event's own fields are not indexed, so they
    cannot be refused again, while dlq.* is searchable."""
    elastic.setup(es, retention_days=30)
    name = f"abtest-dlq-pytest-{uuid.uuid4().hex}"
    refused = copy.deepcopy(examples["predict"])
    refused["latency"]["total_ms"] = "slow"
    refused["experiment"]["name"] = {"not": "a keyword"}
    refused["dlq"] = {"reason": "Could not index event to Elasticsearch. status: 400", "entry_time": refused["@timestamp"],
                      "plugin_id": "abtest_elasticsearch", "plugin_type": "elasticsearch",
                      "error": {"type": "document_parsing_exception", "reason": "failed to parse field"},
                      "event": {"action": "predict"}, "experiment": {"name": "{\"not\":\"a keyword\"}"}}
    try:
        es.index(index=name, document=refused, refresh=True)
        mapping = es.indices.get_mapping(index=name)[name]["mappings"]
        assert set(mapping["properties"]) == {"@timestamp", "dlq"}
        found = es.search(index=name, query={"term": {"dlq.error.type": "document_parsing_exception"}})
        assert found["hits"]["total"]["value"] == 1
    finally:
        es.indices.delete(index=name, ignore_unavailable=True)
