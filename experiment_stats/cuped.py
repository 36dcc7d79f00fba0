"""CUPED: a pre-experiment covariate removes the part of the metric's variance it predicts.

Why: much of the spread of a metric between users (heavy and light buyers) was there
before the experiment. Regressing the metric on a covariate x measured *before exposure*
(usually the same metric over a pre-period) and comparing the adjusted means removes that
part: with correlation rho between x and y the variance of the estimate falls by a factor
of about 1 - rho**2 (Deng, Xu, Kohavi & Walker, "Improving the sensitivity of online
controlled experiments by utilizing pre-experiment data", WSDM 2013). The covariate must
not be affected by the treatment, which is guaranteed only if it was measured before the
user's first exposure; a covariate measured afterwards can absorb (and hide) the effect.

Estimator: the fully interacted regression of Lin ("Agnostic notes on regression
adjustments to experimental data", Ann. Appl. Stat. 2013),
y ~ 1 + T + (x - xbar) + T (x - xbar), xbar the pooled covariate mean. Its treatment
coefficient is the difference of the two groups' regression lines at xbar:

    estimate = [ybar_b - theta_b (xbar_b - xbar)] - [ybar_a - theta_a (xbar_a - xbar)]

with theta_g the OLS slope within group g. A slope per group, unlike the common-slope
ANCOVA y ~ 1 + T + x, never makes the estimate less precise than the unadjusted one,
even with unequal splits or when the treatment changes the slope (Lin 2013).

Standard error: each group's own classical (nonrobust) OLS covariance of its line at xbar,
sigma_g^2 (1/n_g + (xbar - xbar_g)^2 / SSx_g), sigma_g^2 = RSS_g / (n_g - 2), summed over the
two independent groups. This is what statsmodels reports for two separate fits
``OLS(y_g, [1, x_g - xbar]).fit()`` (cov_type "nonrobust"): a residual variance per group,
so, like Welch's test, it does not assume the groups share a variance. A heteroskedasticity-
robust (HC) sandwich cannot be computed from these sums (it needs fourth moments); at the
group's own covariate mean the HC0 sandwich of the line is RSS_g / n_g^2, so the two differ
only by the degrees of freedom and a term in (xbar - xbar_g)^2, which randomisation makes
O(1/n). The interval and p-value use the normal quantile (large samples, as everywhere).

``theta`` (reported) is the pooled within-group slope, the single coefficient the
CUPED papers describe; the estimate itself uses the per-group slopes above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .metrics import MetricComparison, Moments, compare_means, normal_comparison


@dataclass(frozen=True)
class CupedComparison:
    """The CUPED-adjusted comparison, the unadjusted one and how much variance the covariate removed."""

    adjusted: MetricComparison  # control_value/variant_value: each group's line at the pooled covariate mean
    unadjusted: MetricComparison  # Welch on y alone
    theta: float  # pooled within-group slope of y on x
    theta_control: float  # the slope within each group, used by the estimate
    theta_variant: float
    variance_reduction: float  # 1 - adjusted variance / unadjusted variance of the difference (about rho**2)


def compare_cuped(control: Moments, variant: Moments, alpha: float = 0.05) -> CupedComparison:
    """CUPED (Lin's interacted regression) for the mean of y with the pre-exposure covariate x.

    Needs at least 3 users per group (2 regression coefficients and a residual variance);
    below that the adjusted comparison has ``enough_data`` False. A group whose covariate
    does not vary (e.g. every user new, x = 0) cannot estimate a slope: it keeps its
    unadjusted mean (slope 0, variance s_y^2 / n), which is still unbiased.
    """
    unadjusted = compare_means(control, variant, alpha)
    users = control.n + variant.n
    pooled_x = (control.sum_x + variant.sum_x) / users if users else math.nan
    a, b = _GroupFit.of(control), _GroupFit.of(variant)
    (mean_a, var_a), (mean_b, var_b) = a.line_at(pooled_x), b.line_at(pooled_x)
    if min(control.n, variant.n) < 3:
        var_a = var_b = math.nan
    adjusted = normal_comparison(mean_a, mean_b, var_a + var_b, alpha)
    within_x = a.ss_x + b.ss_x
    reduction = (1.0 - adjusted.variance / unadjusted.variance
                 if adjusted.enough_data and unadjusted.enough_data else math.nan)
    return CupedComparison(
        adjusted=adjusted,
        unadjusted=unadjusted,
        theta=(a.ss_xy + b.ss_xy) / within_x if within_x > 0 else math.nan,
        theta_control=a.slope,
        theta_variant=b.slope,
        variance_reduction=reduction,
    )


@dataclass(frozen=True)
class _GroupFit:
    """One group's OLS of y on x, from its sums: means, centred sums of squares, slope and residual variance."""

    n: int
    mean_y: float
    mean_x: float
    ss_x: float  # sum of (x - mean_x)^2
    ss_xy: float
    slope: float
    residual_variance: float  # RSS / (n - 2); s_y^2 (ddof 1) when x does not vary

    @classmethod
    def of(cls, m: Moments) -> _GroupFit:
        if m.n < 0:
            raise ValueError(f"n must be >= 0, got {m.n!r}")
        if m.n == 0:
            return cls(0, math.nan, math.nan, 0.0, 0.0, math.nan, math.nan)
        mean_y, mean_x = m.sum_y / m.n, m.sum_x / m.n
        # Rounding can push a true 0 slightly negative; a sum of squares cannot be.
        ss_y = max(m.sum_y2 - m.sum_y * mean_y, 0.0)
        ss_x = max(m.sum_x2 - m.sum_x * mean_x, 0.0)
        ss_xy = m.sum_xy - m.sum_x * mean_y
        if ss_x > 0:
            slope = ss_xy / ss_x
            residual = max(ss_y - slope * ss_xy, 0.0) / (m.n - 2) if m.n > 2 else math.nan
        else:
            slope = 0.0
            residual = ss_y / (m.n - 1) if m.n > 1 else math.nan
        return cls(m.n, mean_y, mean_x, ss_x, ss_xy, slope, residual)

    def line_at(self, x: float) -> tuple[float, float]:
        """The fitted line at x and its classical OLS variance, sigma^2 (1/n + (x - mean_x)^2 / SSx)."""
        if self.n == 0:
            return math.nan, math.nan
        leverage = (x - self.mean_x) ** 2 / self.ss_x if self.ss_x > 0 else 0.0
        return self.mean_y + self.slope * (x - self.mean_x), self.residual_variance * (1.0 / self.n + leverage)
