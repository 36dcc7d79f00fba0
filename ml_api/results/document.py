"""The results document of an experiment: SQL aggregates run through ``experiment_stats``.

One function builds the statistics that the JSON endpoint returns, the HTML page draws and
the CLI prints, so the three always agree. It is recomputed from the durable record on
every read (no state kept between reads): the always-valid p-value is the running
minimum over the timeline's peeks, so reading it often or rarely gives the same answer.
"""

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from scipy.stats import binomtest

from assigner import Variant
from experiment_stats import (
    DEFAULT_SRM_THRESHOLD,
    DEFAULT_TAU2,
    GuardrailBreach,
    MeanSummary,
    SampleSize,
    SequentialTest,
    VariantComparison,
    compare_to_control,
    days_remaining,
    decide,
    msprt_two_proportions,
    sample_ratio_mismatch,
    sample_size_cohen_h,
    welch_t_test,
)
from ml_api.infra.database import Database
from ml_api.results.query import Aggregates, OutcomeSums, fetch_aggregates
from ml_api.rollout.guardrails import (
    ENFORCED,
    check_variant,
    effective_thresholds,
    stored_thresholds,
)
from ml_api.rollout.report import rollout_results
from ml_api.telemetry.request_stats import RequestSums

ALPHA = 0.05
POWER = 0.8
# Mixing variance of the always-valid test: (1 percentage point)^2, kept fixed for every read
# so the running minimum over the timeline stays one test (see experiment_stats.sequential).
TAU2 = DEFAULT_TAU2
# Planning needs a baseline rate; before the control has conversions, assume this one.
DEFAULT_BASELINE_RATE = 0.05
# Traffic per day is measured over at least this long, so a first minute is not extrapolated.
MIN_TRAFFIC_WINDOW_SECONDS = 3600
METRICS = {
    "conversion": {
        "type": "binary",
        "definition": "a user converted if they have at least one outcome with value > 0; "
                      "rate = converted users / exposed users",
        "decides": True,
    },
    "outcome_value": {
        "type": "numeric",
        "definition": "per-user sum of outcome values, 0 for exposed users without outcomes; Welch's t-test",
        "decides": False,
    },
}
Counts = tuple[int, int]  # (converted users, exposed users)


def experiment_results(db: Database, name: str) -> dict[str, Any]:
    """The whole document of GET /results (the report command prints the same): statistics, then
    the shadow and rollout sections. UnknownExperiment when there is none."""
    return build_results(db, name) | rollout_results(db, name)


def build_results(db: Database, name: str) -> dict[str, Any]:
    """The statistics of experiment ``name`` (UnknownExperiment when there is none)."""
    return results_document(fetch_aggregates(db, name))


def results_document(agg: Aggregates) -> dict[str, Any]:
    """Every statistic of the experiment, JSON-ready (NaN and infinities become None)."""
    stored, settings_error = stored_thresholds(agg.experiment.guardrails)
    settings = effective_thresholds(stored)
    control = agg.experiment.default_variant
    variants = agg.experiment.variants
    names = [v.name for v in variants]
    others = [n for n in names if n != control]
    timeline, totals, previous = _sequential_timeline(agg, control, others, TAU2)
    comparisons = compare_to_control(
        totals[control], {n: totals[n] for n in others}, alpha=ALPHA, tau2=TAU2, previous=previous
    )
    # Users first exposed under the current weights (all of them if the weights never changed).
    srm_users = agg.users_since_weights_changed or {n: totals[n][1] for n in names}
    srm_observed = [srm_users.get(n, 0) for n in names]
    srm = sample_ratio_mismatch(srm_observed, [v.weight for v in variants])
    guardrails, breaches = _guardrails(agg, names, control, settings)
    plan = _plan(totals[control], settings["mde"], len(others))
    slowest, per_day = _traffic(agg, totals, names)
    decision = decide(comparisons, plan=plan, srm=srm, guardrail_breaches=breaches,
                      users_per_day_per_variant=per_day, alpha=ALPHA)
    outcomes = {n: agg.outcomes.get(n, OutcomeSums()) for n in names}
    means = {n: MeanSummary.from_sums(totals[n][1], outcomes[n].total, outcomes[n].total_of_squares) for n in names}
    return finite({
        "experiment": agg.experiment.name,
        "status": agg.experiment.status,
        "generated_at": _iso(datetime.now(timezone.utc)),
        "control": control,
        "metrics": METRICS,
        "settings": {"alpha": ALPHA, "power": POWER, "tau2": TAU2, "srm_threshold": DEFAULT_SRM_THRESHOLD},
        "first_exposure": _iso(agg.first_exposure),
        "last_exposure": _iso(agg.last_exposure),
        "variants": [_variant(v, v.name == control, totals[v.name], outcomes[v.name], means[v.name]) for v in variants],
        "comparisons": [_comparison(c, means[control], means[c.variant]) for c in comparisons],
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
        "power": _power(plan, settings["mde"], totals[slowest][1] if slowest else 0, per_day),
        "timeline_bucket_seconds": agg.bucket_seconds,
        "timeline": timeline,
        "decision": {"action": decision.action, "reason": decision.reason, "variant": decision.variant},
    })


def _sequential_timeline(
    agg: Aggregates, control: str, others: Sequence[str], tau2: float
) -> tuple[list[dict[str, Any]], dict[str, Counts], dict[str, SequentialTest]]:
    """Cumulative counts and always-valid results at the end of every time bucket.

    Returns the timeline, the final (conversions, users) per variant and each variation's
    sequential result *before* the last bucket, which ``compare_to_control`` continues.
    """
    names = [control, *others]
    buckets = sorted({b for series in (agg.new_users, agg.new_conversions) for n in names for b in series.get(n, {})})
    users = dict.fromkeys(names, 0)
    converted = dict.fromkeys(names, 0)
    totals: dict[str, Counts] = {n: (0, 0) for n in names}
    state: dict[str, SequentialTest] = {}
    previous: dict[str, SequentialTest] = {}
    timeline = []
    for bucket in buckets:
        for n in names:
            users[n] += agg.new_users.get(n, {}).get(bucket, 0)
            converted[n] += agg.new_conversions.get(n, {}).get(bucket, 0)
            # Clocks of different hosts can put a conversion a moment before its exposure.
            totals[n] = (min(converted[n], users[n]), users[n])
        previous = dict(state)
        for n in others:
            last = state.get(n)
            state[n] = msprt_two_proportions(
                *totals[control], *totals[n], tau2=tau2, alpha=ALPHA,
                previous_p_value=last.p_value if last else 1.0,
                previous_ci=(last.ci_low, last.ci_high) if last else (-math.inf, math.inf),
            )
        timeline.append({
            "at": _iso(datetime.fromtimestamp(bucket + agg.bucket_seconds, timezone.utc)),
            "users": {n: totals[n][1] for n in names},
            "conversions": {n: totals[n][0] for n in names},
            "comparisons": {
                n: {"difference": s.difference, "ci_low": s.ci_low, "ci_high": s.ci_high, "p_value": s.p_value}
                for n, s in state.items()
            },
        })
    return timeline, totals, previous


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
            "ci_low": seq.ci_low,
            "ci_high": seq.ci_high,
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

    A guardrail protects users from a variation: only a variation's breach stops the
    experiment. The control's breach is shown (it is the status quo, not the change tested).
    """
    rows, stopping = [], []
    for name in names:
        check = check_variant(settings, name, agg.requests.get(name, RequestSums()))
        breaches = [GuardrailBreach(f"{name} {ENFORCED[b.guardrail][0]}", b.observed, b.threshold,
                                    ENFORCED[b.guardrail][1]) for b in check.breaches]
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


def _plan(control: Counts, mde: float, variations: int) -> SampleSize | None:
    """Users per variant to detect a relative ``mde`` on the control's rate (Bonferroni across variations)."""
    conversions, users = control
    rate = conversions / users if users else 0.0
    baseline = rate if 0.0 < rate < 1.0 else DEFAULT_BASELINE_RATE
    try:
        return sample_size_cohen_h(baseline, mde, relative=True, alpha=ALPHA / max(variations, 1), power=POWER)
    except ValueError:  # the MDE would push the rate past 100 %
        return None


def _traffic(agg: Aggregates, totals: Mapping[str, Counts], names: Sequence[str]) -> tuple[str | None, float | None]:
    """The variant with the fewest users (it decides when the plan is met) and its users per day."""
    if agg.first_exposure is None or agg.last_exposure is None:
        return None, None
    window = max((agg.last_exposure - agg.first_exposure).total_seconds(), MIN_TRAFFIC_WINDOW_SECONDS)
    slowest = min(names, key=lambda n: totals[n][1])
    return slowest, totals[slowest][1] * 86400 / window


def _power(plan: SampleSize | None, mde: float, users: int, per_day: float | None) -> dict[str, Any]:
    """The sample-size plan and how long the smallest variant still needs at its current traffic."""
    required = plan.users_per_variant if plan else None
    return {
        "baseline_rate": plan.baseline_rate if plan else None,
        "mde_relative": mde,
        "target_rate": plan.target_rate if plan else None,
        "alpha_per_comparison": plan.alpha if plan else None,
        "power": POWER,
        "required_users_per_variant": required,
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


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
