"""Canary ramp steps: validation, and when the next step is due."""

import pytest

from ml_api.errors import InvalidDefinition
from ml_api.rollout.ramp import (
    RampStep,
    is_due,
    parse_ramp,
    seconds_until_next,
    steps_from_json,
)

STEPS = (RampStep(0.05, 3600), RampStep(0.25, 1800), RampStep(0.5, 60), RampStep(1.0, 0))


def test_a_valid_ramp_round_trips_through_its_json_form():
    raw = [{"allocation": 0.05, "min_seconds": 3600}, {"allocation": 0.25, "min_seconds": 1800},
           {"allocation": 0.5, "min_seconds": 60}, {"allocation": 1}]
    steps = parse_ramp(raw)
    assert steps == STEPS
    assert steps_from_json([s.as_dict() for s in steps]) == steps


@pytest.mark.parametrize("raw,message", [
    ("0.05,1.0", "list of 1 to 20"),
    ([], "list of 1 to 20"),
    ([{"allocation": i / 100} for i in range(1, 22)], "list of 1 to 20"),
    ([{"allocation": 0.5}, {"allocation": 0.5}], "rise strictly"),
    ([{"allocation": 0.5}, {"allocation": 0.25}], "rise strictly"),
    ([{"allocation": 1.5}], "step 0: traffic_allocation must be"),
    ([{"allocation": True}], "step 0: traffic_allocation must be"),
    ([{"allocation": 0.1, "min_seconds": -1}], "min_seconds must be"),
    ([{"allocation": 0.1, "min_seconds": "60"}], "min_seconds must be"),
    ([{"allocation": 0.1, "min_seconds": 10**9}], "min_seconds must be"),
    ([{"allocation": 0.1, "minutes": 5}], "step 0 must be an object"),
    ([0.1, 0.2], "step 0 must be an object"),
])
def test_invalid_ramps_are_refused_saying_why(raw, message):
    with pytest.raises(InvalidDefinition, match=message):
        parse_ramp(raw)


@pytest.mark.parametrize("step,elapsed,remaining", [
    (0, 0.0, 3600.0), (0, 3599.5, 0.5), (0, 3600.0, 0.0), (0, 9999.0, 0.0), (2, 59.0, 1.0), (3, 1e9, None),
])
def test_the_next_step_is_due_after_the_current_steps_minimum(step, elapsed, remaining):
    assert seconds_until_next(STEPS, step, elapsed) == remaining
    assert is_due(STEPS, step, elapsed) is (remaining == 0.0)


def test_the_last_step_is_never_due():
    assert not is_due(STEPS, len(STEPS) - 1, 1e12)
    assert not is_due((RampStep(1.0, 0),), 0, 10)
