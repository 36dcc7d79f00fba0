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

GuardrailStatus = Literal["passed", "failed", "pending"]


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
    raise NotImplementedError
