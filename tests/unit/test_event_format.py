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
