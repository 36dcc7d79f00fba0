"""CUPED from Moments vs statsmodels OLS on the raw per-user data, and its variance reduction in simulation."""

import math

import numpy as np
import pytest
import statsmodels.api as sm

from experiment_stats import Moments, compare_cuped, compare_means

from .test_metrics import moments


def _experiment(rng, n_a, n_b, effect=0.0, rho=0.7, sd_b=1.0, slope_b=None):
    """Per-user covariate x (pre-period) and metric y, corr(x, y) = rho in the control."""
    x_a, x_b = rng.gamma(4.0, 2.5, n_a), rng.gamma(4.0, 2.5, n_b)
    sd_x = math.sqrt(4.0) * 2.5
    slope = rho / sd_x
    noise = math.sqrt(1 - rho**2)
    y_a = 5.0 + slope * (x_a - 10.0) + noise * rng.normal(size=n_a)
    y_b = 5.0 + effect + (slope_b or slope) * (x_b - 10.0) + sd_b * noise * rng.normal(size=n_b)
    return (y_a, x_a), (y_b, x_b)


@pytest.mark.parametrize(("n_a", "n_b", "sd_b", "slope_b"), [
    (1_000, 1_000, 1.0, None),
    (900, 100, 3.0, None),  # unequal split and unequal variances
    (250, 600, 0.5, 0.6),  # the treatment changes the slope as well
    (5, 4, 2.0, None),  # tiny groups
])
def test_estimate_and_standard_error_equal_statsmodels_ols(n_a, n_b, sd_b, slope_b):
    rng = np.random.default_rng(n_a + n_b)
    (y_a, x_a), (y_b, x_b) = _experiment(rng, n_a, n_b, effect=0.3, sd_b=sd_b, slope_b=slope_b)
    ours = compare_cuped(moments(y_a, x_a), moments(y_b, x_b))

    x, y = np.r_[x_a, x_b], np.r_[y_a, y_b]
    treated, centred = np.r_[np.zeros(n_a), np.ones(n_b)], x - x.mean()
    # Lin (2013): y ~ 1 + T + (x - xbar) + T (x - xbar); the coefficient of T is the estimate.
    interacted = sm.OLS(y, sm.add_constant(np.column_stack([treated, centred, treated * centred]))).fit()
    # Its standard error with a residual variance per group: each group's own OLS line at xbar.
    line_a = sm.OLS(y_a, sm.add_constant(x_a - x.mean())).fit()  # cov_type "nonrobust"
    line_b = sm.OLS(y_b, sm.add_constant(x_b - x.mean())).fit()
    assert ours.adjusted.difference == pytest.approx(interacted.params[1], abs=1e-6)
    assert ours.adjusted.std_error == pytest.approx(math.hypot(line_a.bse[0], line_b.bse[0]), abs=1e-6)
    assert (ours.adjusted.control_value, ours.adjusted.variant_value) == pytest.approx(
        (line_a.params[0], line_b.params[0]), abs=1e-6)
    assert (ours.theta_control, ours.theta_variant) == pytest.approx((line_a.params[1], line_b.params[1]), abs=1e-6)
    # theta: the covariate's coefficient in the common-slope regression y ~ 1 + T + x.
    common = sm.OLS(y, sm.add_constant(np.column_stack([treated, x]))).fit()
    assert ours.theta == pytest.approx(common.params[2], abs=1e-6)
    if min(n_a, n_b) >= 100:
        # Close to the heteroskedasticity-robust SE of the interacted model (Lin's choice), which
        # these sums cannot give exactly; the common-variance SE is what it must not be.
        assert ours.adjusted.std_error == pytest.approx(interacted.HC2_se[1], rel=0.03)
        if sd_b != 1.0:
            assert abs(ours.adjusted.std_error / interacted.bse[1] - 1) > 0.1
    unadjusted = compare_means(moments(y_a), moments(y_b))
    assert ours.unadjusted == unadjusted
    assert ours.variance_reduction == pytest.approx(1 - ours.adjusted.std_error**2 / unadjusted.std_error**2)


def test_with_rho_0_7_the_interval_is_about_30_percent_narrower_and_still_covers():
    """2,000 seeded experiments, 200 users per group, true difference 0.1, corr(covariate, metric) = 0.7."""
    rng = np.random.default_rng(2013)
    widths, raw_widths, covered, reductions = [], [], [], []
    for _ in range(2_000):
        control, variant = _experiment(rng, 200, 200, effect=0.1, rho=0.7)
        c = compare_cuped(moments(*control), moments(*variant))
        widths.append(c.adjusted.ci_high - c.adjusted.ci_low)
        raw_widths.append(c.unadjusted.ci_high - c.unadjusted.ci_low)
        covered.append(c.adjusted.ci_low <= 0.1 <= c.adjusted.ci_high)
        reductions.append(c.variance_reduction)
    # Variance x (1 - rho^2) = 0.51, so the width x sqrt(0.51) = 0.714: about 29 % narrower.
    assert np.mean(widths) / np.mean(raw_widths) == pytest.approx(math.sqrt(1 - 0.7**2), abs=0.02)
    assert np.mean(reductions) == pytest.approx(0.7**2, abs=0.02)
    # 95 % nominal; 2,000 runs give a binomial SE of 0.5 pp.
    assert 0.935 <= np.mean(covered) <= 0.965


def test_a_covariate_that_does_not_vary_leaves_that_group_unadjusted():
    rng = np.random.default_rng(3)
    (y_a, x_a), (y_b, _) = _experiment(rng, 300, 300)
    ours = compare_cuped(moments(y_a, x_a), moments(y_b, np.zeros(300)))  # all of b are new users
    assert ours.theta_variant == 0.0
    assert ours.adjusted.variant_value == pytest.approx(y_b.mean())
    assert ours.adjusted.enough_data


def test_too_few_users_is_not_enough_data():
    c = compare_cuped(Moments(2, 3.0, 5.0, 3.0, 5.0, 5.0), Moments(10, 10.0, 20.0, 5.0, 5.0, 6.0))
    assert not c.adjusted.enough_data and math.isnan(c.adjusted.p_value) and math.isnan(c.variance_reduction)
