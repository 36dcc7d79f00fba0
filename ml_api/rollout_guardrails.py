"""Automatic rollback: which guardrail a variation breaches in a window of request counts (pure).

Only thresholds the experiment defines are enforced, and only on variations (the control
is the status quo, not the change under test). A variation is judged once it has served
``min_requests`` requests in the window (default DEFAULT_MIN_REQUESTS), so a handful of
early failures cannot pause an experiment.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ml_api.request_stats import latency_percentile
from ml_api.results_query import RequestSums
from ml_api.results_report import DEFAULT_GUARDRAILS

DEFAULT_MIN_REQUESTS = int(DEFAULT_GUARDRAILS["min_requests"])
# Enforced thresholds in the order they are checked: the first breach found is reported.
ENFORCED = ("max_error_rate", "max_fallback_rate", "max_p95_latency_ms")
# The sliding window: the current and the previous minute of request counts.
WINDOW_MINUTES = 2


@dataclass(frozen=True)
class Breach:
    guardrail: str
    variant: str
    observed: float
    threshold: float
    requests: int

    def describe(self) -> str:
        """A sentence for people: which variant, what was seen, what was allowed."""
        return (f"{self.variant}: {self.guardrail} observed {self.observed:.4g} > threshold {self.threshold:.4g} "
                f"over {self.requests} requests")

    def as_dict(self) -> dict[str, Any]:
        """The JSON form kept with the pause (history, /ready, results)."""
        return {"guardrail": self.guardrail, "variant": self.variant, "observed": self.observed,
                "threshold": self.threshold, "requests": self.requests}


def observed(sums: RequestSums) -> dict[str, float | None]:
    """The value each enforced guardrail compares, for one variant's counts (None: no requests)."""
    if not sums.requests:
        return dict.fromkeys(ENFORCED)
    return {
        "max_error_rate": sums.errors / sums.requests,
        "max_fallback_rate": sums.fallbacks / sums.requests,
        "max_p95_latency_ms": latency_percentile(sums.latency_buckets, 0.95),
    }


def first_breach(thresholds: Mapping[str, float], window: Mapping[str, RequestSums], control: str) -> Breach | None:
    """The first enforced threshold a variation exceeds in ``window`` (variant -> counts), or None."""
    min_requests = thresholds.get("min_requests", DEFAULT_MIN_REQUESTS)
    for variant in sorted(window):
        sums = window[variant]
        if variant == control or sums.requests < max(min_requests, 1):
            continue
        values = observed(sums)
        for guardrail in ENFORCED:
            value = values[guardrail]
            if guardrail in thresholds and value is not None and value > thresholds[guardrail]:
                return Breach(guardrail, variant, value, float(thresholds[guardrail]), sums.requests)
    return None


def window_start(minute: int, from_minute: int) -> int:
    """The first minute the guardrails count: the window's, but none before the last guardrail pause."""
    return max(minute - WINDOW_MINUTES + 1, from_minute)
