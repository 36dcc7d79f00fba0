"""Seeded simulations of whole experiments watched the way the gateway watches them.

Every experiment is looked at after each 500 users per variant, up to 40,000, through
``SequentialMonitor`` (what the results document runs over its timeline): always-valid
evidence carried from look to look, tau2 from the planned MDE (10 % baseline, +10 %),
verdicts final once given. The figures are printed (``pytest -s``) and the README quotes them.
"""

import math
from collections import Counter
from collections.abc import Mapping

import numpy as np
import pytest

from experiment_stats import SequentialMonitor, tau2_for_mde

ALPHA = 0.05
BATCH, LOOKS = 500, 80  # a look every 500 users per variant, up to 40,000
TAU2 = tau2_for_mde(0.10, 0.10)
MDE = 0.10


def watch(rng: np.random.Generator, rates: Mapping[str, float], runs: int) -> list[list]:
    """For every simulated experiment, the decision at every look (the first variant is the control)."""
    names = list(rates)
    histories = []
    for _ in range(runs):
        conversions = {n: rng.binomial(BATCH, p, size=LOOKS).cumsum() for n, p in rates.items()}
        monitor = SequentialMonitor(names[0], names[1:], tau2=TAU2, alpha=ALPHA, mde_relative=MDE)
        histories.append([monitor.look({n: (int(conversions[n][k]), BATCH * (k + 1)) for n in names})
                          for k in range(LOOKS)])
    return histories


def first_final(history: list) -> tuple[str | None, int | None]:
    """The experiment's first verdict other than keep_running, and the users per variant when it came."""
    for k, decision in enumerate(history):
        if decision.final:
            return decision.action, BATCH * (k + 1)
    return None, None


def assert_no_verdict_changes(history: list) -> None:
    """Once given, a variation's verdict (with its evidence) and the experiment's action never change."""
    given: dict[str, object] = {}
    action = None
    for decision in history:
        if action is not None:
            assert decision.action == action
        elif decision.final:
            action = decision.action
        for verdict in decision.variations:
            if verdict.variant in given:
                assert verdict == given[verdict.variant]
            elif verdict.final:
                given[verdict.variant] = verdict


def tolerance(rate: float, runs: int) -> float:
    return 3 * math.sqrt(rate * (1 - rate) / runs)


def test_a_true_winner_is_shipped_and_rarely_told_to_keep_the_control():
    """10 % -> 11 % (a true +10 %): at most 10 % of runs may get keep_control as their first verdict."""
    runs = 1_000
    histories = watch(np.random.default_rng(21), {"control": 0.10, "b": 0.11}, runs)
    firsts = [first_final(h) for h in histories]
    counts = Counter(action for action, _ in firsts)
    shipped_at = [users for action, users in firsts if action == "ship_variation"]
    print(f"\ntrue +10 % winner, {runs} runs: first verdicts {dict(counts)}; "
          f"shipped in {counts['ship_variation'] / runs:.1%}, median at {int(np.median(shipped_at)):,} users per variant")
    for history in histories:
        assert_no_verdict_changes(history)
    assert counts["keep_control"] / runs <= 0.10
    assert counts["ship_variation"] / runs >= 0.90


def test_a_a_experiments_ship_at_most_alpha():
    runs = 1_000
    histories = watch(np.random.default_rng(22), {"control": 0.10, "b": 0.10}, runs)
    counts = Counter(first_final(h)[0] for h in histories)
    print(f"\nA/A, {runs} runs: first verdicts {dict(counts)}; shipped {counts['ship_variation'] / runs:.1%}")
    for history in histories:
        assert_no_verdict_changes(history)
    assert counts["ship_variation"] / runs <= ALPHA + tolerance(ALPHA, runs)


def test_a_worse_variation_is_stopped_while_another_is_still_undecided():
    """A/B/n: b is worse (10 % -> 8.5 %), c is a small true gain (10 % -> 10.3 %) that takes long to show.
    b gets its own ``stop`` at a look where c is still undecided and the experiment keeps running."""
    runs = 300
    histories = watch(np.random.default_rng(23), {"control": 0.10, "b": 0.085, "c": 0.103}, runs)
    stopped_alone = 0
    for history in histories:
        assert_no_verdict_changes(history)
        for decision in history:
            b, c = decision.verdict_of("b"), decision.verdict_of("c")
            if b.verdict == "stop":
                stopped_alone += c.verdict == "keep_running" and decision.action == "keep_running"
                break
    worse_shipped = sum(any(d.variant == "b" for d in h) for h in histories)
    print(f"\nA/B/n, {runs} runs: b stopped while c undecided in {stopped_alone / runs:.1%}; b shipped {worse_shipped}")
    assert stopped_alone / runs >= 0.9
    assert worse_shipped == 0


@pytest.mark.parametrize("seed", [31, 32])
def test_verdicts_do_not_follow_a_drifting_effect(seed):
    """A novelty effect: +2 pp for the first 10,000 users per variant, then none. Verdicts given early
    stay given; none is later turned into the opposite."""
    rng = np.random.default_rng(seed)
    names = ("control", "b")
    flipped = 0
    for _ in range(100):
        rate_b = np.where(np.arange(LOOKS) < 20, 0.12, 0.10)
        conversions = {"control": rng.binomial(BATCH, 0.10, size=LOOKS).cumsum(),
                       "b": rng.binomial(BATCH, rate_b).cumsum()}
        monitor = SequentialMonitor("control", ["b"], tau2=TAU2, alpha=ALPHA, mde_relative=MDE)
        history = [monitor.look({n: (int(conversions[n][k]), BATCH * (k + 1)) for n in names}) for k in range(LOOKS)]
        assert_no_verdict_changes(history)
        actions = {d.action for d in history if d.final}
        flipped += len(actions) > 1
    assert flipped == 0
