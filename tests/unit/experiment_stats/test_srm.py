"""Sample ratio mismatch check vs scipy, on a known mismatch, and its false-alarm rate."""

import math

import numpy as np
import pytest
from scipy import stats

from experiment_stats import sample_ratio_mismatch


def test_matches_scipy_chisquare():
    rng = np.random.default_rng(31)
    for _ in range(250):
        k = int(rng.integers(2, 6))
        weights = rng.uniform(0.05, 1.0, k)
        observed = rng.multinomial(int(rng.integers(50, 100_000)), rng.dirichlet(20 * weights))
        ours = sample_ratio_mismatch(observed.tolist(), weights.tolist())
        ref = stats.chisquare(observed, f_exp=observed.sum() * weights / weights.sum())
        np.testing.assert_allclose(
            [ours.statistic, ours.p_value], [ref.statistic, ref.pvalue], rtol=1e-6, atol=1e-12
        )
        assert ours.df == k - 1
        assert ours.flagged == (ref.pvalue < 0.001)


def test_flags_a_52_48_split_of_20000_users():
    result = sample_ratio_mismatch([10_400, 9_600], [50, 50])
    assert result.statistic == pytest.approx(32.0)
    assert result.p_value < 1e-7
    assert result.flagged


@pytest.mark.parametrize(("threshold", "simulations"), [(0.001, 20_000), (0.05, 4_000)])
def test_false_alarm_rate_of_true_50_50_splits_is_at_most_the_threshold(threshold, simulations):
    rng = np.random.default_rng(32)
    # Only a few hundred distinct splits occur, so test each once and weight by how often it occurred.
    splits, occurrences = np.unique(rng.binomial(20_000, 0.5, simulations), return_counts=True)
    flags = sum(
        int(count) * sample_ratio_mismatch([int(a), 20_000 - int(a)], [1, 1], threshold).flagged
        for a, count in zip(splits, occurrences)
    )
    rate = flags / simulations
    allowed = threshold + 3 * math.sqrt(threshold * (1 - threshold) / simulations)
    print(f"\nSRM false alarms at threshold {threshold}: {rate:.4f} (allowed {allowed:.4f})")
    assert rate <= allowed, f"SRM flagged {rate:.4f} of true 50/50 splits at threshold {threshold}"


def test_edge_cases():
    nobody = sample_ratio_mismatch([0, 0], [1, 1])
    assert math.isnan(nobody.p_value) and not nobody.flagged
    # Users in a variation that is switched off are an assignment bug.
    leaked = sample_ratio_mismatch([500, 480, 3], [1, 1, 0])
    assert leaked.flagged and leaked.p_value == 0.0
    # A switched-off, empty variation is simply ignored.
    assert sample_ratio_mismatch([500, 480, 0], [1, 1, 0]).p_value == pytest.approx(
        sample_ratio_mismatch([500, 480], [1, 1]).p_value
    )
    with pytest.raises(ValueError):
        sample_ratio_mismatch([1, 2, 3], [1, 1])
