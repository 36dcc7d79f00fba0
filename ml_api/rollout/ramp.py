"""Canary ramp schedules: validating the steps and deciding when the next one is due (pure).

A ramp is a list of steps ``{"allocation": share 0..1, "min_seconds": how long at least}``.
Step 0's allocation applies when the ramp is set; each later step applies once the
current one has run (with the experiment running) for its ``min_seconds``. Allocations
must rise strictly: traffic allocation is monotone in the share (a user inside 5 % is
inside 25 %), so a rising ramp only ever adds users and never moves anyone.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ml_api.errors import InvalidDefinition
from ml_api.experiments.definitions import parse_allocation

MAX_STEPS = 20
MAX_STEP_SECONDS = 90 * 86400


@dataclass(frozen=True)
class RampStep:
    allocation: float
    min_seconds: float

    def as_dict(self) -> dict[str, float]:
        """The JSON form stored in MySQL and shown by the API."""
        return {"allocation": self.allocation, "min_seconds": self.min_seconds}


def parse_ramp(raw: Any) -> tuple[RampStep, ...]:
    """Validate a list of 1-20 ``{"allocation", "min_seconds"}``, allocations strictly rising."""
    if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)) or not 1 <= len(raw) <= MAX_STEPS:
        raise InvalidDefinition(f"a ramp is a list of 1 to {MAX_STEPS} steps {{allocation, min_seconds}}")
    steps = tuple(_parse_step(index, item) for index, item in enumerate(raw))
    for before, after in zip(steps, steps[1:]):
        if after.allocation <= before.allocation:
            raise InvalidDefinition(
                "ramp allocations must rise strictly (a lower step would drop users who were in), "
                f"got {before.allocation:g} then {after.allocation:g}"
            )
    return steps


def _parse_step(index: int, item: Any) -> RampStep:
    if not isinstance(item, Mapping) or set(item) - {"allocation", "min_seconds"}:
        raise InvalidDefinition(f"ramp step {index} must be an object with allocation and min_seconds")
    seconds = item.get("min_seconds", 0)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= MAX_STEP_SECONDS:
        raise InvalidDefinition(
            f"ramp step {index}: min_seconds must be a number between 0 and {MAX_STEP_SECONDS}, got {seconds!r}"
        )
    try:
        allocation = parse_allocation(item.get("allocation"))
    except InvalidDefinition as exc:
        raise InvalidDefinition(f"ramp step {index}: {exc}") from None
    return RampStep(allocation, float(seconds))


def steps_from_json(raw: Sequence[Mapping[str, float]]) -> tuple[RampStep, ...]:
    """Steps as stored (already validated when they were set)."""
    return tuple(RampStep(float(s["allocation"]), float(s["min_seconds"])) for s in raw)


def seconds_until_next(steps: Sequence[RampStep], current: int, elapsed_seconds: float) -> float | None:
    """How long the current step still has to run; None when it is the last step."""
    if current >= len(steps) - 1:
        return None
    return max(steps[current].min_seconds - elapsed_seconds, 0.0)


def is_due(steps: Sequence[RampStep], current: int, elapsed_seconds: float) -> bool:
    """Whether the step after ``current`` may start now."""
    return seconds_until_next(steps, current, elapsed_seconds) == 0.0
