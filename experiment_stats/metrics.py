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
    raise NotImplementedError


def compare_ratios(control: Moments, variant: Moments, alpha: float = 0.05) -> MetricComparison:
    """Difference of the ratios sum_y / sum_x, delta-method variance, normal interval and p-value."""
    raise NotImplementedError


def compare_conversions(control: Moments, variant: Moments, alpha: float = 0.05) -> MetricComparison:
    """Two conversion rates (y is 0/1 per user): the unpooled Wald interval and the pooled z-test of proportions.py."""
    raise NotImplementedError


def compare_metric(metric: MetricType, control: Moments, variant: Moments, alpha: float = 0.05) -> MetricComparison:
    """Dispatch on the metric type: ``compare_conversions``, ``compare_means`` or ``compare_ratios``."""
    raise NotImplementedError
