"""Guardrails: one set of rules, one evaluator, for the results document and the rollout engine.

An experiment's thresholds are the ones it stores (admin API / CLI ``guardrails``) over
DEFAULT_THRESHOLDS. A variant is judged once it has served ``min_requests`` requests (at
least one), so a handful of early failures decide nothing; it breaches a guardrail when the
observed value is above the threshold. The results document judges every variant on all its
requests (the control's breach is shown, only a variation's stops the experiment); the
rollout engine judges variations on the last two minutes and pauses the experiment on the
first breach, for experiments that store guardrails (automatic rollback is opt-in).
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ml_api.experiments.definitions import parse_guardrails
from ml_api.telemetry.request_stats import RequestSums, latency_percentile

DEFAULT_THRESHOLDS: dict[str, float] = {
    "max_error_rate": 0.05,
    "max_fallback_rate": 0.05,
    "max_p95_latency_ms": 250.0,
    "min_requests": 200,
    "mde": 0.1,  # not a guardrail: the minimum detectable effect the plan uses, relative to control's rate
}
DEFAULT_MIN_REQUESTS = int(DEFAULT_THRESHOLDS["min_requests"])
# Enforced thresholds in the order they are checked, with how people read them.
ENFORCED: dict[str, tuple[str, str]] = {
    "max_error_rate": ("error rate", "%"),
    "max_fallback_rate": ("fallback rate", "%"),
    "max_p95_latency_ms": ("p95 latency", " ms"),
}
# The rollout engine's sliding window: the current and the previous minute of request counts.
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


@dataclass(frozen=True)
class VariantCheck:
    """One variant judged against the thresholds."""

    variant: str
    sums: RequestSums
    observed: dict[str, float | None]
    evaluated: bool  # enough requests to be judged
    breaches: list[Breach] = field(default_factory=list)


def stored_thresholds(text: str | None) -> tuple[dict[str, float], str | None]:
    """The thresholds stored with an experiment (JSON text), and why they were ignored if they were.

    Only the admin API and the CLI write them, validated; a hand-edited value that does not
    parse enforces nothing of its own and is reported (the defaults still apply)."""
    if not text:
        return {}, None
    try:
        return parse_guardrails(json.loads(text)), None
    except ValueError as exc:  # bad JSON or InvalidDefinition
        return {}, f"stored guardrails ignored, using the defaults: {exc}"


def effective_thresholds(stored: Mapping[str, float]) -> dict[str, float]:
    """The thresholds that apply: the stored ones over the defaults."""
    return DEFAULT_THRESHOLDS | dict(stored)


def observed(sums: RequestSums) -> dict[str, float | None]:
    """The value each enforced guardrail compares, for one variant's counts (None: no requests)."""
    if not sums.requests:
        return dict.fromkeys(ENFORCED)
    return {
        "max_error_rate": sums.errors / sums.requests,
        "max_fallback_rate": sums.fallbacks / sums.requests,
        "max_p95_latency_ms": latency_percentile(sums.latency_buckets, 0.95),
    }


def check_variant(thresholds: Mapping[str, float], variant: str, sums: RequestSums) -> VariantCheck:
    """Judge one variant's counts against effective ``thresholds`` (``effective_thresholds``)."""
    values = observed(sums)
    evaluated = sums.requests >= max(thresholds["min_requests"], 1)
    breaches = [
        Breach(guardrail, variant, value, float(thresholds[guardrail]), sums.requests)
        for guardrail in ENFORCED
        if evaluated and (value := values[guardrail]) is not None and value > thresholds[guardrail]
    ]
    return VariantCheck(variant, sums, values, evaluated, breaches)


def first_breach(stored: Mapping[str, float], window: Mapping[str, RequestSums], control: str) -> Breach | None:
    """The first breach of a variation in ``window`` (variant -> counts), or None; the control never pauses."""
    thresholds = effective_thresholds(stored)
    for variant in sorted(window):
        if variant != control and (breaches := check_variant(thresholds, variant, window[variant]).breaches):
            return breaches[0]
    return None


def window_start(minute: int, from_minute: int) -> int:
    """The first minute the guardrails count: the window's, but none before the last guardrail pause."""
    return max(minute - WINDOW_MINUTES + 1, from_minute)
