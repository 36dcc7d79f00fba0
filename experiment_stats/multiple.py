"""Multiple-comparison correction for A/B/n experiments."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def holm_adjust(p_values: Sequence[float]) -> tuple[float, ...]:
    """Holm step-down adjusted p-values: family-wise error <= alpha under any dependence.

    NaN p-values (variations without enough data) stay NaN and do not count
    towards the number of hypotheses.
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, math.nan)
    finite = np.flatnonzero(~np.isnan(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = order.size
    # k-th smallest p is multiplied by (m - k); the running max keeps the step-down monotone.
    scaled = (m - np.arange(m)) * p[order]
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return tuple(adjusted.tolist())
