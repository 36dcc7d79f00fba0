"""Every declared metric of an experiment compared with the control: the ``metrics`` section of the results.

Per metric and variation: each variant's value, the fixed-horizon difference with its
interval and p-value (``experiment_stats.compare_metric``: proportions, Welch, or the delta
method for a ratio), the always-valid interval at this look (``sequential_difference``),
with a covariate the CUPED-adjusted estimate, its intervals and the variance it removed,
and for a guardrail metric the one-sided always-valid non-inferiority test against its
margin. The always-valid test of a metric needs tau2 fixed in advance: the metric's
``mde`` squared, a conversion's plan tau2, a guardrail's margin squared; a secondary
numeric metric without ``mde`` borrows the plan's relative MDE on the control's value at
this look (``tau2_source`` says which), which is fine for reading, and it decides nothing.

Only the primary metric decides (``document.evaluate`` feeds ``primary_moments`` to the
monitor); failed guardrail tests stop their variation through ``guardrail_tests``.
"""

import math
from collections.abc import Mapping, Sequence
from typing import Any

from experiment_stats import (
    GuardrailTest,
    MetricComparison,
    Moments,
    compare_cuped,
    compare_metric,
    non_inferiority,
    sequential_difference,
    tau2_for_numeric_mde,
)
from ml_api.experiments.metrics import MetricSpec
from ml_api.experiments.plans import ALPHA, Plan
from ml_api.results.metric_sums import MetricSums, VariantSums


def moments(sums: VariantSums) -> Moments:
    """The library's sufficient statistics of one variant."""
    return Moments(sums.n, sums.sum_y, sums.sum_y2, sums.sum_x, sums.sum_x2, sums.sum_xy)


def primary_moments(sums: MetricSums) -> dict[str, Moments]:
    """What the decision looks at for a mean or ratio primary metric: with its covariate for a CUPED mean."""
    chosen = sums.cuped if sums.cuped is not None and sums.metric.type == "mean" else sums.variants
    return {variant: moments(s) for variant, s in chosen.items()}


def primary_tau2(metric: MetricSpec, plan: Plan) -> float:
    """The primary metric's tau2: its declared ``mde`` squared, else (a conversion) the plan's."""
    return tau2_for_numeric_mde(metric.mde) if metric.mde is not None else plan.tau2


def metric_results(all_sums: Mapping[str, MetricSums], control: str, others: Sequence[str],
                   plan: Plan) -> tuple[list[dict[str, Any]], list[GuardrailTest]]:
    """The ``metrics`` section (primary first) and the guardrail metrics' non-inferiority tests."""
    sections, tests = [], []
    for sums in all_sums.values():
        section = _section(sums, control, others, plan)
        sections.append(section)
        spec = sums.metric
        tests += [GuardrailTest(spec.name, c["variant"], c["non_inferiority_test"])
                  for c in section["comparisons"] if c.get("non_inferiority_test") is not None]
    for section in sections:
        for comparison in section["comparisons"]:
            test = comparison.pop("non_inferiority_test", None)
            if test is not None:
                comparison["non_inferiority"] = {"status": test.status, "margin": test.margin,
                                                 "bound": test.bound, "p_value": test.p_value,
                                                 "bad_bound": test.bad_bound, "bad_p_value": test.bad_p_value,
                                                 "tau2": test.tau2, "enough_data": test.enough_data}
    return sections, tests


def _section(sums: MetricSums, control: str, others: Sequence[str], plan: Plan) -> dict[str, Any]:
    spec = sums.metric
    base = moments(sums.variants[control])
    control_value = _value(spec, base)
    tau2, source = _tau2(spec, plan, control_value)
    return spec.as_dict() | {
        "role": spec.role,
        "cap_applied": sums.cap,
        "tau2": tau2,
        "tau2_source": source,
        "variants": [_variant(spec, name, s) for name, s in sums.variants.items()],
        "comparisons": [_comparison(sums, control, name, tau2) for name in others],
    }


def _tau2(spec: MetricSpec, plan: Plan, control_value: float) -> tuple[float | None, str]:
    """tau2 of a metric's always-valid test and where it came from."""
    if spec.mde is not None:
        return tau2_for_numeric_mde(spec.mde), "mde"
    if spec.type == "conversion":
        return plan.tau2, "plan"
    if spec.margin is not None:
        return spec.margin ** 2, "margin"
    if math.isfinite(control_value) and control_value != 0:
        return (plan.mde * control_value) ** 2, "plan mde x control value at this look"
    return None, "none yet: declare mde"


def _value(spec: MetricSpec, m: Moments) -> float:
    """Rate, mean per user or ratio of sums (NaN without data)."""
    denominator = m.sum_x if spec.type == "ratio" else m.n
    return m.sum_y / denominator if denominator else math.nan


def _variant(spec: MetricSpec, name: str, s: VariantSums) -> dict[str, Any]:
    m = moments(s)
    row: dict[str, Any] = {"variant": name, "users": s.n, "users_with_outcomes": s.users_with_y,
                           "value": _value(spec, m)}
    if spec.type == "mean":
        row["sd"] = math.sqrt(max(s.sum_y2 - s.sum_y ** 2 / s.n, 0.0) / (s.n - 1)) if s.n > 1 else None
    if spec.type == "ratio":
        row |= {"numerator_total": s.sum_y, "denominator_total": s.sum_x, "users_with_denominator": s.users_with_x}
    return row


def _comparison(sums: MetricSums, control: str, name: str, tau2: float | None) -> dict[str, Any]:
    """One variation against the control on this metric."""
    spec = sums.metric
    control_moments, variant_moments = moments(sums.variants[control]), moments(sums.variants[name])
    fixed = compare_metric(spec.type, control_moments, variant_moments, ALPHA)  # type: ignore[arg-type]
    row = {"variant": name, **_fixed(fixed), "sequential": _sequential(fixed, tau2)}
    decisive = fixed
    if sums.cuped is not None:
        cuped = compare_cuped(moments(sums.cuped[control]), moments(sums.cuped[name]), ALPHA)
        decisive = cuped.adjusted
        row["cuped"] = {**_fixed(cuped.adjusted), "sequential": _sequential(cuped.adjusted, tau2),
                        "theta": cuped.theta, "variance_reduction": cuped.variance_reduction,
                        "users_with_covariate": {control: sums.cuped[control].users_with_x,
                                                 name: sums.cuped[name].users_with_x}}
    if spec.role == "guardrail":
        row["non_inferiority_test"] = non_inferiority(
            decisive.difference, decisive.variance, margin=spec.margin, higher_is_better=spec.higher_is_better,
            tau2=tau2, alpha=ALPHA)
    return row


def _fixed(c: MetricComparison) -> dict[str, Any]:
    return {"control_value": c.control_value, "variant_value": c.variant_value, "difference": c.difference,
            "std_error": c.std_error, "ci_low": c.ci_low, "ci_high": c.ci_high, "p_value": c.p_value,
            "relative_lift": c.relative_lift, "enough_data": c.enough_data}


def _sequential(c: MetricComparison, tau2: float | None) -> dict[str, Any] | None:
    """The always-valid p-value and interval at this look (None without a tau2)."""
    if tau2 is None:
        return None
    s = sequential_difference(c.difference, c.variance, tau2, ALPHA)
    return {"p_value": s.p_value, "ci_low": s.ci_low, "ci_high": s.ci_high, "enough_data": s.enough_data}
