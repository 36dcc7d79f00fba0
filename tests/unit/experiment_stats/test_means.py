"""Welch's t-test from sufficient statistics vs scipy and statsmodels on raw data."""

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from experiment_stats import MeanSummary, welch_t_test

TOL = {"rtol": 1e-6, "atol": 1e-12}


def _random_groups(rng):
    """Two groups of per-user values with different sizes, means, spreads and shapes."""
    n_a, n_b = rng.integers(2, 800, size=2)
    shape = rng.choice(["normal", "lognormal", "poisson"])
    if shape == "normal":
        a = rng.normal(rng.uniform(-5, 50), rng.uniform(0.1, 20), n_a)
        b = rng.normal(rng.uniform(-5, 50), rng.uniform(0.1, 20), n_b)
    elif shape == "lognormal":  # revenue-like, heavy right tail
        a = rng.lognormal(rng.uniform(0, 3), rng.uniform(0.2, 1.5), n_a)
        b = rng.lognormal(rng.uniform(0, 3), rng.uniform(0.2, 1.5), n_b)
    else:  # counts, e.g. predictions requested per user
        a = rng.poisson(rng.uniform(0.5, 10), n_a).astype(float)
        b = rng.poisson(rng.uniform(0.5, 10), n_b).astype(float)
    return a, b


def _summary(values):
    """What the gateway's SQL returns: COUNT, SUM, SUM of squares."""
    return MeanSummary.from_sums(len(values), float(values.sum()), float((values**2).sum()))


@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_welch_matches_scipy_and_statsmodels(alpha):
    rng = np.random.default_rng(21)
    checked = 0
    while checked < 250:
        a, b = _random_groups(rng)
        if a.var() == 0 and b.var() == 0:
            continue
        ours = welch_t_test(_summary(a), _summary(b), alpha=alpha)

        ref = stats.ttest_ind(b, a, equal_var=False)
        ref_ci = ref.confidence_interval(confidence_level=1 - alpha)
        np.testing.assert_allclose(
            [ours.t, ours.p_value, ours.df, ours.ci_low, ours.ci_high],
            [ref.statistic, ref.pvalue, ref.df, ref_ci.low, ref_ci.high],
            **TOL,
        )

        compare = CompareMeans(DescrStatsW(b), DescrStatsW(a))
        sm_t, sm_p, sm_df = compare.ttest_ind(usevar="unequal")
        sm_ci = compare.tconfint_diff(alpha=alpha, usevar="unequal")
        np.testing.assert_allclose(
            [ours.t, ours.p_value, ours.df, ours.ci_low, ours.ci_high], [sm_t, sm_p, sm_df, *sm_ci], **TOL
        )
        assert ours.difference == pytest.approx(b.mean() - a.mean(), rel=1e-9, abs=1e-12)
        checked += 1


def test_summary_from_sums_matches_numpy():
    values = np.random.default_rng(22).normal(1000.0, 3.0, 5_000)
    summary = _summary(values)
    assert summary.mean == pytest.approx(values.mean(), rel=1e-12)
    assert summary.variance == pytest.approx(values.var(ddof=1), rel=1e-6)


def test_not_enough_data_gives_nan():
    one_user = MeanSummary.from_sums(1, 3.0, 9.0)
    assert math.isnan(one_user.variance)
    result = welch_t_test(one_user, MeanSummary(n=50, mean=2.0, variance=1.0))
    assert not result.enough_data and math.isnan(result.p_value) and math.isnan(result.ci_low)
    constant = welch_t_test(MeanSummary(10, 1.0, 0.0), MeanSummary(10, 1.0, 0.0))
    assert not constant.enough_data and math.isnan(constant.t)
    empty = MeanSummary.from_sums(0, 0.0, 0.0)
    assert empty.n == 0 and math.isnan(empty.mean)
