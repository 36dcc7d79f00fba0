"""Sample sizes vs statsmodels and vs published worked examples; the mSPRT plan vs statsmodels and simulation."""

import math

import numpy as np
import pytest
from statsmodels.stats.power import NormalIndPower
from scipy.stats import norm
from statsmodels.stats.proportion import proportion_effectsize

from experiment_stats import (
    always_valid_p_values,
    days_remaining,
    difference_and_variance,
    msprt_half_width,
    msprt_log_likelihood_ratio,
    msprt_power,
    sample_size_classic,
    sample_size_cohen_h,
    sample_size_msprt,
    tau2_for_mde,
)


def test_cohen_h_matches_statsmodels_normal_ind_power():
    rng = np.random.default_rng(71)
    solver = NormalIndPower()
    for _ in range(200):
        baseline = float(rng.uniform(0.01, 0.6))
        relative_mde = float(rng.uniform(0.02, 0.5))
        alpha = float(rng.choice([0.01, 0.05, 0.1]))
        power = float(rng.choice([0.8, 0.9, 0.95]))
        ours = sample_size_cohen_h(baseline, relative_mde, relative=True, alpha=alpha, power=power)
        effect = proportion_effectsize(baseline * (1 + relative_mde), baseline)
        expected = solver.solve_power(effect_size=effect, alpha=alpha, power=power, ratio=1.0)
        assert ours.exact == pytest.approx(expected, rel=1e-6)
        assert ours.users_per_variant == math.ceil(ours.exact)


def test_cohen_h_for_the_classic_10_to_12_percent_example():
    """Baseline 10 %, MDE +2 points (to 12 %), alpha 0.05 two-sided, power 0.8: 3,835 users per variant."""
    absolute = sample_size_cohen_h(0.10, 0.02)
    relative = sample_size_cohen_h(0.10, 0.20, relative=True)
    assert absolute.users_per_variant == relative.users_per_variant == 3_835
    assert absolute.absolute_effect == pytest.approx(0.02)


@pytest.mark.parametrize(
    ("p1", "p2", "alpha", "power", "published"),
    [(0.50, 0.75, 0.05, 0.90, 76.7), (0.50, 0.501, 0.001, 0.90, 10_451_937), (0.90, 1.00, 0.05, 0.80, 73.37)],
)
def test_classic_formula_reproduces_r_power_prop_test_examples(p1, p2, alpha, power, published):
    """Worked examples published in R's documentation of stats::power.prop.test (Examples section):

        power.prop.test(p1 = .50, p2 = .75, power = .90)                    ## =>     n = 76.7
        power.prop.test(p1 = .5, p2 = 0.501, sig.level=.001, power=0.90)    ## => n = 10451937
        power.prop.test(p1=0.90, p2= 1.0, power=0.8)                         ##-> n = 73.37

    power.prop.test (default strict = FALSE) solves the Fleiss formula without
    continuity correction, which is what sample_size_classic implements.
    """
    ours = sample_size_classic(p1, p2 - p1, alpha=alpha, power=power)
    decimals = len(str(published).split(".")[1]) if isinstance(published, float) else 0
    assert round(ours.exact, decimals) == published


def test_classic_formula_for_the_10_to_12_percent_example():
    """Same formula by hand: (1.95996*sqrt(2*.11*.89) + 0.84162*sqrt(.1*.9 + .12*.88))**2 / .02**2 = 3840.85."""
    assert sample_size_classic(0.10, 0.02).exact == pytest.approx(3840.85, abs=0.01)
    assert sample_size_classic(0.10, 0.02).users_per_variant == 3_841


def test_a_drop_needs_the_same_users_as_a_rise_of_the_same_size_on_the_mirrored_rate():
    assert sample_size_classic(0.30, -0.05).exact == pytest.approx(sample_size_classic(0.70, 0.05).exact)


@pytest.mark.parametrize("bad", [dict(baseline_rate=0.0, mde=0.01), dict(baseline_rate=0.1, mde=0.0),
                                 dict(baseline_rate=0.95, mde=0.1), dict(baseline_rate=0.1, mde=0.01, power=0.01)])
def test_invalid_plans_are_rejected(bad):
    with pytest.raises(ValueError):
        sample_size_cohen_h(**bad)


def test_days_remaining():
    assert days_remaining(10_000, 4_000, 1_500) == pytest.approx(4.0)
    assert days_remaining(10_000, 12_000, 1_500) == 0.0
    assert days_remaining(10_000, 4_000, 0) == math.inf


@pytest.mark.parametrize(("baseline", "mde", "alpha", "users"),
                         [(0.10, 0.10, 0.05, 28_581), (0.05, 0.20, 0.025, 17_000), (0.30, 0.05, 0.05, 9_000)])
def test_msprt_power_is_a_z_test_at_the_always_valid_critical_value_as_statsmodels_computes_it(
        baseline, mde, alpha, users):
    """At one look the mSPRT rejects when |d| exceeds its half-width h, i.e. a two-sided z-test whose
    critical value is h / sigma; statsmodels' NormalIndPower gives that test's power, with the effect size
    delta / sqrt(V / 2) (V = p1 q1 + p2 q2) and alpha' = 2 (1 - Phi(h / sigma))."""
    target, tau2 = baseline * (1 + mde), tau2_for_mde(baseline, mde)
    pair_variance = baseline * (1 - baseline) + target * (1 - target)
    sigma = math.sqrt(pair_variance / users)
    equivalent_alpha = 2 * norm.sf(msprt_half_width(sigma**2, tau2, alpha) / sigma)
    expected = NormalIndPower().power(effect_size=(target - baseline) / math.sqrt(pair_variance / 2), nobs1=users,
                                      alpha=equivalent_alpha, ratio=1.0, alternative="two-sided")
    assert msprt_power(users, baseline, target, tau2=tau2, alpha=alpha) == pytest.approx(expected, rel=1e-9)


def test_msprt_sample_size_gives_the_requested_power_at_that_look_and_more_with_earlier_looks():
    """Simulated: 4,000 experiments at 10 % -> 11 % with tau2 from the MDE. At the planned n alone the mSPRT
    rejects in 80 % of them (the formula), and counting a look every 500 users up to it, more often."""
    tau2 = tau2_for_mde(0.10, 0.10)
    plan = sample_size_msprt(0.10, 0.10, relative=True, tau2=tau2)
    assert plan.method == "msprt" and plan.users_per_variant > sample_size_cohen_h(0.10, 0.10, relative=True).exact
    assert msprt_power(plan.exact, 0.10, 0.11, tau2=tau2) == pytest.approx(0.8, abs=1e-9)
    rng = np.random.default_rng(5)
    runs, batch = 4_000, 500
    looks = math.ceil(plan.users_per_variant / batch)
    users = np.minimum(batch * np.arange(1, looks + 1), plan.users_per_variant)
    increments = np.diff(users, prepend=0)
    conv_a = rng.binomial(increments, 0.10, size=(runs, looks)).cumsum(axis=-1)
    conv_b = rng.binomial(increments, 0.11, size=(runs, looks)).cumsum(axis=-1)
    paths = always_valid_p_values(conv_a, users, conv_b, users, tau2=tau2)
    at_planned_look = float((np.exp(-msprt_log_likelihood_ratio(
        *difference_and_variance(conv_a[:, -1], users[-1], conv_b[:, -1], users[-1]), tau2)) < 0.05).mean())
    by_planned_look = float((paths[:, -1] < 0.05).mean())
    print(f"\nmSPRT plan {plan.users_per_variant:,} per variant (fixed-horizon {sample_size_cohen_h(0.1, 0.1, relative=True).users_per_variant:,}): "
          f"rejects at that look {at_planned_look:.3f}, by it with a look every 500: {by_planned_look:.3f}")
    assert at_planned_look == pytest.approx(0.8, abs=3 * math.sqrt(0.16 / runs))
    assert 0.8 <= by_planned_look <= 0.95
