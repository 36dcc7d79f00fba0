"""Mean, ratio and conversion comparisons from Moments vs scipy/statsmodels on raw data and vs simulation."""

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from experiment_stats import Moments, compare_conversions, compare_means, compare_metric, compare_ratios
from experiment_stats.metrics import ratio_and_variance


def moments(y, x=None):
    """What the gateway's SQL returns for one variant: COUNT and the sums of y, y^2, x, x^2, x*y."""
    x = np.zeros_like(y) if x is None else x
    return Moments(len(y), float(y.sum()), float((y * y).sum()), float(x.sum()), float((x * x).sum()),
                   float((x * y).sum()))


def orders_and_revenue(rng, users, revenue_per_order=20.0):
    """Per user: orders (0 for many, some heavy buyers) and the revenue of those orders (correlated per user)."""
    orders = rng.negative_binomial(1, 0.4, size=users).astype(float)
    basket = rng.gamma(2.0, revenue_per_order / 2.0, size=users)  # a user's typical order value
    revenue = orders * basket * rng.lognormal(0.0, 0.3, size=users)
    return revenue, orders


def test_mean_comparison_is_welch_as_scipy_computes_it():
    rng = np.random.default_rng(5)
    a, b = rng.lognormal(1.0, 1.0, 700), rng.lognormal(1.1, 1.3, 400)
    ours = compare_means(moments(a), moments(b), alpha=0.1)
    ref = stats.ttest_ind(b, a, equal_var=False)
    ci = ref.confidence_interval(confidence_level=0.9)
    np.testing.assert_allclose([ours.difference, ours.p_value, ours.ci_low, ours.ci_high],
                               [b.mean() - a.mean(), ref.pvalue, ci.low, ci.high], rtol=1e-7)
    assert ours.std_error == pytest.approx(math.sqrt(a.var(ddof=1) / 700 + b.var(ddof=1) / 400), rel=1e-9)
    assert ours.relative_lift == pytest.approx(b.mean() / a.mean() - 1, rel=1e-9)


def test_conversion_comparison_is_the_z_test_and_wald_interval_of_statsmodels():
    ours = compare_conversions(Moments(10_000, 1_000, 1_000), Moments(9_000, 1_010, 1_010))
    _, p = proportions_ztest([1_010, 1_000], [9_000, 10_000])
    low, high = confint_proportions_2indep(1_010, 9_000, 1_000, 10_000, method="wald", compare="diff")
    np.testing.assert_allclose([ours.p_value, ours.ci_low, ours.ci_high], [p, low, high], rtol=1e-9)
    assert ours.std_error == pytest.approx((high - low) / (2 * stats.norm.isf(0.025)), rel=1e-9)


def test_ratio_delta_method_variance_matches_the_spread_of_the_ratio_over_many_experiments():
    """Var(sum revenue / sum orders) over 4,000 simulated groups of 500 users vs the delta-method formula."""
    rng = np.random.default_rng(11)
    ratios, variances = [], []
    for _ in range(4_000):
        revenue, orders = orders_and_revenue(rng, 500)
        ratio, variance = ratio_and_variance(moments(revenue, orders))
        ratios.append(ratio)
        variances.append(variance)
    simulated = np.var(ratios, ddof=1)
    # The sample variance of 4,000 draws is within about 2.2 % (one SE) of the truth.
    assert np.mean(variances) == pytest.approx(simulated, rel=0.08)
    # The naive per-order variance ignores that orders of one user are correlated: far too small here.
    revenue, orders = orders_and_revenue(rng, 500)
    per_order = np.repeat(revenue / np.maximum(orders, 1), orders.astype(int))
    assert per_order.var(ddof=1) / len(per_order) < 0.6 * simulated


def test_ratio_interval_covers_the_true_difference_at_the_nominal_rate():
    rng = np.random.default_rng(12)
    true_difference = 22.0 - 20.0  # E[revenue] / E[orders] is the expected revenue per order by construction
    covered = []
    for _ in range(2_000):
        control = moments(*orders_and_revenue(rng, 400, 20.0))
        variant = moments(*orders_and_revenue(rng, 300, 22.0))
        c = compare_ratios(control, variant)
        covered.append(c.ci_low <= true_difference <= c.ci_high)
    # 95 % nominal; 2,000 runs give a binomial SE of 0.5 pp.
    assert 0.935 <= np.mean(covered) <= 0.965


def test_ratio_comparison_on_a_worked_example():
    """Three users per group, variances written out by hand from the per-user values."""
    control = moments(np.array([10.0, 0.0, 30.0]), np.array([1.0, 0.0, 2.0]))  # R = 40 / 3
    variant = moments(np.array([20.0, 10.0, 30.0, 0.0]), np.array([1.0, 1.0, 1.0, 1.0]))  # R = 15
    r_a = 40 / 3
    s_y2, s_x2, s_xy = np.var([10, 0, 30], ddof=1), np.var([1, 0, 2], ddof=1), np.cov([10, 0, 30], [1, 0, 2])[0, 1]
    var_a = (s_y2 - 2 * r_a * s_xy + r_a**2 * s_x2) / (3 * 1.0**2)
    var_b = np.var([20, 10, 30, 0], ddof=1) / 4  # x = 1 for everyone: the ratio is a plain mean
    c = compare_ratios(control, variant, alpha=0.05)
    assert (c.control_value, c.variant_value) == pytest.approx((r_a, 15.0))
    assert c.std_error == pytest.approx(math.sqrt(var_a + var_b), rel=1e-12)
    assert c.p_value == pytest.approx(2 * stats.norm.sf((15 - r_a) / math.sqrt(var_a + var_b)), rel=1e-12)


def test_not_enough_data_is_reported_not_raised():
    empty, one = Moments(0, 0.0, 0.0), Moments(1, 1.0, 1.0, 1.0, 1.0, 1.0)
    for metric in ("mean", "ratio", "conversion"):
        c = compare_metric(metric, empty, one)
        assert not c.enough_data and math.isnan(c.p_value)
    with pytest.raises(ValueError, match="conversions <= users"):
        compare_conversions(one, Moments(1, 3.0, 9.0))  # a conversion metric's y is 0 or 1 per user
    no_orders = Moments(5, 0.0, 0.0)  # nobody ordered: revenue per order is undefined
    assert not compare_ratios(no_orders, Moments(5, 10.0, 40.0, 2.0, 2.0, 10.0)).enough_data
    assert compare_means(Moments(5, 0.0, 0.0), Moments(5, 5.0, 9.0)).relative_lift is None
    with pytest.raises(ValueError, match="metric type"):
        compare_metric("median", one, one)  # type: ignore[arg-type]
