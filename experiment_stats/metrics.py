"""Mean and ratio metrics from per-user sufficient statistics: the comparison of one variation with the control.

Three metric types (``MetricType``):

* ``conversion``: a user converted if their value is > 0; compared as proportions
  (``proportions.py``; y is 0/1 per user, so ``Moments.sum_y`` counts the converted users).
* ``mean``: the mean of a per-user value (revenue per user, 0 for users without events),
  compared with Welch's t-test (``means.py``).
* ``ratio``: the ratio of two per-user sums pooled over users, e.g. revenue per order =
  sum of revenue / sum of orders. The unit of randomisation is the user, not the order, so
  orders of one user are correlated and the naive per-order variance is too small. The
  delta method gives the variance of R = Y/X (Y, X the group means of the per-user sums):

      Var(R) ~= (s_y^2 - 2 R s_xy + R^2 s_x^2) / (n * xbar^2)

  with the sample (ddof=1) variances and covariance of the per-user values (Deng, Lu &
  Litz, "Trustworthy analysis of online A/B tests", WSDM 2017; Kohavi, Tang & Xu,
  "Trustworthy Online Controlled Experiments", ch. 18). The groups are independent, so the
  variance of the difference is the sum of the two.

Everything comes from the six SQL aggregates in ``Moments``; nothing needs raw rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scipy.special import ndtr

from ._common import check_alpha, z_critical
from .means import MeanSummary, welch_t_test
from .proportions import compare_proportions, difference_and_variance

MetricType = Literal["conversion", "mean", "ratio"]
METRIC_TYPES: tuple[MetricType, ...] = ("conversion", "mean", "ratio")


@dataclass(frozen=True)
class Moments:
    """Per-user sufficient statistics of one variant.

    y: the metric's per-user value (for a ratio metric the numerator sum per user);
    x: a second per-user value (the ratio's denominator per user, or the CUPED covariate
    per user); zeros when unused. All are sums over the variant's exposed users.
    """

    n: int
    sum_y: float
    sum_y2: float
    sum_x: float = 0.0
    sum_x2: float = 0.0
    sum_xy: float = 0.0


@dataclass(frozen=True)
class MetricComparison:
    """One variation against the control on one metric, fixed horizon (valid for one look).

    NaN fields mean "not enough data" (``enough_data`` False).
    """

    control_value: float  # mean per user, ratio of sums, or conversion rate
    variant_value: float
    difference: float  # variant - control, on the metric's scale
    std_error: float
    ci_low: float  # (1 - alpha) interval of the difference
    ci_high: float
    p_value: float  # two-sided
    relative_lift: float | None  # difference / control_value; None when the control value is 0 or unknown
    alpha: float
    enough_data: bool

    @property
    def variance(self) -> float:
        """Variance of the difference: what the always-valid test (``sequential_difference``) needs."""
        return self.std_error**2


def compare_means(control: Moments, variant: Moments, alpha: float = 0.05) -> MetricComparison:
    """Welch's t-test on the per-user mean of y (interval with the t quantile at Welch's df)."""
    welch = welch_t_test(*(MeanSummary.from_sums(m.n, m.sum_y, m.sum_y2) for m in (control, variant)), alpha)
    return MetricComparison(
        control_value=welch.mean_a,
        variant_value=welch.mean_b,
        difference=welch.difference,
        std_error=welch.std_error,
        ci_low=welch.ci_low,
        ci_high=welch.ci_high,
        p_value=welch.p_value,
        relative_lift=_lift(welch.difference, welch.mean_a),
        alpha=alpha,
        enough_data=welch.enough_data,
    )


def compare_ratios(control: Moments, variant: Moments, alpha: float = 0.05) -> MetricComparison:
    """Difference of the ratios sum_y / sum_x, delta-method variance, normal interval and p-value."""
    (ratio_a, var_a), (ratio_b, var_b) = ratio_and_variance(control), ratio_and_variance(variant)
    return normal_comparison(ratio_a, ratio_b, var_a + var_b, alpha)


def compare_conversions(control: Moments, variant: Moments, alpha: float = 0.05) -> MetricComparison:
    """Two conversion rates (y is 0/1 per user): the unpooled Wald interval and the pooled z-test of proportions.py."""
    counts = (round(control.sum_y), control.n, round(variant.sum_y), variant.n)
    test = compare_proportions(*counts, alpha)
    _, variance = difference_and_variance(*counts)
    return MetricComparison(
        control_value=test.control_rate,
        variant_value=test.variant_rate,
        difference=test.difference,
        std_error=math.sqrt(variance) if test.enough_data else math.nan,
        ci_low=test.ci_low,
        ci_high=test.ci_high,
        p_value=test.p_value,
        relative_lift=test.lift if math.isfinite(test.lift) else None,
        alpha=alpha,
        enough_data=test.enough_data,
    )


def compare_metric(metric: MetricType, control: Moments, variant: Moments, alpha: float = 0.05) -> MetricComparison:
    """Dispatch on the metric type: ``compare_conversions``, ``compare_means`` or ``compare_ratios``."""
    compare = {"conversion": compare_conversions, "mean": compare_means, "ratio": compare_ratios}.get(metric)
    if compare is None:
        raise ValueError(f"metric type must be one of {', '.join(METRIC_TYPES)}, got {metric!r}")
    return compare(control, variant, alpha)


def ratio_and_variance(m: Moments) -> tuple[float, float]:
    """sum_y / sum_x of one group and its delta-method variance; the variance is NaN below 2 users or sum_x = 0."""
    if m.n < 0:
        raise ValueError(f"n must be >= 0, got {m.n!r}")
    if m.n == 0 or m.sum_x == 0:
        return math.nan, math.nan
    ratio = m.sum_y / m.sum_x
    if m.n < 2:
        return ratio, math.nan
    var_y, var_x, cov_xy = (_sample_covariance(m.n, *sums) for sums in (
        (m.sum_y, m.sum_y, m.sum_y2), (m.sum_x, m.sum_x, m.sum_x2), (m.sum_x, m.sum_y, m.sum_xy)))
    mean_x = m.sum_x / m.n
    # Rounding can push a true 0 slightly negative; a variance cannot be.
    return ratio, max(var_y - 2.0 * ratio * cov_xy + ratio**2 * var_x, 0.0) / (m.n * mean_x**2)


def normal_comparison(control_value: float, variant_value: float, variance: float, alpha: float) -> MetricComparison:
    """A difference with a plug-in variance: normal (1 - alpha) interval and two-sided p-value; NaN unless variance > 0."""
    check_alpha(alpha)
    difference = variant_value - control_value
    if not (variance > 0 and math.isfinite(difference)):
        nan = math.nan
        return MetricComparison(control_value, variant_value, difference, nan, nan, nan, nan,
                                _lift(difference, control_value), alpha, False)
    se = math.sqrt(variance)
    half = z_critical(alpha) * se
    return MetricComparison(
        control_value=control_value,
        variant_value=variant_value,
        difference=difference,
        std_error=se,
        ci_low=difference - half,
        ci_high=difference + half,
        p_value=float(2.0 * ndtr(-abs(difference) / se)),
        relative_lift=_lift(difference, control_value),
        alpha=alpha,
        enough_data=True,
    )


def _sample_covariance(n: int, sum_u: float, sum_v: float, sum_uv: float) -> float:
    """Sample (ddof=1) covariance of two per-user values from their sums; the variance when u = v."""
    return (sum_uv - sum_u * sum_v / n) / (n - 1)


def _lift(difference: float, control_value: float) -> float | None:
    """Relative lift difference / control; None when the control value is 0 or not a number."""
    if not math.isfinite(control_value) or control_value == 0.0 or not math.isfinite(difference):
        return None
    return difference / control_value
