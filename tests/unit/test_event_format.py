"""How an event's fields and time are written: checked against the standard library."""

import random
from datetime import datetime, timezone

import pytest

from ml_api.events import nest, timestamp


def reference(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.mark.parametrize("at", [0.0, 1.0, 1_700_000_000.123, 1_700_000_000.9995, 1_700_000_000.9999996,
                                1_700_000_059.999, 4_102_444_799.999])
def test_timestamp_matches_datetime_at_edges(at):
    assert timestamp(at) == reference(at)


def test_timestamp_matches_datetime_for_random_times_in_and_out_of_order():
    rng = random.Random(7)
    times = [rng.uniform(0, 4e9) for _ in range(2000)]
    times += sorted(1_700_000_000 + rng.random() * 5 for _ in range(2000))  # many within one second
    assert [timestamp(at) for at in times] == [reference(at) for at in times]


def test_nest_builds_objects_and_drops_missing_values():
    flat = {"@timestamp": "t", "event.action": "predict", "http.request.id": "r", "http.request.method": "POST",
            "http.response.status_code": 200, "user.id": None, "error.type": None}
    assert nest(flat) == {
        "@timestamp": "t",
        "event": {"action": "predict"},
        "http": {"request": {"id": "r", "method": "POST"}, "response": {"status_code": 200}},
    }


def test_nest_takes_groups_given_nested_and_merges_them_with_dotted_keys():
    latency = {"model_ms": 0.3, "total_ms": 0.5}
    fields = {"event.action": "predict", "event": {"outcome": "success"}, "latency": latency,
              "http.request.id": "r", "user": {"hash": "h", "id": None}}
    assert nest(fields) == {
        "event": {"action": "predict", "outcome": "success"},
        "latency": {"model_ms": 0.3, "total_ms": 0.5},
        "http": {"request": {"id": "r"}},
        "user": {"hash": "h", "id": None},  # a nested group is taken as it is
    }
    assert latency == {"model_ms": 0.3, "total_ms": 0.5}  # the caller's objects are not changed


def test_dotted_keys_after_a_nested_group_do_not_change_the_callers_group():
    http = {"request": {"id": "r"}}
    assert nest({"http": http, "http.response.status_code": 200, "http.request.method": "POST"}) == {
        "http": {"request": {"id": "r", "method": "POST"}, "response": {"status_code": 200}},
    }
    assert http == {"request": {"id": "r"}}
