"""Holm's step-down adjustment vs statsmodels, and the A/B/n comparison built on it."""

import gc
import math

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from experiment_stats import (
    compare_proportions,
    compare_to_control,
    holm_adjust,
    msprt_two_proportions,
)


@pytest.fixture
def cheap_gc():
    """statsmodels' Holm branch calls gc.collect() on every call; freezing the existing heap keeps that O(1)."""
    gc.freeze()
    yield
    gc.unfreeze()


def test_holm_matches_statsmodels(cheap_gc):
    rng = np.random.default_rng(61)
    for _ in range(300):
        m = int(rng.integers(1, 12))
        p = rng.uniform(0, 1, m) ** rng.uniform(1, 6)  # skewed towards small p-values
        if rng.uniform() < 0.3:
            p[rng.integers(0, m)] = p[0]  # ties
        _, expected, _, _ = multipletests(p, method="holm")
        np.testing.assert_allclose(holm_adjust(p.tolist()), expected, rtol=1e-12, atol=1e-15)


def test_holm_skips_missing_p_values():
    adjusted = holm_adjust([0.01, math.nan, 0.04, 0.03])
    _, expected, _, _ = multipletests([0.01, 0.04, 0.03], method="holm")
    assert math.isnan(adjusted[1])
    np.testing.assert_allclose([adjusted[0], adjusted[2], adjusted[3]], expected)
    assert holm_adjust([]) == ()


def test_compare_to_control_adjusts_each_family():
    control = (1_000, 10_000)
    variants = {"B": (1_090, 10_000), "C": (1_130, 9_950), "D": (1_010, 10_020)}
    results = compare_to_control(control, variants)
    assert [r.variant for r in results] == ["B", "C", "D"]
    for r in results:
        assert r.fixed == compare_proportions(*control, *variants[r.variant])
        assert r.sequential == msprt_two_proportions(*control, *variants[r.variant])
        assert r.users_control == 10_000 and r.users_variant == variants[r.variant][1]
        assert 0.0 <= r.chance_to_beat_control <= 1.0
    for raw, adjusted in [("fixed", "p_value_holm"), ("sequential", "sequential_p_value_holm")]:
        _, expected, _, _ = multipletests([getattr(r, raw).p_value for r in results], method="holm")
        np.testing.assert_allclose([getattr(r, adjusted) for r in results], expected)


def test_compare_to_control_carries_the_previous_peek():
    first = {r.variant: r.sequential for r in compare_to_control((100, 1_000), {"B": (160, 1_000)})}
    later = compare_to_control((1_000, 10_000), {"B": (1_020, 10_000)}, previous=first)[0]
    assert later.sequential.p_value == pytest.approx(first["B"].p_value)  # running minimum kept
    assert later.sequential.ci_low >= first["B"].ci_low and later.sequential.ci_high <= first["B"].ci_high
