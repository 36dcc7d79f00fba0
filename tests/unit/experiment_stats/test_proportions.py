"""Two-proportion z-test, difference CI and delta-method lift CI vs independent references."""

import math

import numpy as np
import pytest
from statsmodels.stats import proportion as sm_proportion

from experiment_stats import compare_proportions, z_test

N_DATASETS = 300
TOL = {"rtol": 1e-6, "atol": 1e-12}


def _random_datasets(seed):
    """Random (conversions_a, users_a, conversions_b, users_b) with 0 < pooled rate < 1."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < N_DATASETS:
        users_a, users_b = rng.integers(10, 200_000, size=2)
        rate_a = rng.uniform(0.001, 0.999)
        rate_b = np.clip(rate_a + rng.normal(0, 0.05), 0.0, 1.0)
        conv_a, conv_b = rng.binomial(users_a, rate_a), rng.binomial(users_b, rate_b)
        if 0 < conv_a + conv_b < users_a + users_b:
            out.append((int(conv_a), int(users_a), int(conv_b), int(users_b)))
    return out


@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_z_test_and_difference_ci_match_statsmodels(alpha):
    for conv_a, users_a, conv_b, users_b in _random_datasets(seed=11):
        ours = compare_proportions(conv_a, users_a, conv_b, users_b, alpha=alpha)

        z_ref, p_ref = sm_proportion.proportions_ztest([conv_b, conv_a], [users_b, users_a])
        np.testing.assert_allclose([ours.z, ours.p_value], [z_ref, p_ref], **TOL)

        # The score test without small-sample correction is the pooled z-test, computed independently.
        with np.errstate(divide="ignore"):  # statsmodels also computes an odds ratio we do not use
            score = sm_proportion.test_proportions_2indep(
                conv_b, users_b, conv_a, users_a, method="score", correction=False
            )
        np.testing.assert_allclose([ours.z, ours.p_value], [score.statistic, score.pvalue], **TOL)

        ci_ref = sm_proportion.confint_proportions_2indep(
            conv_b, users_b, conv_a, users_a, method="wald", alpha=alpha
        )
        np.testing.assert_allclose([ours.ci_low, ours.ci_high], ci_ref, **TOL)
        assert ours.enough_data


def test_vectorized_z_test_equals_scalar_api():
    data = np.array(_random_datasets(seed=12)).T
    z, p = z_test(*data)
    scalar = [compare_proportions(*map(int, row)) for row in data.T]
    np.testing.assert_allclose(z, [r.z for r in scalar], rtol=1e-12)
    np.testing.assert_allclose(p, [r.p_value for r in scalar], rtol=1e-12)


def test_lift_standard_error_matches_numerical_derivative():
    """The delta-method SE equals sqrt(grad' Sigma grad) with the gradient taken numerically."""
    for conv_a, users_a, conv_b, users_b in _random_datasets(seed=13)[:200]:
        ours = compare_proportions(conv_a, users_a, conv_b, users_b)
        if conv_a == 0:
            continue
        rate_a, rate_b = conv_a / users_a, conv_b / users_b
        var_a, var_b = rate_a * (1 - rate_a) / users_a, rate_b * (1 - rate_b) / users_b

        def lift(pa, pb):
            return pb / pa - 1

        step_a, step_b = 1e-6 * rate_a, 1e-6 * max(rate_b, 1e-9)
        grad_a = (lift(rate_a + step_a, rate_b) - lift(rate_a - step_a, rate_b)) / (2 * step_a)
        grad_b = (lift(rate_a, rate_b + step_b) - lift(rate_a, rate_b - step_b)) / (2 * step_b)
        se_numeric = math.sqrt(grad_a**2 * var_a + grad_b**2 * var_b)
        se_ours = (ours.lift_ci_high - ours.lift_ci_low) / (2 * 1.959963984540054)
        assert ours.lift == pytest.approx(lift(rate_a, rate_b), rel=1e-12, abs=1e-15)
        assert se_ours == pytest.approx(se_numeric, rel=1e-5)


def test_lift_interval_agrees_with_parametric_bootstrap():
    """At realistic sizes the delta-method interval matches a large parametric bootstrap."""
    rng = np.random.default_rng(14)
    users_a = users_b = 20_000
    conv_a, conv_b = 2_000, 2_200
    ours = compare_proportions(conv_a, users_a, conv_b, users_b)
    draws = 400_000
    boot = (rng.binomial(users_b, conv_b / users_b, draws) / users_b) / (
        rng.binomial(users_a, conv_a / users_a, draws) / users_a
    ) - 1
    se_delta = (ours.lift_ci_high - ours.lift_ci_low) / (2 * 1.959963984540054)
    assert boot.std() == pytest.approx(se_delta, rel=0.02)
    # The ratio is slightly right-skewed, so percentile ends differ a little from the symmetric interval.
    half_width = (ours.lift_ci_high - ours.lift_ci_low) / 2
    low, high = np.quantile(boot, [0.025, 0.975])
    assert abs(low - ours.lift_ci_low) < 0.1 * half_width
    assert abs(high - ours.lift_ci_high) < 0.1 * half_width


def test_zero_users_and_zero_conversions_give_nan_not_errors():
    with np.errstate(all="raise"):  # no hidden division warnings either
        empty = compare_proportions(0, 0, 0, 0)
        none_converted = compare_proportions(0, 500, 0, 480)
        no_control_conversions = compare_proportions(0, 500, 7, 480)
    assert not empty.enough_data and math.isnan(empty.p_value) and math.isnan(empty.difference)
    assert not none_converted.enough_data and math.isnan(none_converted.p_value)
    assert none_converted.difference == 0.0
    assert no_control_conversions.enough_data and no_control_conversions.p_value < 0.05
    assert math.isnan(no_control_conversions.lift) and math.isnan(no_control_conversions.lift_ci_low)


@pytest.mark.parametrize("bad", [(-1, 10, 1, 10), (11, 10, 1, 10), (1, 10, 1, -5)])
def test_impossible_counts_are_rejected(bad):
    with pytest.raises(ValueError):
        compare_proportions(*bad)
