"""Always-valid inference for a difference between two groups (mSPRT): conversion rates, means, ratios.

Why: a fixed-horizon p-value is only valid if you look once, at a sample size
fixed in advance. A dashboard refreshed every minute "peeks" hundreds of times,
and stopping at the first p < 0.05 then gives false positives far above 5 %.
The mixture sequential probability ratio test (mSPRT) of Johari, Pekelis and
Walsh ("Peeking at A/B Tests", KDD 2017) gives a p-value and a confidence
interval that stay valid at *every* peek, and under any data-dependent stopping rule.

How (normal approximation): the observed difference d = p_b - p_a is treated as
d ~ N(theta, s2), with s2 = p_a(1-p_a)/n_a + p_b(1-p_b)/n_b (plug-in, unpooled).
Nothing below uses that d is a difference of rates: ``sequential_difference`` runs the same
test on any asymptotically normal difference with a plug-in variance (a difference of
means with s_a^2/n_a + s_b^2/n_b, of ratios with the delta-method variance, of
CUPED-adjusted means), and ``msprt_two_proportions`` is that test on rates.
Against H0: theta = theta0 we mix the alternative over theta ~ N(theta0, tau2),
which gives the likelihood ratio in closed form:

    Lambda = sqrt(s2 / (s2 + tau2)) * exp(tau2 * (d - theta0)**2 / (2 * s2 * (s2 + tau2)))

(with equal group sizes n and per-pair variance V, s2 = V/n and this is the
paper's formula). Under H0, Lambda is a nonnegative martingale with mean 1, so by
Ville's inequality P(Lambda ever exceeds 1/alpha) <= alpha. Hence:

* always-valid p-value at this look: p_n = min(1, 1/Lambda_n), and the always-valid CI at
  this look: all theta0 with Lambda_n(theta0) < 1/alpha; solving the quadratic gives
  d +/- sqrt(s2 (s2+tau2)/tau2 * (2 ln(1/alpha) + ln((s2+tau2)/s2))). Both come from the
  same Lambda_n, so "p_n < alpha" and "0 outside the CI" agree at every look, and by
  Ville's inequality the CI holds the true difference at every look at once with
  probability >= 1 - alpha. This "current" pair always contains the current estimate.
* the running pair: the intersection of the intervals of every look, and the minimum of
  their p-values. It is narrower and monotone, and 0 lies outside the intersection exactly
  when some look had p < alpha, so this pair agrees too. When a new interval does not
  overlap the intersection (probability <= alpha for a constant effect: the effect moved),
  the running pair starts again from the current look (``restarted``). Restarting only
  drops looks, which keeps both valid (a larger p-value, a wider interval), and it keeps
  the two halves of the pair from different looks, which is what let a "significantly
  worse" p-value be read against a later interval that pointed the other way.
* drift: the running interval comes from every look, so when the effect changes over
  time (novelty, weekdays) it can exclude the current estimate. ``drift`` is True then
  (and at a restart): people read such an interval as an arithmetic error, so callers
  must show it together with the current interval and say why they differ.

Choosing the mixing variance tau2: it is the prior spread of the true effect, on
the scale of the difference in rates. Validity holds for any tau2 > 0; only the
speed of detection depends on it. Detection is fastest for effects of size about
tau, so set tau2 to the squared effect you expect or care about:
tau2 = (baseline_rate * expected_relative_lift) ** 2, e.g. 10 % baseline and a
10 % relative lift -> (0.01) ** 2 = 1e-4, the default. Too small a tau2 makes
the test slow to react to large effects; too large makes it slow for small ones.
Keep tau2 and alpha fixed for the life of an experiment: ``tau2_for_mde`` derives it from
the planned minimum detectable effect, tau2 = (baseline_rate * relative MDE) ** 2, and the
gateway stores it with the experiment when it starts.

For a numeric metric tau2 is in squared units of the metric: ``tau2_for_numeric_mde``
gives tau2 = mde_absolute ** 2 (e.g. a planned +0.50 EUR revenue per user -> 0.25).

Caveat: the plug-in variance is an approximation that needs a few conversions in
each group; with s2 = 0 (e.g. no conversions yet) the test reports no evidence
(Lambda = 1) and ``enough_data`` is False.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ._common import check_alpha, check_counts
from .proportions import difference_and_variance

DEFAULT_TAU2 = 1e-4  # (1 percentage point)**2, see module docstring


@dataclass(frozen=True)
class SequentialTest:
    """Always-valid (mSPRT) result for the difference b - a at this look: the current pair and the running pair."""

    difference: float  # b - a observed now (rates, means, ratios, ...)
    std_error: float  # sqrt(s2), unpooled
    log_likelihood_ratio: float  # ln Lambda for theta0 = 0 at this look
    p_value: float  # running: minimum of 1/Lambda over the looks since the last restart, capped at 1
    ci_low: float  # running: intersection of the intervals of those looks; 0 outside it <=> p_value < alpha
    ci_high: float
    tau2: float
    alpha: float
    enough_data: bool
    current_p_value: float = 1.0  # this look only: min(1, 1/Lambda_n)
    current_ci_low: float = -math.inf  # this look only: {theta0 : Lambda_n(theta0) < 1/alpha}, holds the estimate
    current_ci_high: float = math.inf
    restarted: bool = False  # this look's interval missed the running one, so the running pair began again here
    drift: bool = False  # the estimate lies outside the running interval (or restarted): the effect moved

    def excludes_zero(self) -> bool:
        """The running interval lies on one side of 0 (equivalently, p_value < alpha)."""
        return self.ci_low > 0 or self.ci_high < 0


def tau2_for_mde(baseline_rate: float, mde: float, *, relative: bool = True) -> float:
    """Mixing variance for an experiment planned to detect ``mde``: tau = the MDE as an absolute difference.

    The mSPRT detects effects of about tau fastest, so tau is set to the effect the
    experiment was planned for: (baseline_rate * mde) ** 2 for a relative MDE, mde ** 2
    for an absolute one. 10 % baseline, +10 % relative -> 1e-4.
    """
    if not 0.0 < baseline_rate < 1.0:
        raise ValueError(f"baseline_rate must be in (0, 1), got {baseline_rate!r}")
    effect = baseline_rate * mde if relative else mde
    if not 0.0 < abs(effect) <= 1.0:
        raise ValueError(f"the MDE must be a non-zero effect of at most 100 %, got {mde!r}")
    return effect**2


def tau2_for_numeric_mde(mde_absolute: float) -> float:
    """Mixing variance for a numeric metric planned to detect an absolute effect ``mde_absolute``: its square.

    Same reasoning as ``tau2_for_mde``: the test is fastest for effects of about tau, in
    the metric's own units (a planned +0.50 EUR per user -> tau2 = 0.25).
    """
    if not (math.isfinite(mde_absolute) and mde_absolute != 0.0):
        raise ValueError(f"the MDE must be a finite non-zero absolute effect, got {mde_absolute!r}")
    return float(mde_absolute) ** 2


def msprt_log_likelihood_ratio(
    difference: ArrayLike, variance: ArrayLike, tau2: float = DEFAULT_TAU2, null_value: float = 0.0
) -> np.ndarray:
    """ln Lambda of the normal-mixture SPRT; 0 (no evidence) where the variance is 0 or NaN."""
    _check_tau2(tau2)
    d = np.asarray(difference, dtype=float) - null_value
    v = np.asarray(variance, dtype=float)
    usable = v > 0  # False for NaN too
    v = np.where(usable, v, 1.0)  # placeholder keeps the arithmetic warning-free
    log_lr = 0.5 * np.log(v / (v + tau2)) + tau2 * d**2 / (2.0 * v * (v + tau2))
    return np.where(usable & np.isfinite(d), log_lr, 0.0)


def always_valid_p_values(
    conversions_a: ArrayLike,
    users_a: ArrayLike,
    conversions_b: ArrayLike,
    users_b: ArrayLike,
    tau2: float = DEFAULT_TAU2,
) -> np.ndarray:
    """Always-valid p-value path for cumulative counts with peeks along the last axis (vectorized)."""
    difference, variance = difference_and_variance(conversions_a, users_a, conversions_b, users_b)
    p = np.minimum(1.0, np.exp(-msprt_log_likelihood_ratio(difference, variance, tau2)))
    return np.minimum.accumulate(p, axis=-1)


def msprt_two_proportions(
    conversions_a: int,
    users_a: int,
    conversions_b: int,
    users_b: int,
    *,
    tau2: float = DEFAULT_TAU2,
    alpha: float = 0.05,
    previous_p_value: float = 1.0,
    previous_ci: tuple[float, float] = (-math.inf, math.inf),
) -> SequentialTest:
    """Always-valid p-value and CI for p_b - p_a at this look, given the previous look's running pair.

    Pass ``p_value`` and ``(ci_low, ci_high)`` returned at the previous look of the *same*
    experiment (same tau2 and alpha); the defaults mean "first look". The running pair
    restarts at this look when its interval misses the previous one (see the module docstring).
    """
    check_counts(conversions_a, users_a)
    check_counts(conversions_b, users_b)
    d_arr, v_arr = difference_and_variance(conversions_a, users_a, conversions_b, users_b)
    return _continue(float(d_arr), float(v_arr), tau2, alpha, previous_p_value, previous_ci)


def sequential_difference(
    difference: float,
    variance: float,
    tau2: float,
    alpha: float = 0.05,
    previous: SequentialTest | None = None,
) -> SequentialTest:
    """Always-valid p-value and CI for any asymptotically normal difference, continuing ``previous``.

    ``difference`` is variant - control on the metric's scale and ``variance`` its plug-in
    variance (e.g. ``MetricComparison.difference`` and ``.variance``); ``tau2`` is in the
    same squared units (``tau2_for_numeric_mde``). ``previous`` is this comparison's
    result at the last look (same tau2 and alpha), None at the first. Running and current
    pairs, restarts and drift are exactly those of ``msprt_two_proportions``; a variance
    that is 0 or NaN means not enough data.
    """
    if previous is None:
        return _continue(difference, variance, tau2, alpha, 1.0, (-math.inf, math.inf))
    return _continue(difference, variance, tau2, alpha, previous.p_value, (previous.ci_low, previous.ci_high))


def _continue(difference: float, variance: float, tau2: float, alpha: float, previous_p_value: float,
              previous_ci: tuple[float, float]) -> SequentialTest:
    """This look's current pair, and the running pair continued from the previous look's (see the module docstring)."""
    check_alpha(alpha)
    log_lr = float(msprt_log_likelihood_ratio(difference, variance, tau2))
    enough_data = bool(variance > 0) and math.isfinite(difference)
    current_p = min(1.0, math.exp(-log_lr))
    p, (low, high) = min(previous_p_value, current_p), previous_ci
    now_low, now_high, restarted = -math.inf, math.inf, False
    if enough_data:
        half = _half_width(variance, tau2, alpha)
        now_low, now_high = difference - half, difference + half
        low, high = max(low, now_low), min(high, now_high)
        if low > high:
            p, low, high, restarted = current_p, now_low, now_high, True
    return SequentialTest(
        difference=difference,
        std_error=math.sqrt(variance) if enough_data else math.nan,
        log_likelihood_ratio=log_lr,
        p_value=p,
        ci_low=low,
        ci_high=high,
        tau2=tau2,
        alpha=alpha,
        enough_data=enough_data,
        current_p_value=current_p,
        current_ci_low=now_low,
        current_ci_high=now_high,
        restarted=restarted,
        drift=enough_data and (restarted or not low <= difference <= high),
    )


def msprt_half_width(variance: float, tau2: float, alpha: float) -> float:
    """Half-width of the always-valid interval at a look whose difference has ``variance`` (for planning)."""
    _check_tau2(tau2)
    check_alpha(alpha)
    return _half_width(variance, tau2, alpha)


def _half_width(variance: float, tau2: float, alpha: float) -> float:
    """Half-width of {theta0 : Lambda(theta0) < 1/alpha}, solved from the closed form of Lambda."""
    log_term = 2.0 * math.log(1.0 / alpha) + math.log((variance + tau2) / variance)
    return math.sqrt(variance * (variance + tau2) / tau2 * log_term)


def _check_tau2(tau2: float) -> None:
    """The mixing variance must be positive; tau2 = 0 would put all prior mass on the null."""
    if not tau2 > 0:
        raise ValueError(f"tau2 must be > 0, got {tau2!r}")
