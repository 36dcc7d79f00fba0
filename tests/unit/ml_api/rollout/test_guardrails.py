"""Which guardrail a variation breaches, judged on given request counts."""

import pytest

from ml_api.rollout.guardrails import (
    DEFAULT_MIN_REQUESTS,
    DEFAULT_THRESHOLDS,
    Breach,
    check_variant,
    effective_thresholds,
    first_breach,
    observed,
    window_start,
)
from ml_api.telemetry.request_stats import RequestSums, latency_bucket


def sums(requests: int, errors: int = 0, fallbacks: int = 0, latency_ms: float = 10.0,
         slow: int = 0, slow_ms: float = 1000.0) -> RequestSums:
    """Counts of one variant: ``slow`` of the requests took ``slow_ms``, the rest ``latency_ms``."""
    buckets = {latency_bucket(latency_ms): requests - slow}
    if slow:
        buckets[latency_bucket(slow_ms)] = slow
    return RequestSums(requests, errors, fallbacks, buckets)


def test_a_variation_over_its_fallback_threshold_is_a_breach():
    window = {"control": sums(300), "variation": sums(300, fallbacks=60)}
    breach = first_breach({"max_fallback_rate": 0.1, "min_requests": 100}, window, control="control")
    assert breach == Breach("max_fallback_rate", "variation", 0.2, 0.1, 300)
    assert breach.describe() == "variation: max_fallback_rate observed 0.2 > threshold 0.1 over 300 requests"


def test_at_the_threshold_is_not_a_breach():
    window = {"variation": sums(100, fallbacks=10)}
    assert first_breach({"max_fallback_rate": 0.1, "min_requests": 100}, window, "control") is None


def test_the_control_never_pauses_the_experiment():
    window = {"control": sums(500, errors=500), "variation": sums(500)}
    assert first_breach({"max_error_rate": 0.01, "min_requests": 1}, window, "control") is None


def test_below_min_requests_nothing_is_judged():
    window = {"variation": sums(99, errors=99)}
    assert first_breach({"max_error_rate": 0.01, "min_requests": 100}, window, "control") is None
    assert first_breach({"max_error_rate": 0.01, "min_requests": 99}, window, "control") is not None


def test_min_requests_defaults_to_the_results_default():
    thresholds = {"max_error_rate": 0.01}
    assert first_breach(thresholds, {"v": sums(DEFAULT_MIN_REQUESTS - 1, errors=50)}, "control") is None
    assert first_breach(thresholds, {"v": sums(DEFAULT_MIN_REQUESTS, errors=50)}, "control") is not None


def test_thresholds_the_experiment_does_not_set_take_the_defaults():
    window = {"variation": sums(1000, errors=40, fallbacks=60, slow=40)}  # 4 % errors, 6 % fallbacks, fast p95
    assert first_breach({"min_requests": 10, "mde": 0.1}, window, "control") == Breach(
        "max_fallback_rate", "variation", 0.06, DEFAULT_THRESHOLDS["max_fallback_rate"], 1000)
    assert first_breach({"max_fallback_rate": 0.1}, window, "control") is None, "a set threshold wins"


def test_one_evaluation_lists_every_breach_and_the_engine_reports_the_first():
    thresholds = effective_thresholds({"max_p95_latency_ms": 100})
    check = check_variant(thresholds, "variation", sums(300, errors=30, fallbacks=30, slow=100))
    assert check.evaluated
    assert [b.guardrail for b in check.breaches] == ["max_error_rate", "max_fallback_rate", "max_p95_latency_ms"]
    assert first_breach({"max_p95_latency_ms": 100}, {"variation": check.sums}, "control") == check.breaches[0]


def test_a_variant_without_requests_is_never_evaluated_even_with_min_requests_zero():
    check = check_variant(effective_thresholds({"min_requests": 0}), "variation", sums(0))
    assert not check.evaluated and check.breaches == []


def test_p95_latency_comes_from_the_summed_histogram():
    thresholds = {"max_p95_latency_ms": 250, "min_requests": 100}
    fast = {"variation": sums(1000, latency_ms=20, slow=40, slow_ms=900)}  # 4 % slow: p95 is fast
    slow = {"variation": sums(1000, latency_ms=20, slow=60, slow_ms=900)}  # 6 % slow: p95 is slow
    assert first_breach(thresholds, fast, "control") is None
    breach = first_breach(thresholds, slow, "control")
    assert breach.guardrail == "max_p95_latency_ms" and 900 / 1.2 < breach.observed <= 900 * 1.2


def test_guardrails_are_checked_in_a_fixed_order_and_variants_by_name():
    thresholds = {"max_error_rate": 0.1, "max_fallback_rate": 0.1, "min_requests": 1}
    window = {"b": sums(10, fallbacks=5), "a": sums(10, errors=5, fallbacks=5)}
    breach = first_breach(thresholds, window, "control")
    assert (breach.variant, breach.guardrail) == ("a", "max_error_rate")


def test_observed_values_of_an_empty_variant_are_none():
    assert observed(RequestSums()) == {"max_error_rate": None, "max_fallback_rate": None, "max_p95_latency_ms": None}


@pytest.mark.parametrize("minute,from_minute,start", [(1000, 0, 999), (1000, 1000, 1000), (1000, 1001, 1001)])
def test_the_window_is_two_minutes_and_never_before_the_last_pause(minute, from_minute, start):
    assert window_start(minute, from_minute) == start
