"""The verdict rules on mean and ratio primary metrics, and non-inferiority guardrails that stop a variation."""

import math

import numpy as np
import pytest

from experiment_stats import (
    GuardrailTest,
    Moments,
    SequentialMonitor,
    compare_to_control,
    decide,
    non_inferiority,
    tau2_for_numeric_mde,
)

from .test_metrics import moments


def _revenue(mean, users, seed):
    """Per-user revenue around ``mean`` (sd 5)."""
    return np.random.default_rng(seed).normal(mean, 5.0, users)


def _always_valid_interval(a, b, tau2, alpha=0.05):
    """The mSPRT interval of mean(b) - mean(a) written out from the raw values (README formula)."""
    d = b.mean() - a.mean()
    s2 = a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)
    half = math.sqrt(s2 * (s2 + tau2) / tau2 * (2 * math.log(1 / alpha) + math.log((s2 + tau2) / s2)))
    return d - half, d + half


def test_a_mean_primary_metric_ships_a_clear_winner_with_its_numbers_in_the_reason():
    a, b = _revenue(10.0, 2_000, 1), _revenue(11.0, 2_000, 2)
    tau2 = tau2_for_numeric_mde(0.5)
    monitor = SequentialMonitor("a", ["b"], tau2=tau2, metric="mean", mde_absolute=0.5)
    decision = monitor.look({"a": moments(a), "b": moments(b)})
    low, high = _always_valid_interval(a, b, tau2)
    assert decision.action == "ship_variation" and decision.variant == "b"
    assert decision.reason.startswith(f"ship b: mean {a.mean():.4g} -> {b.mean():.4g} ({b.mean() - a.mean():+.4g}, "
                                      f"always-valid 95% CI {low:+.4g} to {high:+.4g}, p=")
    evidence = decision.verdict_of("b").evidence
    assert evidence["metric"] == "mean" and evidence["control_value"] == pytest.approx(a.mean())
    assert (evidence["ci_low"], evidence["ci_high"]) == pytest.approx((low, high), rel=1e-9)


def test_a_lower_is_better_ratio_ships_the_variation_whose_ratio_fell():
    """Cost per order: sums per user of cost (y) and orders (x); b's cost per order is lower."""
    rng = np.random.default_rng(3)
    orders = [rng.poisson(2.0, 3_000).astype(float) for _ in range(2)]
    cost = [o * rng.normal(unit, 1.0, 3_000) for o, unit in zip(orders, (5.0, 4.0))]
    monitor = SequentialMonitor("a", ["b"], tau2=tau2_for_numeric_mde(0.5), metric="ratio", higher_is_better=False)
    decision = monitor.look({"a": moments(cost[0], orders[0]), "b": moments(cost[1], orders[1])})
    assert decision.action == "ship_variation"
    assert decision.reason.startswith(f"ship b: ratio {cost[0].sum() / orders[0].sum():.4g} -> ")
    assert monitor.tests["b"].ci_high < 0


def test_no_effect_on_a_mean_metric_is_judged_against_the_absolute_mde():
    a, b = _revenue(10.0, 40_000, 4), _revenue(10.0, 40_000, 5)
    tau2 = tau2_for_numeric_mde(0.5)
    decision = SequentialMonitor("a", ["b"], tau2=tau2, metric="mean", mde_absolute=0.5).look(
        {"a": moments(a), "b": moments(b)})
    low, high = _always_valid_interval(a, b, tau2)
    assert decision.action == "keep_control"
    assert decision.verdict_of("b").reason == (f"always-valid CI {low:+.4g} to {high:+.4g}, inside +/-0.5: "
                                               "an effect as large as the MDE is ruled out")


def test_holm_and_final_verdicts_work_on_numeric_looks_as_on_rates():
    """b clearly better, c undecided; the verdict on b stays when later data turns against it."""
    a, b, c = _revenue(10.0, 2_000, 6), _revenue(11.0, 2_000, 7), _revenue(10.1, 2_000, 8)
    monitor = SequentialMonitor("a", ["b", "c"], tau2=0.25, metric="mean")
    first = monitor.look({"a": moments(a), "b": moments(b), "c": moments(c)})
    assert first.verdict_of("b").verdict == "ship" and first.verdict_of("c").verdict == "keep_running"
    raw = [monitor.tests[n].p_value for n in ("b", "c")]
    holm = sorted(raw)[0] * 2
    assert first.verdict_of("b").evidence["p_value_holm"] == pytest.approx(min(1.0, holm))
    later = monitor.look({"a": moments(a), "b": moments(_revenue(9.0, 2_000, 9)), "c": moments(c)})
    assert monitor.tests["b"].current_ci_high < 0  # b now looks worse, but its verdict was given
    assert later == first


def test_a_cuped_mean_primary_uses_the_adjusted_difference():
    rng = np.random.default_rng(10)
    before = [rng.normal(10.0, 5.0, 1_000) for _ in range(2)]
    during = [x + rng.normal(effect, 2.0, 1_000) for x, effect in zip(before, (0.0, 0.4))]
    data = {"a": moments(during[0], before[0]), "b": moments(during[1], before[1])}
    adjusted = SequentialMonitor("a", ["b"], tau2=0.16, metric="mean", cuped=True)
    plain = SequentialMonitor("a", ["b"], tau2=0.16, metric="mean")
    adjusted.look(data)
    plain.look(data)
    assert adjusted.tests["b"].std_error < 0.5 * plain.tests["b"].std_error
    with pytest.raises(ValueError, match="CUPED"):
        SequentialMonitor("a", ["b"], tau2=0.16, metric="ratio", cuped=True)


def test_conversions_given_as_moments_decide_as_counts_do():
    counts = {"a": (1_000, 10_000), "b": (1_150, 10_000)}
    as_moments = {n: Moments(u, float(c), float(c)) for n, (c, u) in counts.items()}
    by_counts = SequentialMonitor("a", ["b"], tau2=1e-4).look(counts)
    assert SequentialMonitor("a", ["b"], tau2=1e-4).look(as_moments) == by_counts


def test_a_failed_non_inferiority_guardrail_stops_the_variation_and_a_pending_one_does_not():
    winning = compare_to_control((1_000, 10_000), {"B": (1_400, 10_000), "C": (1_400, 10_000)})
    slower = GuardrailTest("p95 latency", "B", non_inferiority(45.0, 25.0, margin=20.0, higher_is_better=False),
                           " ms")
    unclear = GuardrailTest("p95 latency", "C", non_inferiority(15.0, 25.0, margin=20.0, higher_is_better=False),
                            " ms")
    assert slower.test.failed and unclear.test.status == "pending"
    decision = decide(winning, guardrail_tests=[slower, unclear])
    assert decision.verdict_of("B").verdict == "stop"
    assert decision.verdict_of("B").reason == (
        f"guardrail breached: p95 latency worse than control by more than the margin 20 ms "
        f"(difference +45 ms, always-valid bound {slower.test.bad_bound:+.4g} ms)")
    assert decision.verdict_of("C").verdict == "ship"
    assert decision.action == "ship_variation" and decision.variant == "C"


def test_a_misspelt_option_is_refused_as_with_explicit_keywords():
    with pytest.raises(TypeError, match="guardrail_breach"):
        decide(compare_to_control((10, 100), {"B": (12, 100)}), guardrail_breach=[])  # type: ignore[call-arg]
