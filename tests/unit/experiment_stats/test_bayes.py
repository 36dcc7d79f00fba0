"""Exact chance-to-beat-control vs numerical integration and a seeded Monte-Carlo estimate."""

import numpy as np
import pytest
from scipy import integrate, stats

from experiment_stats import chance_to_beat_control

CASES = [
    (0, 0, 0, 0),
    (0, 10, 0, 10),
    (1, 10, 3, 12),
    (3, 12, 1, 10),
    (50, 1_000, 50, 1_000),
    (100, 1_000, 130, 1_000),
    (130, 1_000, 100, 1_000),
    (480, 5_000, 520, 5_100),
    (9_000, 10_000, 9_100, 10_000),
    (2_000, 40_000, 2_150, 40_000),
]


def _by_integration(conv_a, users_a, conv_b, users_b):
    """P(p_b > p_a) = integral of pdf_b(x) * cdf_a(x) dx, with scipy's Beta distributions."""
    post_a = stats.beta(1 + conv_a, 1 + users_a - conv_a)
    post_b = stats.beta(1 + conv_b, 1 + users_b - conv_b)
    low, high = post_b.ppf(1e-13), post_b.isf(1e-13)  # where all of b's mass is
    value, _ = integrate.quad(
        lambda x: post_b.pdf(x) * post_a.cdf(x), low, high, points=[post_b.mean()], epsabs=1e-12, limit=500
    )
    return value


@pytest.mark.parametrize("counts", CASES)
def test_matches_numerical_integration(counts):
    assert chance_to_beat_control(*counts) == pytest.approx(_by_integration(*counts), abs=1e-7)


def test_agrees_with_seeded_monte_carlo():
    rng = np.random.default_rng(51)
    draws = 400_000
    for conv_a, users_a, conv_b, users_b in CASES:
        p_a = rng.beta(1 + conv_a, 1 + users_a - conv_a, draws)
        p_b = rng.beta(1 + conv_b, 1 + users_b - conv_b, draws)
        estimate = (p_b > p_a).mean()
        mc_error = 4 * np.sqrt(max(estimate * (1 - estimate), 1e-4) / draws)
        assert chance_to_beat_control(conv_a, users_a, conv_b, users_b) == pytest.approx(estimate, abs=mc_error)


@pytest.mark.parametrize("counts", CASES)
def test_swapping_groups_gives_the_complement(counts):
    conv_a, users_a, conv_b, users_b = counts
    forward = chance_to_beat_control(conv_a, users_a, conv_b, users_b)
    assert forward + chance_to_beat_control(conv_b, users_b, conv_a, users_a) == pytest.approx(1.0, abs=1e-12)


def test_identical_data_is_a_coin_flip():
    assert chance_to_beat_control(123, 1_000, 123, 1_000) == pytest.approx(0.5, abs=1e-9)
