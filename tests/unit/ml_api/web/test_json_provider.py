"""The orjson provider answers the same JSON documents as Flask's default provider."""

import dataclasses
import decimal
import json
import uuid
from datetime import date, datetime, timezone

import pytest
from flask import Flask

from ml_api.web.json_provider import OrjsonProvider


@dataclasses.dataclass
class Point:
    x: float
    label: str


VALUES = [
    {"request_id": "ab" * 16, "probabilities": {"setosa": 0.1, "versicolor": 0.2, "virginica": 0.7}, "fallback": False},
    {"nested": [1, 2.5, None, True, {"deep": ["x"]}], "empty": {}, "big": 2**63 - 1, "small": 1e-300},
    {"unicode": "Grüße, 世界 ✓", "escapes": "quote \" backslash \\ newline \n tab \t"},
    {"when": datetime(2026, 11, 23, 19, 30, 5, tzinfo=timezone.utc), "day": date(2026, 1, 2)},
    {"amount": decimal.Decimal("1.10"), "id": uuid.UUID(int=7), "point": Point(1.5, "p")},
    {1: "integer key", 2.5: "float key"},
    {"lone surrogate": "\ud800"},  # orjson refuses it; Flask's encoder escapes it
    [1, "list at the top"],
    "a string",
    None,
]


def apps() -> tuple[Flask, Flask]:
    default, fast = Flask("default"), Flask("fast")
    fast.json = OrjsonProvider(fast)
    for app in (default, fast):
        app.json.sort_keys = False
    return default, fast


@pytest.mark.parametrize("value", VALUES, ids=lambda v: str(v)[:30])
def test_responses_hold_the_same_document(value):
    default, fast = apps()
    with default.app_context():
        expected = default.json.response(value)
    with fast.app_context():
        answered = fast.json.response(value)
    assert answered.mimetype == expected.mimetype == "application/json"
    assert answered.get_data().endswith(b"\n")
    assert json.loads(answered.get_data()) == json.loads(expected.get_data())


@pytest.mark.parametrize("value", VALUES, ids=lambda v: str(v)[:30])
def test_dumps_gives_the_same_document(value):
    default, fast = apps()
    with default.app_context(), fast.app_context():
        assert json.loads(fast.json.dumps(value)) == json.loads(default.json.dumps(value))


def test_key_order_is_kept_unless_sorting_is_asked_for():
    _, fast = apps()
    with fast.app_context():
        assert fast.json.dumps({"b": 1, "a": 2}) == '{"b":1,"a":2}'
        fast.json.sort_keys = True
        assert fast.json.dumps({"b": 1, "a": 2}) == '{"a":2,"b":1}'


def test_debug_mode_still_indents():
    _, fast = apps()
    fast.debug = True
    with fast.app_context():
        assert fast.json.response({"a": 1}).get_data() == b'{\n  "a": 1\n}\n'


def test_what_neither_can_encode_is_refused_alike():
    default, fast = apps()
    with default.app_context(), fast.app_context():
        for app in (default, fast):
            with pytest.raises(TypeError):
                app.json.response({"object": object()})
