"""Bayesian chance that the variation beats the control on a conversion rate.

Model: each rate has an independent uniform Beta(1, 1) prior, so the posteriors
are Beta(1 + conversions, 1 + non-conversions). P(p_b > p_a) is computed
exactly with the closed-form sum for Beta variables with an integer parameter
(Evan Miller, "Formulas for Bayesian A/B Testing", 2015), so there is no
Monte-Carlo noise and no seed: the same counts always give the same number.
Cost and rounding grow with the smaller conversion count: about 0.2 s and an
absolute error near 1e-8 at a million conversions per group.
"""

from __future__ import annotations

import numpy as np
from scipy.special import betaln

from ._common import check_counts


def chance_to_beat_control(conversions_a: int, users_a: int, conversions_b: int, users_b: int) -> float:
    """Posterior probability that the variation's rate exceeds the control's (Beta(1,1) priors, exact)."""
    check_counts(conversions_a, users_a)
    check_counts(conversions_b, users_b)
    alpha_a, beta_a = 1 + conversions_a, 1 + users_a - conversions_a
    alpha_b, beta_b = 1 + conversions_b, 1 + users_b - conversions_b
    # The sum has alpha_b terms; P(B > A) = 1 - P(A > B) (ties have probability 0),
    # so sum over whichever group has fewer conversions.
    if alpha_b <= alpha_a:
        return _prob_second_beats_first(alpha_a, beta_a, alpha_b, beta_b)
    return 1.0 - _prob_second_beats_first(alpha_b, beta_b, alpha_a, beta_a)


def _prob_second_beats_first(alpha_1: int, beta_1: int, alpha_2: int, beta_2: int) -> float:
    """P(X2 > X1) for X_k ~ Beta(alpha_k, beta_k) with integer alpha_2, summed in log space."""
    i = np.arange(alpha_2, dtype=float)
    log_terms = (
        betaln(alpha_1 + i, beta_1 + beta_2)
        - np.log(beta_2 + i)
        - betaln(1.0 + i, beta_2)
        - betaln(alpha_1, beta_1)
    )
    return float(min(1.0, np.exp(log_terms).sum()))
