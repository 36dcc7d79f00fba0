"""The example events validate against the event schema; broken events do not."""

from __future__ import annotations

import copy
from typing import Any, Callable

import jsonschema
import pytest

ACTIONS = ["predict", "feedback", "error", "experiment_change", "shadow_predict", "guardrail_breach"]


@pytest.fixture(scope="module")
def validator(event_schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    """A draft 2020-12 validator for the event schema, formats checked."""
    jsonschema.Draft202012Validator.check_schema(event_schema)
    return jsonschema.Draft202012Validator(
        event_schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def test_the_schema_lists_exactly_the_documented_actions(event_schema: dict[str, Any]) -> None:
    assert event_schema["properties"]["event"]["properties"]["action"]["enum"] == ACTIONS


def test_there_is_one_example_per_action(examples: dict[str, dict[str, Any]]) -> None:
    assert sorted(examples) == sorted(ACTIONS)
    for stem, event in examples.items():
        assert event["event"]["action"] == stem


@pytest.mark.parametrize("action", ACTIONS)
def test_example_is_valid(action: str, examples: dict[str, dict[str, Any]], validator) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(examples[action])]
    assert errors == []


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(event: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = event
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    return mutate


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(event: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = event
        for name in parents:
            node = node[name]
        del node[leaf]
    return mutate


BROKEN_PREDICTS = {
    "typo in a field name": _set("experiment.varaint", "control"),
    "unknown top-level object": _set("debug", {"x": 1}),
    "flat dotted key instead of nesting": lambda event: event.update({"experiment.variant": "control"}),
    "missing variant": _delete("experiment.variant"),
    "missing latency": _delete("latency.model_ms"),
    "missing user hash": _delete("user.hash"),
    "missing host": _delete("host"),
    "status code as a string": _set("http.response.status_code", "200"),
    "probability above 1": _set("prediction.probability", 1.5),
    "in_experiment as a string": _set("experiment.in_experiment", "true"),
    "timestamp without milliseconds": _set("@timestamp", "2026-11-23T14:00:00Z"),
    "timestamp not in UTC": _set("@timestamp", "2026-11-23T15:00:00.123+01:00"),
    "unknown action": _set("event.action", "predicted"),
    "wrong dataset": _set("event.dataset", "abtest"),
    "wrong service name": _set("service.name", "gateway"),
    "request id not 32 hex": _set("http.request.id", "req-1"),
    "user hash not 16 hex": _set("user.hash", "9F86D081884C7D65"),
    "negative latency": _set("latency.total_ms", -1.0),
    "pid as a float": _set("process.pid", 12.5),
    "fallback without an error": _set("experiment.fallback", True),
}


@pytest.mark.parametrize("mutation", BROKEN_PREDICTS.values(), ids=BROKEN_PREDICTS.keys())
def test_broken_predict_is_rejected(mutation, examples: dict[str, dict[str, Any]], validator) -> None:
    event = copy.deepcopy(examples["predict"])
    mutation(event)
    assert not validator.is_valid(event)


@pytest.mark.parametrize(
    ("action", "mutation"),
    [
        ("feedback", _delete("feedback.outcome")),
        ("feedback", _set("feedback.outcome", True)),
        ("feedback", _delete("experiment.variant")),
        ("error", _delete("error.type")),
        ("error", _set("event.outcome", "success")),
        ("experiment_change", _delete("change.actor")),
        ("shadow_predict", _delete("model.version")),
        ("guardrail_breach", _delete("experiment")),
    ],
)
def test_per_action_requirements(action: str, mutation, examples, validator) -> None:
    event = copy.deepcopy(examples[action])
    mutation(event)
    assert not validator.is_valid(event)


def test_a_fallback_with_its_error_is_valid(examples, validator) -> None:
    event = copy.deepcopy(examples["predict"])
    event["experiment"]["fallback"] = True
    event["experiment"]["variant"] = "variation"
    event["error"] = {"type": "ModelError", "message": "forest model raised"}
    assert validator.is_valid(event)


def test_numeric_label_and_raw_user_id_are_allowed(examples, validator) -> None:
    event = copy.deepcopy(examples["predict"])
    event["prediction"]["label"] = 3.25
    event["user"]["id"] = "u-42"
    assert validator.is_valid(event)
