"""How an event's fields and time are written: checked against the standard library."""

import random
from datetime import datetime, timezone

import pytest

from ml_api.telemetry.events import timestamp, without_none


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


def test_unknown_values_and_the_groups_they_empty_are_left_out_at_any_depth():
    fields = {"event": {"outcome": "success"}, "http": {"request": {"id": "r", "method": None}},
              "user": {"hash": "h", "id": None}, "error": {"type": None, "message": None}, "model": None}
    assert without_none(fields) == {
        "event": {"outcome": "success"},
        "http": {"request": {"id": "r"}},
        "user": {"hash": "h"},
    }


def test_the_callers_objects_are_not_changed():
    user = {"hash": "h", "id": None}
    fields = {"user": user, "latency": {"total_ms": 0.5}}
    kept = without_none(fields)
    assert user == {"hash": "h", "id": None} and fields["user"] is user
    assert kept["latency"] == {"total_ms": 0.5}


def test_false_zero_and_empty_text_are_values_not_unknowns():
    fields = {"experiment": {"in_experiment": False, "fallback": False}, "feedback": {"outcome": 0.0},
              "error": {"message": ""}}
    assert without_none(fields) == fields
