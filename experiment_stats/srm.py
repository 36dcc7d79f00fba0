"""Sample ratio mismatch: are users split across variations the way the weights say?

A mismatch means the assignment or the logging is broken (bots, redirects that
drop users, a crashing variation), so every other statistic is suspect. The
default threshold is strict (p < 0.001) because the check runs on every refresh
and a false alarm stops a healthy experiment.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import chi2

DEFAULT_SRM_THRESHOLD = 0.001


@dataclass(frozen=True)
class SrmResult:
    """Chi-square goodness of fit of observed users per variation vs configured weights."""

    statistic: float
    p_value: float  # NaN when no users yet
    df: int
    flagged: bool  # p_value < threshold
    threshold: float
    expected: tuple[float, ...]  # users expected per variation given the total


def sample_ratio_mismatch(
    observed: Sequence[int], weights: Sequence[float], threshold: float = DEFAULT_SRM_THRESHOLD
) -> SrmResult:
    """Chi-square test of observed users per variation against configured traffic weights."""
    counts = np.asarray(observed, dtype=float)
    w = np.asarray(weights, dtype=float)
    if counts.shape != w.shape or counts.ndim != 1 or counts.size < 2:
        raise ValueError("observed and weights must be equal-length sequences of at least 2")
    if (counts < 0).any() or (w < 0).any() or not w.sum() > 0:
        raise ValueError("counts and weights must be >= 0 and weights must not all be 0")
    total = counts.sum()
    expected = total * w / w.sum()
    if total == 0:
        return SrmResult(math.nan, math.nan, counts.size - 1, False, threshold, tuple(expected.tolist()))
    if (counts[w == 0] > 0).any():
        # Users in a variation with weight 0 are an assignment bug, whatever the rest says.
        return SrmResult(math.inf, 0.0, counts.size - 1, True, threshold, tuple(expected.tolist()))
    live = w > 0  # a switched-off, empty variation carries no information
    statistic = float((((counts - expected) ** 2)[live] / expected[live]).sum())
    df = int(live.sum()) - 1
    p = float(chi2.sf(statistic, df)) if df > 0 else 1.0
    return SrmResult(statistic, p, df, p < threshold, threshold, tuple(expected.tolist()))
