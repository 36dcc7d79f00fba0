"""Planning: users per variation needed to detect a minimum effect, and days left.

The minimum detectable effect (MDE) is absolute by default (0.02 means 10 % ->
12 %); pass ``relative=True`` to read it as a relative lift (0.2 means 10 % ->
12 %). Either sign is accepted (a drop is detected like a rise); alpha is two-sided.

Two formulas are offered because tools disagree and users compare against both:

* ``sample_size_cohen_h``: normal approximation on Cohen's effect size
  h = 2 asin(sqrt(p2)) - 2 asin(sqrt(p1)), solved exactly for the two-sided power
  (both rejection tails), i.e. statsmodels' ``NormalIndPower().solve_power`` with
  ``proportion_effectsize`` and ratio 1.
* ``sample_size_classic``: the textbook formula with the pooled rate under the
  null and the two rates' own variances under the alternative (Fleiss, Levin &
  Paik, "Statistical Methods for Rates and Proportions", 3rd ed., ch. 4, without
  continuity correction; also R's ``power.prop.test``):
  n = (z_{1-alpha/2} sqrt(2 pbar qbar) + z_{power} sqrt(p1 q1 + p2 q2))**2 / (p2 - p1)**2.

For A/B/n with Holm's correction, plan with alpha / (number of variations) to be safe.
Those two plans are for a single look. The decisions use the always-valid test (mSPRT),
which needs more users for the same power, in exchange for safe peeking; plan for it with

* ``sample_size_msprt``: the smallest n per variation at which the mSPRT with mixing
  variance tau2 rejects with the requested probability *at that look alone*, by formula:
  with V = p1 q1 + p2 q2, sigma = sqrt(V / n) and h the always-valid half-width at n
  (``sequential.msprt_half_width``), power(n) = Phi((delta - h) / sigma) + Phi((-delta - h) / sigma).
  Every earlier look can only add rejections, so the probability of a verdict by n is at
  least this (the simulation in tests/unit/experiment_stats/test_verdict_simulation.py
  measures how much more with a look every 500 users).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.optimize import brentq
from scipy.stats import norm

from ._common import check_alpha, z_critical
from .sequential import msprt_half_width


@dataclass(frozen=True)
class SampleSize:
    """Users needed per variation (equal split) for a two-sided two-proportion test."""

    users_per_variant: int  # exact value rounded up
    exact: float
    baseline_rate: float
    target_rate: float  # baseline shifted by the MDE
    alpha: float
    power: float
    method: str  # "cohen_h", "classic" or "msprt"

    @property
    def absolute_effect(self) -> float:
        """The MDE as an absolute difference in rates (target - baseline)."""
        return self.target_rate - self.baseline_rate


def sample_size_cohen_h(
    baseline_rate: float, mde: float, *, relative: bool = False, alpha: float = 0.05, power: float = 0.8
) -> SampleSize:
    """Users per variation from Cohen's h and the normal approximation (= statsmodels NormalIndPower)."""
    target = _target_rate(baseline_rate, mde, relative, alpha, power)
    h = abs(2.0 * math.asin(math.sqrt(target)) - 2.0 * math.asin(math.sqrt(baseline_rate)))
    crit = z_critical(alpha)

    def power_at(n: float) -> float:
        shift = h * math.sqrt(n / 2.0)  # h / SE of h-scale difference with n per group
        return float(norm.sf(crit - shift) + norm.cdf(-crit - shift))

    # The one-tail closed form over-estimates n slightly; it brackets the exact root from above.
    upper = 2.0 * ((crit + float(norm.ppf(power))) / h) ** 2
    exact = brentq(lambda n: power_at(n) - power, upper * 1e-9, upper, xtol=1e-12, rtol=1e-13)
    return _result(exact, baseline_rate, target, alpha, power, "cohen_h")


def sample_size_classic(
    baseline_rate: float, mde: float, *, relative: bool = False, alpha: float = 0.05, power: float = 0.8
) -> SampleSize:
    """Users per variation from the Fleiss formula (pooled variance under H0, p1/p2 variances under H1)."""
    target = _target_rate(baseline_rate, mde, relative, alpha, power)
    pbar = (baseline_rate + target) / 2.0
    spread = z_critical(alpha) * math.sqrt(2.0 * pbar * (1.0 - pbar)) + float(norm.ppf(power)) * math.sqrt(
        baseline_rate * (1.0 - baseline_rate) + target * (1.0 - target)
    )
    exact = (spread / (target - baseline_rate)) ** 2
    return _result(exact, baseline_rate, target, alpha, power, "classic")


def msprt_power(users_per_variant: float, baseline_rate: float, target_rate: float, *, tau2: float,
                alpha: float = 0.05) -> float:
    """Probability that the mSPRT rejects at a look with this many users per variation (formula above)."""
    variance = (baseline_rate * (1.0 - baseline_rate) + target_rate * (1.0 - target_rate)) / users_per_variant
    sigma, delta = math.sqrt(variance), abs(target_rate - baseline_rate)
    half = msprt_half_width(variance, tau2, alpha)
    return float(norm.cdf((delta - half) / sigma) + norm.cdf((-delta - half) / sigma))


def sample_size_msprt(
    baseline_rate: float, mde: float, *, tau2: float, relative: bool = False, alpha: float = 0.05, power: float = 0.8
) -> SampleSize:
    """Users per variation for the always-valid test with mixing variance ``tau2`` (see the module docstring)."""
    target = _target_rate(baseline_rate, mde, relative, alpha, power)

    def shortfall(n: float) -> float:
        return msprt_power(n, baseline_rate, target, tau2=tau2, alpha=alpha) - power

    upper = 2.0
    while shortfall(upper) < 0:  # power grows with n (the half-width shrinks like sqrt(log n / n))
        upper *= 2.0
    exact = brentq(shortfall, upper / 2.0, upper, xtol=1e-9, rtol=1e-13) if upper > 2.0 else upper
    return _result(exact, baseline_rate, target, alpha, power, "msprt")


def days_remaining(
    required_per_variant: float, users_per_variant: float, users_per_day_per_variant: float
) -> float:
    """Days until each variation reaches the required users at the current daily traffic (inf if none)."""
    missing = max(required_per_variant - users_per_variant, 0.0)
    if missing == 0.0:
        return 0.0
    return missing / users_per_day_per_variant if users_per_day_per_variant > 0 else math.inf


def _target_rate(baseline_rate: float, mde: float, relative: bool, alpha: float, power: float) -> float:
    """Rate the variation must reach; validates the planning inputs."""
    check_alpha(alpha)
    if not alpha < power < 1.0:
        raise ValueError(f"power must be in (alpha, 1), got {power!r}")
    if not 0.0 < baseline_rate < 1.0:
        raise ValueError(f"baseline_rate must be in (0, 1), got {baseline_rate!r}")
    target = baseline_rate * (1.0 + mde) if relative else baseline_rate + mde
    if mde == 0 or not 0.0 <= target <= 1.0:
        raise ValueError(f"the MDE must be non-zero and keep the rate in [0, 1], got target {target!r}")
    return target


def _result(exact: float, baseline: float, target: float, alpha: float, power: float, method: str) -> SampleSize:
    """Package a solved sample size, rounding up to whole users."""
    return SampleSize(math.ceil(exact), exact, baseline, target, alpha, power, method)
