"""Guardrail metrics: an always-valid, one-sided non-inferiority test against the control.

A guardrail metric (latency, refunds) must not get worse by more than a margin m > 0. For a
higher-is-better metric the test is H0: theta <= -m (the variation is worse by m or more)
against H1: theta > -m; for lower-is-better, H0: theta >= m against H1: theta < m. It is a
one-sided mSPRT: the normal likelihood ratio mixed over a half-normal N(0, tau2) on the
alternative side only, which has the closed form

    Lambda_+(theta0) = 2 Phi(D tau / sqrt(s2 (s2 + tau2))) * sqrt(s2 / (s2 + tau2))
                       * exp(tau2 D^2 / (2 s2 (s2 + tau2))),   D = d - theta0,

(for lower-is-better D = theta0 - d). Every component of the mixture is a
nonnegative supermartingale under any theta in H0, so by Ville's inequality
P(Lambda_+ ever >= 1/alpha) <= alpha, at every look and under any stopping rule.

Hence the one-sided always-valid bound (lower bound of theta for higher-is-better, upper for
lower-is-better), the p-value min(1, 1/Lambda_+) at the margin, and, like ``sequential.py``,
a running pair (the best bound and the smallest p-value over the looks). ``passed``: the
running bound lies on the good side of the margin (equivalently p < alpha): non-inferiority
shown. ``failed``: the mirror-image test shows the variation worse than the margin (its
bound on the bad side of the margin), at the same alpha; a failed guardrail stops the
variation (``decision.py``). Otherwise the guardrail is pending.

tau2: the spread of effects the test is tuned for; validity holds for any tau2 > 0, and the
default is margin**2: the test is fastest near the margin, where the answer matters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scipy.optimize import brentq
from scipy.special import log_ndtr

from ._common import check_alpha
from .sequential import msprt_half_width

GuardrailStatus = Literal["passed", "failed", "pending"]
_LOG_2 = math.log(2.0)


@dataclass(frozen=True)
class NonInferiority:
    """One guardrail metric of one variation at this look: the running one-sided always-valid evidence."""

    difference: float  # variant - control now
    std_error: float
    margin: float  # m > 0, on the metric's scale
    higher_is_better: bool
    bound: float  # running one-sided bound: a lower bound of theta (higher is better), else an upper bound
    p_value: float  # running p-value of H0 "worse by the margin or more"; < alpha <=> passed
    bad_bound: float  # running bound of the mirror-image test (upper bound of theta if higher is better)
    bad_p_value: float  # running p-value of H0 "not worse than the margin"; < alpha <=> failed
    tau2: float
    alpha: float
    enough_data: bool
    current_bound: float = math.nan  # this look only
    current_p_value: float = 1.0
    restarted: bool = False  # the two running bounds crossed (the effect moved), so both began again at this look

    @property
    def passed(self) -> bool:
        """Non-inferiority shown: the running bound is on the good side of the margin."""
        return self.p_value < self.alpha

    @property
    def failed(self) -> bool:
        """Worse than the margin, shown with always-valid evidence: the variation should stop."""
        return self.bad_p_value < self.alpha

    @property
    def status(self) -> GuardrailStatus:
        return "passed" if self.passed else "failed" if self.failed else "pending"


def non_inferiority(
    difference: float,
    variance: float,
    *,
    margin: float,
    higher_is_better: bool = True,
    tau2: float | None = None,
    alpha: float = 0.05,
    previous: NonInferiority | None = None,
) -> NonInferiority:
    """One-sided always-valid non-inferiority at this look, continuing ``previous`` (same margin, tau2, alpha).

    ``difference`` and ``variance`` are variant - control and its variance from any
    comparison (``MetricComparison.difference`` and ``.variance``, a CUPED-adjusted one, or
    proportions). ``tau2`` defaults to ``margin ** 2``.
    """
    check_alpha(alpha)
    if not (math.isfinite(margin) and margin > 0):
        raise ValueError(f"margin must be a finite number > 0, got {margin!r}")
    tau2 = margin**2 if tau2 is None else tau2
    if not tau2 > 0:
        raise ValueError(f"tau2 must be > 0, got {tau2!r}")
    # On the "good" scale g = sign * theta a larger value is better and H0 is g <= -margin.
    sign = 1.0 if higher_is_better else -1.0
    good = sign * difference
    enough_data = bool(variance > 0) and math.isfinite(difference)
    if enough_data:
        reach = _one_sided_reach(variance, tau2, alpha)
        now_low, now_high = good - reach, good + reach
        now_p = _p_value(good + margin, variance, tau2)
        now_bad_p = _p_value(-margin - good, variance, tau2)
    else:
        now_low, now_high, now_p, now_bad_p = -math.inf, math.inf, 1.0, 1.0
    low, high, p, bad_p, restarted = now_low, now_high, now_p, now_bad_p, False
    if previous is not None:
        low, high = max(sign * previous.bound, now_low), min(sign * previous.bad_bound, now_high)
        p, bad_p = min(previous.p_value, now_p), min(previous.bad_p_value, now_bad_p)
        if low > high:  # as in sequential.py: keep nothing of the looks this one contradicts
            low, high, p, bad_p, restarted = now_low, now_high, now_p, now_bad_p, True
    return NonInferiority(
        difference=difference,
        std_error=math.sqrt(variance) if enough_data else math.nan,
        margin=margin,
        higher_is_better=higher_is_better,
        bound=sign * low,
        p_value=p,
        bad_bound=sign * high,
        bad_p_value=bad_p,
        tau2=tau2,
        alpha=alpha,
        enough_data=enough_data,
        current_bound=sign * now_low,
        current_p_value=now_p,
        restarted=restarted,
    )


def one_sided_log_likelihood_ratio(distance: float, variance: float, tau2: float) -> float:
    """ln Lambda_+ for an estimate ``distance`` = d - theta0 past the null, towards the alternative."""
    spread = variance + tau2
    return (_LOG_2 + float(log_ndtr(distance * math.sqrt(tau2 / (variance * spread))))
            + 0.5 * math.log(variance / spread) + tau2 * distance**2 / (2.0 * variance * spread))


def _p_value(distance: float, variance: float, tau2: float) -> float:
    """min(1, 1 / Lambda_+) at this look."""
    return min(1.0, math.exp(-one_sided_log_likelihood_ratio(distance, variance, tau2)))


def _one_sided_reach(variance: float, tau2: float, alpha: float) -> float:
    """The distance D > 0 at which Lambda_+ = 1/alpha: the bound lies D below (or above) the estimate.

    Lambda_+ = 2 Phi(.) Lambda grows with D, and 1 < 2 Phi(.) < 2 for D > 0, so the root lies
    between the two-sided half-widths at 2 alpha (0 if alpha >= 0.5) and at alpha (``sequential.py``).
    """
    target = math.log(1.0 / alpha)
    upper = msprt_half_width(variance, tau2, alpha)
    lower = msprt_half_width(variance, tau2, 2.0 * alpha) if alpha < 0.5 else 0.0
    return brentq(lambda d: one_sided_log_likelihood_ratio(d, variance, tau2) - target, lower, upper,
                  xtol=1e-12 * upper)
