"""Fixed-horizon comparison of two conversion rates (binary outcome per user).

Conventions used throughout the package: group ``a`` is the control, group ``b``
the variation, and every difference is ``b - a``.

The z statistic uses the *pooled* standard error, because under the null
hypothesis both groups share one rate and pooling estimates it best (this is the
classical two-proportion z-test, identical to statsmodels' ``proportions_ztest``).
The confidence interval uses the *unpooled* (Wald) standard error, because an
interval describes the difference where it actually is, not where the null puts
it. The two can disagree at the margin (p just below alpha while the interval
touches 0); that is the documented price of using each SE for its own job.

"Not enough data": when a group has no users, or when nobody (or everybody)
converted so the pooled SE is 0, the z statistic and p-value are NaN and
``enough_data`` is False. The relative lift is NaN whenever the control rate is 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import norm

from ._common import check_alpha, check_counts, z_critical


@dataclass(frozen=True)
class ProportionTest:
    """Variation vs control on a binary metric; NaN fields mean 'not enough data'."""

    control_rate: float
    variant_rate: float
    difference: float  # variant_rate - control_rate, absolute (0.012 = +1.2 percentage points)
    ci_low: float  # (1 - alpha) Wald interval of the difference (unpooled SE)
    ci_high: float
    z: float  # pooled-SE z statistic
    p_value: float  # two-sided
    lift: float  # variant_rate / control_rate - 1 (0.10 = +10 % relative)
    lift_ci_low: float  # (1 - alpha) delta-method interval of the lift
    lift_ci_high: float
    alpha: float
    enough_data: bool


def difference_and_variance(
    conversions_a: ArrayLike, users_a: ArrayLike, conversions_b: ArrayLike, users_b: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Difference of rates b - a and its unpooled variance; vectorized, NaN where a group is empty."""
    rate_a, var_a = _rate_and_variance(conversions_a, users_a)
    rate_b, var_b = _rate_and_variance(conversions_b, users_b)
    return rate_b - rate_a, var_a + var_b


def z_test(
    conversions_a: ArrayLike, users_a: ArrayLike, conversions_b: ArrayLike, users_b: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled two-proportion z statistic and two-sided p-value; vectorized for simulations."""
    xa, na, xb, nb = (np.asarray(v, dtype=float) for v in (conversions_a, users_a, conversions_b, users_b))
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = (xa + xb) / (na + nb)
        se = np.sqrt(pooled * (1.0 - pooled) * (1.0 / na + 1.0 / nb))
        z = np.where(se > 0, (xb / nb - xa / na) / se, np.nan)
    return z, 2.0 * norm.sf(np.abs(z))


def compare_proportions(
    conversions_a: int, users_a: int, conversions_b: int, users_b: int, alpha: float = 0.05
) -> ProportionTest:
    """Two-proportion z-test, difference CI and relative-lift CI for one variation vs control."""
    check_alpha(alpha)
    check_counts(conversions_a, users_a)
    check_counts(conversions_b, users_b)
    rate_a, var_a = (float(v) for v in _rate_and_variance(conversions_a, users_a))
    rate_b, var_b = (float(v) for v in _rate_and_variance(conversions_b, users_b))
    z, p = (float(v) for v in z_test(conversions_a, users_a, conversions_b, users_b))
    difference = rate_b - rate_a
    crit = z_critical(alpha)
    half = crit * math.sqrt(var_a + var_b)
    lift, lift_se = _lift_delta_method(rate_a, var_a, rate_b, var_b)
    return ProportionTest(
        control_rate=rate_a,
        variant_rate=rate_b,
        difference=difference,
        ci_low=difference - half,
        ci_high=difference + half,
        z=z,
        p_value=p,
        lift=lift,
        lift_ci_low=lift - crit * lift_se,
        lift_ci_high=lift + crit * lift_se,
        alpha=alpha,
        enough_data=not math.isnan(p),
    )


def _rate_and_variance(conversions: ArrayLike, users: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Observed rate and the variance of that estimate, p(1-p)/n; NaN for n = 0."""
    x = np.asarray(conversions, dtype=float)
    n = np.asarray(users, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(n > 0, x / n, np.nan)
        return rate, rate * (1.0 - rate) / n


def _lift_delta_method(rate_a: float, var_a: float, rate_b: float, var_b: float) -> tuple[float, float]:
    """Relative lift r = p_b/p_a - 1 and its first-order (delta-method) standard error.

    Gradient of p_b/p_a is (-p_b/p_a**2, 1/p_a); the two groups are independent,
    so Var(r) ~= var_a * p_b**2 / p_a**4 + var_b / p_a**2.
    """
    if not rate_a > 0 or math.isnan(rate_b):  # also catches NaN rate_a
        return math.nan, math.nan
    lift = rate_b / rate_a - 1.0
    se = math.sqrt(var_a * rate_b**2 / rate_a**4 + var_b / rate_a**2)
    return lift, se
