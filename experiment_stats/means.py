"""Welch's t-test for a numeric per-user metric, from per-group sufficient statistics.

The gateway aggregates per-user values in SQL (COUNT, SUM, SUM of squares), so
nothing here needs raw rows. Welch's version is used because variations rarely
have equal variances, and it costs nothing when they do.

"Not enough data": a group with fewer than 2 users has no sample variance; then,
or when both variances are 0, t, df, p-value and the interval are NaN and
``enough_data`` is False.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.special import stdtr, stdtrit

from ._common import check_alpha


@dataclass(frozen=True)
class MeanSummary:
    """Sufficient statistics of one group's per-user values (variance with ddof=1)."""

    n: int
    mean: float
    variance: float

    @classmethod
    def from_sums(cls, n: int, total: float, total_of_squares: float) -> MeanSummary:
        """Build from SQL aggregates COUNT(x), SUM(x), SUM(x*x).

        The one-pass formula loses precision when the mean is huge relative to the
        spread (e.g. epoch timestamps); shift the values by a constant in SQL in
        that case - the variance does not change.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n!r}")
        mean = total / n if n > 0 else math.nan
        # Rounding can push a true 0 slightly negative; a variance cannot be.
        variance = max(total_of_squares - total * mean, 0.0) / (n - 1) if n > 1 else math.nan
        return cls(n=n, mean=mean, variance=variance)


@dataclass(frozen=True)
class WelchTest:
    """Variation (b) vs control (a) on a numeric metric; NaN fields mean 'not enough data'."""

    mean_a: float
    mean_b: float
    difference: float  # mean_b - mean_a
    std_error: float
    t: float
    df: float  # Welch-Satterthwaite degrees of freedom
    p_value: float  # two-sided
    ci_low: float  # (1 - alpha) interval of the difference, t quantile with Welch df
    ci_high: float
    alpha: float
    enough_data: bool


def welch_t_test(a: MeanSummary, b: MeanSummary, alpha: float = 0.05) -> WelchTest:
    """Welch's unequal-variance t-test and CI for mean_b - mean_a."""
    check_alpha(alpha)
    difference = b.mean - a.mean
    if a.n < 2 or b.n < 2 or not a.variance + b.variance > 0:
        nan = math.nan
        return WelchTest(a.mean, b.mean, difference, nan, nan, nan, nan, nan, nan, alpha, False)
    var_mean_a = a.variance / a.n
    var_mean_b = b.variance / b.n
    se2 = var_mean_a + var_mean_b
    df = se2**2 / (var_mean_a**2 / (a.n - 1) + var_mean_b**2 / (b.n - 1))
    se = math.sqrt(se2)
    t = difference / se
    # scipy.stats.t.isf / .sf are these special functions behind a slow generic wrapper; simulations call this a lot.
    half = float(-stdtrit(df, alpha / 2.0)) * se
    return WelchTest(
        mean_a=a.mean,
        mean_b=b.mean,
        difference=difference,
        std_error=se,
        t=t,
        df=df,
        p_value=float(2.0 * stdtr(df, -abs(t))),
        ci_low=difference - half,
        ci_high=difference + half,
        alpha=alpha,
        enough_data=True,
    )
