"""Non-inferiority guardrails: the one-sided mixture vs numerical integration, and its error rates by simulation."""

import math

import numpy as np
import pytest
from scipy import integrate, stats

from experiment_stats import Moments, compare_means, non_inferiority
from experiment_stats.noninferiority import one_sided_log_likelihood_ratio

ALPHA = 0.05
LOOKS, USERS_PER_LOOK = 50, 40


@pytest.mark.parametrize(("distance", "variance", "tau2"), [(0.02, 1e-4, 2.5e-3), (-0.01, 4e-5, 1e-4), (0.0, 1.0, 4.0)])
def test_likelihood_ratio_equals_the_half_normal_mixture_integral(distance, variance, tau2):
    """Lambda_+ = integral over delta > 0 of N(D; delta, s2) 2 N(delta; 0, tau2) d delta / N(D; 0, s2)."""
    sd, tau = math.sqrt(variance), math.sqrt(tau2)
    mixture, _ = integrate.quad(lambda delta: stats.norm.pdf(distance, delta, sd) * 2 * stats.norm.pdf(delta, 0, tau),
                                0, 12 * tau, epsabs=0, epsrel=1e-11, limit=200)
    expected = math.log(mixture / stats.norm.pdf(distance, 0, sd))
    assert one_sided_log_likelihood_ratio(distance, variance, tau2) == pytest.approx(expected, rel=1e-7, abs=1e-9)


def test_the_bound_is_where_the_evidence_reaches_one_over_alpha_and_passing_means_beyond_the_margin():
    result = non_inferiority(-0.01, 1e-4, margin=0.05)
    reach = result.difference - result.bound
    assert one_sided_log_likelihood_ratio(reach, 1e-4, 0.05**2) == pytest.approx(math.log(1 / ALPHA), rel=1e-9)
    assert result.bad_bound == pytest.approx(result.difference + reach)
    assert result.passed and result.bound > -0.05 and result.status == "passed"
    latency = non_inferiority(4.0, 1.0, margin=10.0, higher_is_better=False)  # +4 ms, margin 10 ms
    # Lower is better: the bound is an upper bound of the difference, the failing test's a lower one.
    assert latency.bound - 4.0 == pytest.approx(4.0 - latency.bad_bound) and 4.0 < latency.bound < 10.0
    assert latency.passed


def _latency_experiments(rng, shift):
    """Per-user mean latency (ms, skewed) of control and variant; the variant is ``shift`` ms slower."""
    control = rng.gamma(4.0, 50.0, (LOOKS, USERS_PER_LOOK))
    variant = rng.gamma(4.0, 50.0, (LOOKS, USERS_PER_LOOK)) + shift
    return [_cumulative(v) for v in (control, variant)]


def _cumulative(values):
    sums, squares = np.cumsum(values.sum(axis=1)), np.cumsum((values**2).sum(axis=1))
    return [Moments(USERS_PER_LOOK * (k + 1), float(sums[k]), float(squares[k])) for k in range(LOOKS)]


def _statuses(control, variant, margin, higher_is_better):
    """Every look's non-inferiority result over one experiment."""
    results, last = [], None
    for c, v in zip(control, variant):
        fixed = compare_means(c, v)
        last = non_inferiority(fixed.difference, fixed.variance, margin=margin, higher_is_better=higher_is_better,
                               previous=last)
        results.append(last)
    return results


@pytest.mark.parametrize("higher_is_better", [False, True])
def test_at_the_margin_non_inferiority_is_wrongly_declared_at_most_alpha_over_50_looks(higher_is_better):
    """1,000 experiments exactly at the margin (20 ms slower for lower-is-better latency; for higher-is-better
    the negated metric, 20 lower): the share ever declared non-inferior, and ever declared failed."""
    rng = np.random.default_rng(1700 + higher_is_better)
    margin, passed, failed = 20.0, [], []
    for _ in range(1_000):
        control, variant = _latency_experiments(rng, margin)
        if higher_is_better:  # -latency: the variant is worse by exactly the margin
            control, variant = ([Moments(m.n, -m.sum_y, m.sum_y2) for m in g] for g in (control, variant))
        results = _statuses(control, variant, margin, higher_is_better)
        passed.append(any(r.passed for r in results))
        failed.append(any(r.failed for r in results))
    print(f"\nat the margin: non-inferior in {np.mean(passed):.3f}, failed in {np.mean(failed):.3f} of 1,000")
    assert np.mean(passed) <= ALPHA
    assert np.mean(failed) <= ALPHA


def test_a_harmless_variation_passes_and_a_harmful_one_fails():
    """Not blind: 200 experiments each; equal latency passes by 2,000 users, 60 ms slower fails."""
    rng = np.random.default_rng(1702)
    same = [_statuses(*_latency_experiments(rng, 0.0), 20.0, False)[-1].status for _ in range(200)]
    slower = [_statuses(*_latency_experiments(rng, 60.0), 20.0, False)[-1].status for _ in range(200)]
    assert same.count("passed") / 200 > 0.8 and "failed" not in same
    assert slower.count("failed") / 200 > 0.8 and "passed" not in slower


def test_running_bounds_keep_the_best_evidence_and_restart_when_they_cross():
    first = non_inferiority(0.0, 1e-4, margin=0.05)
    weaker = non_inferiority(-0.02, 4e-4, margin=0.05, previous=first)
    assert weaker.bound == first.bound and weaker.p_value == first.p_value and weaker.passed
    assert weaker.current_bound < first.bound
    turned = non_inferiority(-0.2, 1e-4, margin=0.05, previous=weaker)  # far below everything seen
    assert turned.restarted and turned.failed and not turned.passed
    assert turned.bound == turned.current_bound


def test_no_data_is_pending_and_bad_settings_are_refused():
    empty = non_inferiority(math.nan, math.nan, margin=1.0)
    assert not empty.enough_data and empty.status == "pending" and empty.bound == -math.inf
    for bad in ({"margin": 0.0}, {"margin": -1.0}, {"margin": 1.0, "tau2": 0.0}, {"margin": 1.0, "alpha": 1.0}):
        with pytest.raises(ValueError):
            non_inferiority(0.0, 1.0, **bad)
