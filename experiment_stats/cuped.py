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

from dataclasses import dataclass

from .metrics import MetricComparison, Moments


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
    """CUPED (Lin's interacted regression) for the mean of y with the pre-exposure covariate x."""
    raise NotImplementedError
