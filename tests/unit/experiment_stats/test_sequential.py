"""mSPRT: closed form vs numerical integration, always-valid guarantees, and the A/A peeking simulation."""

import math

import numpy as np
import pytest
from scipy import integrate, stats

from experiment_stats import (
    always_valid_p_values,
    msprt_log_likelihood_ratio,
    msprt_two_proportions,
    tau2_for_mde,
    z_test,
)

ALPHA = 0.05


@pytest.mark.parametrize(
    ("difference", "variance", "tau2"), [(0.01, 4e-5, 1e-4), (-0.003, 1e-5, 4e-6), (0.0, 2e-4, 1e-3)]
)
def test_likelihood_ratio_equals_the_normal_mixture_integral(difference, variance, tau2):
    """Lambda = integral of N(d; theta, s2) N(theta; 0, tau2) dtheta / N(d; 0, s2)."""
    sd, tau = math.sqrt(variance), math.sqrt(tau2)
    mixture, _ = integrate.quad(
        lambda theta: stats.norm.pdf(difference, theta, sd) * stats.norm.pdf(theta, 0, tau),
        -12 * tau,
        12 * tau,
        epsabs=0,
        epsrel=1e-11,
        limit=200,
    )
    expected = math.log(mixture / stats.norm.pdf(difference, 0, sd))
    ours = float(msprt_log_likelihood_ratio(difference, variance, tau2))
    assert ours == pytest.approx(expected, rel=1e-7, abs=1e-9)


def test_matches_the_papers_equal_sample_size_form():
    """Johari et al. (2017): Lambda_n = sqrt(V/(V+n tau2)) exp(n^2 tau2 d^2 / (2 V (V + n tau2)))."""
    n, rate_a, rate_b, tau2 = 4_000, 0.1, 0.112, 1e-4
    v = rate_a * (1 - rate_a) + rate_b * (1 - rate_b)  # variance of one (b - a) pair
    d = rate_b - rate_a
    paper = 0.5 * math.log(v / (v + n * tau2)) + n**2 * tau2 * d**2 / (2 * v * (v + n * tau2))
    ours = msprt_two_proportions(400, n, 448, n, tau2=tau2)
    assert ours.log_likelihood_ratio == pytest.approx(paper, rel=1e-10)
    assert ours.p_value == pytest.approx(min(1.0, math.exp(-paper)), rel=1e-10)


def test_confidence_bounds_are_where_the_evidence_reaches_one_over_alpha():
    result = msprt_two_proportions(1_000, 10_000, 1_090, 10_000, alpha=ALPHA)
    variance = result.std_error**2
    for bound in (result.ci_low, result.ci_high):
        log_lr = float(msprt_log_likelihood_ratio(result.difference, variance, result.tau2, null_value=bound))
        assert log_lr == pytest.approx(math.log(1 / ALPHA), rel=1e-9)
    # Always-valid intervals are wider than the single-look Wald interval.
    assert result.ci_high - result.difference > 1.96 * result.std_error


def _cumulative_experiments(rng, experiments, peeks, batch, rate_a, rate_b):
    """Cumulative conversions of both groups after each batch, and the users per group at each peek."""
    conv_a = rng.binomial(batch, rate_a, size=(experiments, peeks)).cumsum(axis=-1)
    conv_b = rng.binomial(batch, rate_b, size=(experiments, peeks)).cumsum(axis=-1)
    return conv_a, conv_b, batch * np.arange(1, peeks + 1)


def _assert_p_and_interval_agree(result, alpha=ALPHA):
    """"p < alpha <=> 0 outside the always-valid CI", for the running pair and for this look's pair."""
    assert (result.ci_low > 0 or result.ci_high < 0) == (result.p_value < alpha)
    assert (result.current_ci_low > 0 or result.current_ci_high < 0) == (result.current_p_value < alpha)
    assert result.current_ci_low <= result.difference <= result.current_ci_high


def test_scalar_peeks_reproduce_the_vectorized_path_and_keep_p_and_ci_consistent():
    rng = np.random.default_rng(41)
    conv_a, conv_b, users = _cumulative_experiments(rng, 30, 15, 300, 0.1, 0.115)
    paths = always_valid_p_values(conv_a, users, conv_b, users)
    for exp in range(conv_a.shape[0]):
        previous, restarted = None, False
        for peek, n in enumerate(users):
            previous = msprt_two_proportions(
                int(conv_a[exp, peek]),
                int(n),
                int(conv_b[exp, peek]),
                int(n),
                alpha=ALPHA,
                previous_p_value=previous.p_value if previous else 1.0,
                previous_ci=(previous.ci_low, previous.ci_high) if previous else (-math.inf, math.inf),
            )
            restarted |= previous.restarted
            if not restarted:  # the running minimum is the vectorized path until the evidence restarts
                assert previous.p_value == pytest.approx(paths[exp, peek], rel=1e-12)
            assert previous.current_p_value == pytest.approx(min(1.0, math.exp(-previous.log_likelihood_ratio)))
            _assert_p_and_interval_agree(previous)
    assert (np.diff(paths, axis=-1) <= 0).all(), "always-valid p-values never increase"


def test_p_and_interval_agree_at_every_look_even_when_the_effect_turns_around():
    """The issue's call: b significantly worse at 1,000 users, then slightly better at 10,000. The running
    pair used to keep the old p = 0.014 beside the new interval -1.45..+2.45 pp; now the intervals do not
    overlap, so the running pair restarts from this look (p = 1, interval around +0.5 pp) and says so."""
    first = msprt_two_proportions(300, 1000, 180, 1000)
    assert first.p_value < ALPHA and first.ci_high < 0 and not first.drift
    second = msprt_two_proportions(2500, 10000, 2550, 10000, previous_p_value=first.p_value,
                                   previous_ci=(first.ci_low, first.ci_high))
    assert second.restarted and second.drift
    assert second.p_value == second.current_p_value == 1.0
    assert (second.ci_low, second.ci_high) == pytest.approx((-0.0144639, 0.0244639), abs=1e-7)
    for result in (first, second):
        _assert_p_and_interval_agree(result)


def test_a_drifting_effect_is_flagged_when_the_running_interval_excludes_the_estimate():
    """A novelty effect: +3 pp in the first 20,000 users per variant, +1.4 pp over the next 100,000. The
    intersection of all looks stays near the early effect and excludes the later estimate (+1.67 pp):
    flagged, and this look's interval holds it."""
    early = msprt_two_proportions(2_000, 20_000, 2_600, 20_000, tau2=1e-4)
    late = msprt_two_proportions(12_000, 120_000, 14_000, 120_000, tau2=1e-4,
                                 previous_p_value=early.p_value, previous_ci=(early.ci_low, early.ci_high))
    assert not early.drift
    assert late.drift and not late.restarted
    assert not late.ci_low <= late.difference <= late.ci_high
    assert late.current_ci_low <= late.difference <= late.current_ci_high
    _assert_p_and_interval_agree(late)


def test_tau2_follows_the_planned_mde():
    assert tau2_for_mde(0.10, 0.10) == pytest.approx(1e-4)
    assert tau2_for_mde(0.05, 0.20) == pytest.approx(1e-4)
    assert tau2_for_mde(0.10, 0.02, relative=False) == pytest.approx(4e-4)
    for bad in [(0.0, 0.1), (0.1, 0.0), (1.0, 0.1)]:
        with pytest.raises(ValueError):
            tau2_for_mde(*bad)


def test_no_data_means_no_evidence():
    for counts in [(0, 0, 0, 0), (0, 50, 0, 60), (0, 0, 5, 10)]:
        result = msprt_two_proportions(*counts)
        assert not result.enough_data
        assert result.p_value == 1.0 and result.ci_low == -math.inf and result.ci_high == math.inf
    kept = msprt_two_proportions(0, 0, 0, 0, previous_p_value=0.2, previous_ci=(-0.01, 0.03))
    assert kept.p_value == 0.2 and (kept.ci_low, kept.ci_high) == (-0.01, 0.03)
    with pytest.raises(ValueError):
        msprt_two_proportions(10, 100, 12, 100, tau2=0.0)


def test_a_a_peeking_msprt_stays_within_alpha_while_naive_z_tests_do_not():
    """5,000 A/A experiments (10 % both groups), peeked after each of 20 batches of 500 users per group.

    Stopping at the first naive p < 0.05 declares far too many winners; the
    always-valid p-value does not.
    """
    experiments = 5_000
    rng = np.random.default_rng(2017)
    conv_a, conv_b, users = _cumulative_experiments(rng, experiments, 20, 500, 0.10, 0.10)

    msprt_fpr = (always_valid_p_values(conv_a, users, conv_b, users)[:, -1] < ALPHA).mean()
    _, naive_p = z_test(conv_a, users, conv_b, users)
    naive_fpr = (naive_p < ALPHA).any(axis=-1).mean()

    simulation_error = 3 * math.sqrt(ALPHA * (1 - ALPHA) / experiments)
    message = (
        f"A/A false positive rate with 20 peeks: mSPRT {msprt_fpr:.4f}, naive z-test {naive_fpr:.4f} "
        f"(alpha {ALPHA}, allowed up to {ALPHA + simulation_error:.4f})"
    )
    print("\n" + message)
    assert msprt_fpr <= ALPHA + simulation_error, message
    assert naive_fpr > ALPHA + simulation_error, message


def test_msprt_still_detects_a_real_effect():
    """Safety is not bought with blindness: a 10 % -> 12 % effect is found in most experiments by 10,000 users."""
    rng = np.random.default_rng(2018)
    conv_a, conv_b, users = _cumulative_experiments(rng, 2_000, 20, 500, 0.10, 0.12)
    power = (always_valid_p_values(conv_a, users, conv_b, users)[:, -1] < ALPHA).mean()
    assert power > 0.85, f"mSPRT power {power:.3f}"
