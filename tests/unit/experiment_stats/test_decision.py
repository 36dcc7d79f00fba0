"""The decision rules on clear-cut cases, including the exact reason texts users will read."""

from experiment_stats import (
    GuardrailBreach,
    SampleSize,
    SequentialMonitor,
    SrmResult,
    compare_to_control,
    decide,
    sample_ratio_mismatch,
    sample_size_cohen_h,
)

PLAN = sample_size_cohen_h(0.10, 0.01)  # 10 % -> 11 %: about 14,700 users per variant


def _plan(users_per_variant):
    """A plan for 10 % -> 11 % needing exactly this many users (keeps the expected texts readable)."""
    return SampleSize(users_per_variant, float(users_per_variant), 0.10, 0.11, 0.05, 0.8, "cohen_h")


def test_sample_ratio_mismatch_stops_the_experiment_first():
    srm = SrmResult(statistic=23.9, p_value=1e-6, df=1, flagged=True, threshold=0.001, expected=(5e3, 5e3))
    winning = compare_to_control((1_000, 10_000), {"B": (1_400, 10_000)})
    breach = GuardrailBreach("fallback rate", 0.07, 0.05)
    decision = decide(winning, plan=PLAN, srm=srm, guardrail_breaches=[breach])
    assert decision.action == "stop"
    assert decision.reason == "stop: sample ratio mismatch (p=1e-6)"


def test_guardrail_breach_stops_the_variation_and_keeps_the_control():
    healthy_split = sample_ratio_mismatch([10_000, 10_000], [1, 1])
    breaches = [GuardrailBreach("fallback rate", 0.07, 0.05), GuardrailBreach("p95 latency", 240, 200, " ms")]
    decision = decide(compare_to_control((1_000, 10_000), {"B": (1_400, 10_000)}), srm=healthy_split,
                      guardrail_breaches=breaches)
    assert decision.action == "keep_control"
    assert decision.verdict_of("B").verdict == "stop"
    assert decision.reason == ("keep control: B: stop (guardrail breached: fallback rate 7% > 5%; "
                               "p95 latency 240 ms > 200 ms)")


def test_a_breaching_variation_is_stopped_on_its_own_while_the_others_keep_running():
    breach = GuardrailBreach("C fallback rate", 0.07, 0.05, variant="C")
    results = compare_to_control((1_000, 10_000), {"B": (1_010, 10_000), "C": (1_020, 10_000)})
    decision = decide(results, plan=_plan(40_000), guardrail_breaches=[breach])
    assert decision.action == "keep_running"
    assert {v.variant: v.verdict for v in decision.variations} == {"B": "keep_running", "C": "stop"}
    assert decision.reason.endswith("; concluded: C: stop (guardrail breached: C fallback rate 7% > 5%)")


def test_a_significantly_worse_variation_is_stopped_while_another_is_undecided():
    """The issue's A/B/n case: b significantly worse, c undecided. b gets ``stop`` on its own; c runs on."""
    results = compare_to_control((1_000, 10_000), {"b": (700, 10_000), "c": (1_030, 10_000)})
    decision = decide(results, plan=_plan(40_000))
    assert decision.action == "keep_running"
    assert decision.verdict_of("b").verdict == "stop"
    assert decision.verdict_of("b").reason.startswith("significantly worse: rate 10% -> 7% (-3.00 pp")
    assert decision.verdict_of("c").verdict == "keep_running"


def test_clear_winner_is_shipped_and_the_best_of_several_is_chosen():
    results = compare_to_control((1_000, 10_000), {"B": (1_300, 10_000), "C": (1_400, 10_000), "D": (990, 10_000)})
    decision = decide(results, plan=PLAN)
    assert decision.action == "ship_variation" and decision.variant == "C"
    assert decision.reason.startswith("ship C: rate 10% -> 14% (+4.00 pp, always-valid 95% CI ")


def test_lower_is_better_flips_the_direction():
    results = compare_to_control((1_000, 10_000), {"B": (700, 10_000)})
    assert decide(results, plan=PLAN, higher_is_better=False).action == "ship_variation"
    assert decide(results, plan=PLAN).action == "keep_control"


def test_significantly_worse_variation_keeps_the_control():
    decision = decide(compare_to_control((1_000, 10_000), {"B": (700, 10_000)}), plan=PLAN)
    assert decision.action == "keep_control"
    assert decision.reason.startswith("keep control: B: stop (significantly worse: rate 10% -> 7% (-3.00 pp")


def test_the_issues_call_does_not_ship_the_worse_variation():
    """b significantly worse at the first look; at the second its interval no longer overlaps the first.
    The running p-value and interval restart together, so b is not shipped on a stale p-value; and with
    the first look's verdict recorded as final, b stays stopped."""
    c1 = compare_to_control((300, 1000), {"b": (180, 1000)})  # b significantly worse
    c2 = compare_to_control((2500, 10000), {"b": (2550, 10000)},
                            previous={"b": c1[0].sequential})
    decision = decide(c2, plan=sample_size_cohen_h(0.1, 0.1, relative=True))
    assert decision.action != "ship_variation"
    assert decision.action == "keep_running" and decision.verdict_of("b").verdict == "keep_running"
    assert "the effect moved over time" in decision.verdict_of("b").reason

    first = decide(c1, plan=sample_size_cohen_h(0.1, 0.1, relative=True))
    assert first.verdict_of("b").verdict == "stop" and first.action == "keep_control"
    later = decide(c2, plan=sample_size_cohen_h(0.1, 0.1, relative=True), final=first)
    assert later == first


def test_a_variations_verdict_stays_once_given_while_the_experiment_runs_on():
    stopped = decide(compare_to_control((1_000, 10_000), {"b": (700, 10_000), "c": (1_030, 10_000)}), plan=_plan(40_000))
    recovered = compare_to_control((2_000, 20_000), {"b": (2_000, 20_000), "c": (2_500, 20_000)})
    decision = decide(recovered, plan=_plan(40_000), final=stopped)
    assert decision.verdict_of("b") == stopped.verdict_of("b")
    assert decision.action == "ship_variation" and decision.variant == "c"


def test_the_monitor_carries_the_running_evidence_and_the_verdicts_from_look_to_look():
    monitor = SequentialMonitor("a", ["b"], tau2=1e-4, mde_relative=0.1)
    first = monitor.look({"a": (300, 1000), "b": (180, 1000)})
    second = monitor.look({"a": (2500, 10000), "b": (2550, 10000)})
    assert first.verdict_of("b").verdict == "stop" and second is first
    assert monitor.tests["b"].restarted


def test_effect_ruled_out_smaller_than_the_mde_keeps_the_control_early():
    plan = SampleSize(50_000, 50_000.0, 0.10, 0.12, 0.05, 0.8, "classic")  # MDE +2 pp, plan not reached yet
    decision = decide(compare_to_control((2_000, 20_000), {"B": (2_010, 20_000)}), plan=plan)
    assert decision.action == "keep_control"
    assert decision.reason.startswith("keep control: B: no effect (always-valid CI -0.")
    assert decision.reason.endswith(" pp, inside +/-2.00 pp: an effect as large as the MDE is ruled out)")


def test_too_few_users_keeps_running_and_says_how_many_more():
    results = compare_to_control((300, 3_000), {"B": (315, 3_000)})
    decision = decide(results, plan=_plan(15_387))
    assert decision.action == "keep_running"
    assert decision.reason == "not enough data: about 12,400 more users per variant needed"
    with_traffic = decide(results, plan=_plan(15_387), users_per_day_per_variant=2_000)
    assert with_traffic.reason.endswith("needed (about 7 days at current traffic)")


def test_reaching_the_planned_sample_is_not_a_verdict():
    """Futility needs sequentially valid evidence; a fixed n reached without a difference keeps it running."""
    decision = decide(compare_to_control((1_500, 15_000), {"B": (1_540, 15_000)}), plan=_plan(14_000))
    assert decision.action == "keep_running"
    assert decision.reason.startswith(
        "no verdict yet after 15,000 users per variant (the always-valid test needed about 14,000 for 80% power"
    )


def test_no_data_at_all_keeps_running():
    decision = decide(compare_to_control((0, 0), {"B": (0, 0)}))
    assert decision.action == "keep_running"
    assert decision.reason == "not enough data: no significant difference yet after 0 users per variant"


def test_the_readmes_worked_example():
    """README "Worked example": 1,000 vs 1,150 of 10,000 with tau2 = 1e-4 -> p = 0.018, CI +0.16 to +2.84 pp."""
    decision = decide(compare_to_control((1_000, 10_000), {"b": (1_150, 10_000)}, tau2=1e-4), plan=PLAN)
    assert decision.action == "ship_variation" and decision.verdict_of("b").verdict == "ship"
    assert decision.reason == "ship b: rate 10% -> 11.5% (+1.50 pp, always-valid 95% CI +0.16 to +2.84 pp, p=0.018)"
