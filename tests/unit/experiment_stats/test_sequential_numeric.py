"""The always-valid test on numeric differences (means, ratios, CUPED): seeded simulations of its guarantees."""

import math

import numpy as np
import pytest

from experiment_stats import (
    Moments,
    compare_cuped,
    compare_means,
    compare_ratios,
    msprt_two_proportions,
    sequential_difference,
    tau2_for_numeric_mde,
)
from experiment_stats.proportions import difference_and_variance

ALPHA = 0.05
LOOKS, USERS_PER_LOOK = 50, 40


def _revenue(rng, shape, spend=10.0):
    """Revenue-like per-user values: 70 % spend nothing, the rest a heavy-tailed amount (mean ``spend``)."""
    return (rng.random(shape) < 0.3) * rng.lognormal(math.log(spend / 0.3) - 0.5, 1.0, shape)


def _cumulative_moments(y, x):
    """Moments after every look from per-user arrays shaped (looks, users per look)."""
    sums = [np.cumsum(s.sum(axis=-1)) for s in (y, y * y, x, x * x, x * y)]
    return [Moments(USERS_PER_LOOK * (k + 1), *(float(s[k]) for s in sums)) for k in range(y.shape[0])]


def _run(compare, control, variant, tau2):
    """The running always-valid test over the looks of one experiment."""
    tests, last = [], None
    for c, v in zip(control, variant):
        fixed = compare(c, v)
        last = sequential_difference(fixed.difference, fixed.variance, tau2, ALPHA, last)
        tests.append(last)
    return tests


def test_a_a_mean_metric_never_rejects_more_often_than_alpha_over_50_looks():
    """1,000 A/A experiments on a skewed revenue metric, a look every 40 users per group up to 2,000."""
    rng = np.random.default_rng(1600)
    tau2 = tau2_for_numeric_mde(1.5)  # about the standard error of the difference half-way through
    ever = []
    for _ in range(1_000):
        control, variant = (_cumulative_moments(_revenue(rng, (LOOKS, USERS_PER_LOOK)), np.zeros((LOOKS, USERS_PER_LOOK)))
                            for _ in range(2))
        ever.append(_run(compare_means, control, variant, tau2)[-1].p_value < ALPHA)
    rate = np.mean(ever)
    print(f"\nA/A revenue, 50 looks: rejected in {rate:.3f} of 1,000 experiments")
    assert rate <= ALPHA


@pytest.mark.parametrize("metric", ["ratio", "cuped"])
def test_the_running_interval_holds_the_true_difference_at_every_look(metric):
    """500 experiments with a real effect: the share in which the true difference ever leaves the running
    interval (an intersection over 50 looks, with restarts) stays below alpha."""
    rng = np.random.default_rng(1601 if metric == "ratio" else 1602)
    shape = (LOOKS, USERS_PER_LOOK)
    missed = []
    for _ in range(500):
        if metric == "ratio":  # revenue per order: orders per user, revenue per order 20 vs 22
            orders = [rng.poisson(2.0, shape).astype(float) for _ in range(2)]
            revenue = [o * rng.gamma(4.0, value / 4.0, shape) for o, value in zip(orders, (20.0, 22.0))]
            data, truth, compare = zip(revenue, orders), 2.0, compare_ratios
        else:  # mean with a pre-period covariate, corr 0.7, effect +1
            before = [_revenue(rng, shape) for _ in range(2)]
            during = [0.7 * b + math.sqrt(1 - 0.49) * _revenue(rng, shape) + effect
                      for b, effect in zip(before, (0.0, 1.0))]
            data, truth = zip(during, before), 1.0

            def compare(c, v):
                return compare_cuped(c, v).adjusted
        control, variant = (_cumulative_moments(y, x) for y, x in data)
        tests = _run(compare, control, variant, tau2_for_numeric_mde(truth))
        missed.append(any(not t.ci_low <= truth <= t.ci_high for t in tests))
    rate = np.mean(missed)
    print(f"\n{metric}: the true difference left the running interval in {rate:.3f} of 500 experiments")
    assert rate <= ALPHA


def test_numeric_differences_run_the_same_test_as_proportions():
    """sequential_difference on (d, s2) is the proportions test on the same numbers, running pair included."""
    counts = [(100, 1_000, 130, 1_000), (260, 2_000, 230, 1_900), (400, 3_000, 440, 3_000)]
    last_p, last_ci, last = 1.0, (-math.inf, math.inf), None
    for c in counts:
        ours = sequential_difference(*(float(v) for v in difference_and_variance(*c)), 1e-4, ALPHA, last)
        theirs = msprt_two_proportions(*c, tau2=1e-4, previous_p_value=last_p, previous_ci=last_ci)
        assert ours == theirs
        last, last_p, last_ci = ours, theirs.p_value, (theirs.ci_low, theirs.ci_high)


def test_a_mean_effect_that_turns_around_restarts_the_evidence():
    """Revenue per user: clearly worse early, slightly better later; the intervals do not overlap."""
    early = compare_means(Moments(1_000, 9_000.0, 180_000.0), Moments(1_000, 7_000.0, 130_000.0))
    late = compare_means(Moments(20_000, 180_000.0, 3_600_000.0), Moments(20_000, 184_000.0, 3_700_000.0))
    first = sequential_difference(early.difference, early.variance, tau2_for_numeric_mde(1.0))
    second = sequential_difference(late.difference, late.variance, tau2_for_numeric_mde(1.0), previous=first)
    assert first.ci_high < 0 and first.p_value < ALPHA
    assert second.restarted and second.drift and second.p_value == second.current_p_value
    assert second.ci_low <= second.difference <= second.ci_high


def test_tau2_for_a_numeric_metric_is_the_squared_absolute_mde():
    assert tau2_for_numeric_mde(0.5) == 0.25
    assert tau2_for_numeric_mde(-2.0) == 4.0
    for bad in (0.0, math.inf, math.nan):
        with pytest.raises(ValueError):
            tau2_for_numeric_mde(bad)
    no_data = sequential_difference(math.nan, math.nan, 1.0)
    assert not no_data.enough_data and no_data.p_value == 1.0
