"""The results document of an experiment: SQL aggregates run through ``experiment_stats``.

One function builds the statistics that the JSON endpoint returns, the HTML page draws and
the CLI prints, so the three always agree. It is recomputed from the durable record on
every read: every timeline bucket is one look of the always-valid test
(``SequentialMonitor``), so the evidence and the verdicts do not depend on how often
anyone reads. The one state kept is the final verdicts: the first read that finds a verdict
other than keep_running records it (``experiments.verdicts``, with the look's time and
numbers), and from then on it is shown as given, whatever later data says.

Intervals shown. Each variation has two always-valid intervals, labelled: the running one
(the intersection over the looks, what ``p_value`` and the verdicts use) and this look's
(which always holds the current estimate). When the effect drifts the running one can
exclude the estimate; ``drift`` says so. An interval reaching past what a difference of two
rates can be ([-1, 1]) is clipped to it and marked (``ci_clipped``).
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from scipy.stats import binomtest

from assigner import Variant
from experiment_stats import (
    DEFAULT_SRM_THRESHOLD,
    Decision,
    GuardrailBreach,
    LookOptions,
    MeanSummary,
    SampleSize,
    SequentialMonitor,
    SequentialTest,
    VariantComparison,
    VariationVerdict,
    compare_to_control,
    days_remaining,
    sample_ratio_mismatch,
    sample_size_cohen_h,
    sample_size_msprt,
    welch_t_test,
)
from ml_api.experiments.plans import ALPHA, POWER, Plan
from ml_api.experiments.repository import ExperimentRepository
from ml_api.experiments.verdicts import EXPERIMENT_SUBJECT, RecordedVerdict, record_verdicts
from ml_api.infra.database import Database
from ml_api.results.metric_results import metric_results, primary_moments, primary_tau2
from ml_api.results.query import Aggregates, OutcomeSums, fetch_aggregates
from ml_api.rollout.guardrails import (
    ENFORCED,
    check_variant,
    effective_thresholds,
    stored_thresholds,
)
from ml_api.rollout.report import rollout_results
from ml_api.telemetry.request_stats import RequestSums

# Planning needs a baseline rate; before the control has conversions, use the plan's.
# Traffic per day is measured over at least this long, so a first minute is not extrapolated.
MIN_TRAFFIC_WINDOW_SECONDS = 3600
# What a difference of two rates can be; always-valid intervals reaching further are clipped.
FEASIBLE_DIFFERENCE = (-1.0, 1.0)
POWER_METHOD = ("formula: the smallest n per variant at which the always-valid test with this tau2 rejects with "
                "the planned power at that look alone, at an effect of the MDE on the control's rate; earlier "
                "looks only add, so a verdict by then is at least that likely")
Counts = tuple[int, int]  # (converted users, exposed users)


@dataclass(frozen=True)
class Evaluation:
    """The document, and the verdicts it found that were not recorded yet."""

    document: dict[str, Any]
    new_verdicts: list[RecordedVerdict]


def experiment_results(db: Database, name: str, experiments: ExperimentRepository | None = None) -> dict[str, Any]:
    """The whole document of GET /results (the report command prints the same): statistics, then
    the shadow and rollout sections. UnknownExperiment when there is none."""
    return build_results(db, name, experiments) | rollout_results(db, name)


def build_results(db: Database, name: str, experiments: ExperimentRepository | None = None) -> dict[str, Any]:
    """The statistics of experiment ``name``, recording any verdict given for the first time (through
    ``experiments``, whose listener reports the change; a bare repository when none is given)."""
    evaluation = evaluate(fetch_aggregates(db, name))
    if evaluation.new_verdicts:
        record_verdicts(experiments or ExperimentRepository(db, ()), name, evaluation.new_verdicts)
    return evaluation.document


def stopped_variations(db: Database, name: str, experiments: ExperimentRepository | None = None) -> list[str]:
    """Variations whose final verdict is ``stop`` and that still have traffic (judging records new verdicts)."""
    document = build_results(db, name, experiments)
    weights = {v["variant"]: v["weight"] for v in document["variants"]}
    return [v["variant"] for v in document["verdicts"] if v["final"] and v["verdict"] == "stop" and weights[v["variant"]]]


def results_document(agg: Aggregates) -> dict[str, Any]:
    """Every statistic of the experiment, JSON-ready (NaN and infinities become None); records nothing."""
    return evaluate(agg).document


def evaluate(agg: Aggregates, now: datetime | None = None) -> Evaluation:
    """The document at ``now`` and the verdicts to record (see the module docstring)."""
    now = now or datetime.now(timezone.utc)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # what MySQL keeps of a recorded time
    stored, settings_error = stored_thresholds(agg.experiment.guardrails)
    settings = effective_thresholds(stored)
    plan = agg.plan or Plan(mde=float(stored.get("mde", Plan().mde)))
    control = agg.experiment.default_variant
    variants = agg.experiment.variants
    names = [v.name for v in variants]
    others = [n for n in names if n != control]
    looks = _cumulative_looks(agg, names)
    totals = looks[-1][1] if looks else {n: (0, 0) for n in names}
    # Users first exposed under the current weights (all of them if the weights never changed).
    srm_users = agg.users_since_weights_changed or {n: totals[n][1] for n in names}
    srm_observed = [srm_users.get(n, 0) for n in names]
    srm = sample_ratio_mismatch(srm_observed, [v.weight for v in variants])
    guardrails, breaches = _guardrails(agg, names, control, settings)
    power_plan = _plan(totals[control], plan, len(others))
    slowest, per_day = _traffic(agg, totals, names)
    recorded = _recorded_decision(agg.verdicts)
    primary = agg.metrics.primary
    metrics, guardrail_tests = metric_results(agg.metric_sums, control, others, plan)
    options: LookOptions = {"srm": srm, "guardrail_breaches": breaches, "guardrail_tests": guardrail_tests,
                            "users_per_day_per_variant": per_day}
    # The looks of the timeline are conversions on the primary metric's feedback metric; for a conversion
    # primary they decide too, for a mean or ratio primary the decision looks at its own numbers below.
    by_conversion = primary.type == "conversion"
    tau2 = primary_tau2(primary, plan) if by_conversion else plan.tau2
    monitor = SequentialMonitor(control, others, tau2=tau2, alpha=ALPHA, mde_relative=plan.mde,
                                higher_is_better=primary.higher_is_better or not by_conversion,
                                final=recorded if by_conversion else None)
    timeline, previous, given_at = [], {}, {}
    for k, (bucket, counts) in enumerate(looks or [(None, totals)]):
        at = min(datetime.fromtimestamp(bucket + agg.bucket_seconds, timezone.utc), now) if bucket is not None else now
        last = k == max(len(looks), 1) - 1
        if last:
            previous = dict(monitor.tests)
        before = monitor.decision
        decision = monitor.look(counts, **(options | {"plan": power_plan} if last and by_conversion else {}))
        given_at.update(dict.fromkeys(_newly_final(before, decision), at))
        if bucket is not None:
            timeline.append(_timeline_point(at, names, counts, monitor.tests))
    if not by_conversion:
        decision, given_at = _decide_on_numbers(agg, control, others, plan, recorded, options, now)
    comparisons = compare_to_control(totals[control], {n: totals[n] for n in others}, alpha=ALPHA, tau2=tau2,
                                     previous=previous)
    new_verdicts = _new_verdicts(decision, agg.verdicts, given_at, now)
    outcomes = {n: agg.outcomes.get(n, OutcomeSums()) for n in names}
    means = {n: MeanSummary.from_sums(totals[n][1], outcomes[n].total, outcomes[n].total_of_squares) for n in names}
    written = {v.subject: v for v in new_verdicts} | agg.verdicts
    document = finite({
        "experiment": agg.experiment.name,
        "status": agg.experiment.status,
        "generated_at": _iso(now),
        "control": control,
        "primary_metric": primary.name,
        "metrics": metrics,
        "settings": {"alpha": ALPHA, "power": POWER, "tau2": plan.tau2, "srm_threshold": DEFAULT_SRM_THRESHOLD},
        "plan": plan.as_dict() | {"fixed": plan.fixed_at is not None},
        "first_exposure": _iso(agg.first_exposure),
        "last_exposure": _iso(agg.last_exposure),
        "variants": [_variant(v, v.name == control, totals[v.name], outcomes[v.name], means[v.name]) for v in variants],
        "comparisons": [_comparison(c, means[control], means[c.variant]) for c in comparisons],
        "verdicts": [_verdict(n, decision, written, now) for n in others],
        "srm": {
            "p_value": srm.p_value,
            "flagged": srm.flagged,
            "threshold": srm.threshold,
            "statistic": srm.statistic,
            "observed": dict(zip(names, srm_observed)),
            "expected": dict(zip(names, srm.expected)),
            "since": _iso(agg.weights_changed_at),
        },
        "guardrails": {"thresholds": _thresholds(settings), "config_error": settings_error, "variants": guardrails},
        "power": _power(power_plan, plan, totals, slowest, per_day, len(others)),
        "timeline_bucket_seconds": agg.bucket_seconds,
        "timeline": timeline,
        "decision": {"action": decision.action, "reason": decision.reason, "variant": decision.variant,
                     "final": decision.final, **_when(EXPERIMENT_SUBJECT, written, now)},
    })
    return Evaluation(document, new_verdicts)


def _decide_on_numbers(agg: Aggregates, control: str, others: Sequence[str], plan: Plan,
                       recorded: Decision | None, options: LookOptions,
                       now: datetime) -> tuple[Decision, dict[str, datetime]]:
    """The decision on a mean or ratio primary metric: one always-valid look at its sums now (valid at any
    look, so reading at any time is safe), and the subjects that became final at it."""
    primary = agg.metrics.primary
    decider = SequentialMonitor(control, others, tau2=primary_tau2(primary, plan), alpha=ALPHA,
                                metric=primary.type, mde_absolute=primary.mde,  # type: ignore[arg-type]
                                cuped=primary.type == "mean" and primary.covariate is not None,
                                higher_is_better=primary.higher_is_better, final=recorded)
    decision = decider.look(primary_moments(agg.metric_sums[primary.name]), **options)
    return decision, dict.fromkeys(_newly_final(recorded, decision), now)


def _cumulative_looks(agg: Aggregates, names: Sequence[str]) -> list[tuple[int, dict[str, Counts]]]:
    """Cumulative (conversions, users) per variant at the end of every time bucket: one look each."""
    buckets = sorted({b for series in (agg.new_users, agg.new_conversions) for n in names for b in series.get(n, {})})
    users = dict.fromkeys(names, 0)
    converted = dict.fromkeys(names, 0)
    looks = []
    for bucket in buckets:
        for n in names:
            users[n] += agg.new_users.get(n, {}).get(bucket, 0)
            converted[n] += agg.new_conversions.get(n, {}).get(bucket, 0)
        # Clocks of different hosts can put a conversion a moment before its exposure.
        looks.append((bucket, {n: (min(converted[n], users[n]), users[n]) for n in names}))
    return looks


def _timeline_point(at: datetime, names: Sequence[str], counts: Mapping[str, Counts],
                    tests: Mapping[str, SequentialTest]) -> dict[str, Any]:
    """One look: cumulative counts and each variation's always-valid evidence (no time after ``at``)."""
    return {
        "at": _iso(at),
        "users": {n: counts[n][1] for n in names},
        "conversions": {n: counts[n][0] for n in names},
        "comparisons": {n: {"difference": s.difference, "p_value": s.p_value, **_intervals(s)} for n, s in tests.items()},
    }


def _intervals(s: SequentialTest) -> dict[str, Any]:
    """The running and this look's always-valid intervals, clipped to the feasible range and marked so."""
    low, high = FEASIBLE_DIFFERENCE
    return {
        "ci_low": max(s.ci_low, low), "ci_high": min(s.ci_high, high),
        "ci_clipped": [s.ci_low < low, s.ci_high > high],
        "current_ci_low": max(s.current_ci_low, low), "current_ci_high": min(s.current_ci_high, high),
        "current_ci_clipped": [s.current_ci_low < low, s.current_ci_high > high],
        "drift": s.drift,
        "restarted": s.restarted,
    }


def _recorded_decision(recorded: Mapping[str, RecordedVerdict]) -> Decision | None:
    """The verdicts recorded so far as the ``final`` decision the monitor starts from."""
    if not recorded:
        return None
    variations = tuple(VariationVerdict(s, v.verdict, v.reason, v.evidence)  # type: ignore[arg-type]
                       for s, v in recorded.items() if s != EXPERIMENT_SUBJECT)
    own = recorded.get(EXPERIMENT_SUBJECT)
    if own is None:
        return Decision("keep_running", "", None, variations)
    return Decision(own.verdict, own.reason, own.variant, variations)  # type: ignore[arg-type]


def _newly_final(before: Decision | None, after: Decision) -> list[str]:
    """Subjects (variations, and '' for the experiment) whose verdict became final at this look."""
    subjects = [v.variant for v in after.variations
                if v.final and not (before and (given := before.verdict_of(v.variant)) and given.final)]
    if after.final and not (before and before.final):
        subjects.append(EXPERIMENT_SUBJECT)
    return subjects


def _new_verdicts(decision: Decision, recorded: Mapping[str, RecordedVerdict],
                  given_at: Mapping[str, datetime], now: datetime) -> list[RecordedVerdict]:
    """The final verdicts of ``decision`` that are not recorded yet, each with the look that gave it."""
    new = [RecordedVerdict(v.variant, v.verdict, None, v.reason, finite(dict(v.evidence)), given_at[v.variant], now)
           for v in decision.variations if v.final and v.variant not in recorded and v.variant in given_at]
    if decision.final and EXPERIMENT_SUBJECT not in recorded and EXPERIMENT_SUBJECT in given_at:
        evidence = {v.variant: v.verdict for v in decision.variations}
        new.append(RecordedVerdict(EXPERIMENT_SUBJECT, decision.action, decision.variant, decision.reason, evidence,
                                   given_at[EXPERIMENT_SUBJECT], now))
    return new


def _verdict(name: str, decision: Decision, written: Mapping[str, RecordedVerdict], now: datetime) -> dict[str, Any]:
    """One variation's verdict for the document: a badge, why, and when it became final."""
    verdict = decision.verdict_of(name)
    if verdict is None:  # the experiment's action was final before this variation got a verdict
        return {"variant": name, "verdict": "keep_running", "reason": "the experiment's verdict is final",
                "final": False, "look_at": None, "recorded_at": None, "evidence": None}
    return {"variant": name, "verdict": verdict.verdict, "reason": verdict.reason, "final": verdict.final,
            **_when(name, written, now), "evidence": dict(verdict.evidence) if verdict.final else None}


def _when(subject: str, written: Mapping[str, RecordedVerdict], now: datetime) -> dict[str, Any]:
    """When a final verdict was given (its look) and recorded."""
    v = written.get(subject)
    if v is None:
        return {"look_at": None, "recorded_at": None}
    return {"look_at": _iso(_utc(v.look_at)), "recorded_at": _iso(_utc(v.recorded_at or now))}


def _variant(variant: Variant, is_control: bool, counts: Counts, outcomes: OutcomeSums,
             mean: MeanSummary) -> dict[str, Any]:
    """One variant's exposures, conversion rate with its interval, and outcome value."""
    conversions, users = counts
    low, high = _rate_interval(conversions, users)
    return {
        "variant": variant.name,
        "control": is_control,
        "weight": variant.weight,
        "model": variant.model,
        "users": users,
        "conversions": conversions,
        "conversion_rate": conversions / users if users else None,
        "ci_low": low,
        "ci_high": high,
        "users_with_outcomes": outcomes.users,
        "outcome_total": outcomes.total,
        "outcome_mean": mean.mean,
        "outcome_sd": math.sqrt(mean.variance),
    }


def _comparison(c: VariantComparison, control: MeanSummary, variant: MeanSummary) -> dict[str, Any]:
    """One variation against the control: fixed-horizon, always-valid, Bayesian and Welch results."""
    fixed, seq = c.fixed, c.sequential
    welch = welch_t_test(control, variant, ALPHA)
    return {
        "variant": c.variant,
        "difference": fixed.difference,
        "ci_low": fixed.ci_low,
        "ci_high": fixed.ci_high,
        "lift": fixed.lift,
        "lift_ci_low": fixed.lift_ci_low,
        "lift_ci_high": fixed.lift_ci_high,
        "z": fixed.z,
        "p_value": fixed.p_value,
        "p_value_holm": c.p_value_holm,
        "sequential": {
            "p_value": seq.p_value,
            "p_value_holm": c.sequential_p_value_holm,
            "current_p_value": seq.current_p_value,
            **_intervals(seq),
        },
        "chance_to_beat_control": c.chance_to_beat_control,
        "enough_data": fixed.enough_data,
        "welch": {
            "difference": welch.difference,
            "ci_low": welch.ci_low,
            "ci_high": welch.ci_high,
            "t": welch.t,
            "df": welch.df,
            "p_value": welch.p_value,
            "enough_data": welch.enough_data,
        },
    }


def _guardrails(
    agg: Aggregates, names: Sequence[str], control: str, settings: Mapping[str, float]
) -> tuple[list[dict[str, Any]], list[GuardrailBreach]]:
    """Error rate, fallback rate and p95 latency per variant, and the variations' breaches.

    A guardrail protects users from a variation: a variation's breach stops that variation.
    The control's breach is shown (it is the status quo, not the change tested).
    """
    rows, stopping = [], []
    for name in names:
        check = check_variant(settings, name, agg.requests.get(name, RequestSums()))
        breaches = [GuardrailBreach(f"{name} {ENFORCED[b.guardrail][0]}", b.observed, b.threshold,
                                    ENFORCED[b.guardrail][1], variant=name) for b in check.breaches]
        if name != control:
            stopping += breaches
        rows.append({
            "variant": name,
            "requests": check.sums.requests,
            "errors": check.sums.errors,
            "fallbacks": check.sums.fallbacks,
            "error_rate": check.observed["max_error_rate"],
            "fallback_rate": check.observed["max_fallback_rate"],
            "p95_latency_ms": check.observed["max_p95_latency_ms"],
            "evaluated": check.evaluated,
            "breached": bool(breaches),
            "breaches": [b.describe() for b in breaches],
        })
    return rows, stopping


def _plan(control: Counts, plan: Plan, variations: int) -> SampleSize | None:
    """Users per variant the always-valid test needs to detect the plan's relative MDE on the control's
    observed rate (the plan's baseline before it has one), Bonferroni across variations."""
    conversions, users = control
    rate = conversions / users if users else 0.0
    baseline = rate if 0.0 < rate < 1.0 else plan.baseline_rate
    try:
        return sample_size_msprt(baseline, plan.mde, relative=True, tau2=plan.tau2, alpha=ALPHA / max(variations, 1),
                                 power=POWER)
    except ValueError:  # the MDE would push the rate past 100 %
        return None


def _traffic(agg: Aggregates, totals: Mapping[str, Counts], names: Sequence[str]) -> tuple[str | None, float | None]:
    """The variant with the fewest users (it decides when the plan is met) and its users per day."""
    if agg.first_exposure is None or agg.last_exposure is None:
        return None, None
    window = max((agg.last_exposure - agg.first_exposure).total_seconds(), MIN_TRAFFIC_WINDOW_SECONDS)
    slowest = min(names, key=lambda n: totals[n][1])
    return slowest, totals[slowest][1] * 86400 / window


def _power(power_plan: SampleSize | None, plan: Plan, totals: Mapping[str, Counts], slowest: str | None,
           per_day: float | None, variations: int) -> dict[str, Any]:
    """The always-valid test's plan and how long the smallest variant still needs at its current traffic."""
    users = totals[slowest][1] if slowest else 0
    required = power_plan.users_per_variant if power_plan else None
    fixed = (sample_size_cohen_h(power_plan.baseline_rate, plan.mde, relative=True, alpha=power_plan.alpha,
                                 power=POWER).users_per_variant if power_plan else None)
    return {
        "method": "msprt",
        "how": POWER_METHOD,
        "tau2": plan.tau2,
        "baseline_rate": power_plan.baseline_rate if power_plan else None,
        "mde_relative": plan.mde,
        "target_rate": power_plan.target_rate if power_plan else None,
        "alpha_per_comparison": ALPHA / max(variations, 1),
        "power": POWER,
        "required_users_per_variant": required,
        "fixed_horizon_users_per_variant": fixed,
        "users_per_variant": users,
        "users_per_day_per_variant": per_day,
        "days_remaining": days_remaining(required, users, per_day) if required and per_day is not None else None,
    }


def finite(value: Any) -> Any:
    """The same structure with NaN and infinities replaced by None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def _rate_interval(conversions: int, users: int) -> tuple[float | None, float | None]:
    """Wilson interval of one variant's rate (it stays inside [0, 1] even at 0 or all conversions)."""
    if users == 0:
        return None, None
    interval = binomtest(conversions, users).proportion_ci(confidence_level=1 - ALPHA, method="wilson")
    return float(interval.low), float(interval.high)


def _thresholds(settings: Mapping[str, float]) -> dict[str, float]:
    return {key: settings[key] for key in ("max_error_rate", "max_fallback_rate", "max_p95_latency_ms", "min_requests")}


def _utc(value: datetime) -> datetime:
    """MySQL's naive UTC times as aware ones."""
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
