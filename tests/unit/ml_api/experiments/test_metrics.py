"""Metric declarations: what is accepted, what is refused and why, and the default set."""

import pytest

from ml_api.errors import InvalidDefinition
from ml_api.experiments.metrics import DEFAULT_METRICS, Cap, check_primary_kept, from_json, parse_metrics

DECLARED = {
    "primary": {"name": "converted", "type": "conversion", "source": "outcome"},
    "secondary": [
        {"name": "revenue", "type": "mean", "cap": {"quantile": 0.99}, "covariate": "revenue_before"},
        {"name": "revenue_per_order", "type": "ratio", "numerator": "revenue", "denominator": "orders"},
    ],
    "guardrails": [{"name": "latency_ms", "type": "mean", "direction": "lower", "margin": 20, "cap": {"value": 5000}}],
}


def test_a_declaration_round_trips_and_names_what_feedback_and_covariates_accept():
    metrics = parse_metrics(DECLARED)
    assert [m.name for m in metrics.metrics] == ["converted", "revenue", "revenue_per_order", "latency_ms"]
    assert metrics.primary.role == "primary" and metrics.by_name["latency_ms"].role == "guardrail"
    assert metrics.feedback_names == ["latency_ms", "orders", "outcome", "revenue"]
    assert metrics.covariates == ["revenue_before"]
    assert metrics.by_name["revenue"].cap == Cap(quantile=0.99)
    assert not metrics.by_name["latency_ms"].higher_is_better
    assert parse_metrics(metrics.as_dict()) == metrics


def test_the_default_set_is_the_outcome_conversion_and_its_mean():
    assert from_json(None) is DEFAULT_METRICS and not DEFAULT_METRICS.declared
    assert [(m.name, m.type, m.role) for m in DEFAULT_METRICS.metrics] == [
        ("outcome", "conversion", "primary"), ("outcome_value", "mean", "secondary")]
    assert DEFAULT_METRICS.feedback_names == ["outcome"]


@pytest.mark.parametrize("change, message", [
    ({"primary": None}, "each primary metric must be an object"),
    ({"primary": {"name": "x", "type": "median"}}, "type must be one of"),
    ({"primary": {"name": "x y", "type": "conversion"}}, "metric name must be"),
    ({"primary": {"name": "r", "type": "mean"}}, "needs mde"),
    ({"primary": {"name": "r", "type": "ratio", "numerator": "a", "mde": 1}}, "needs numerator and denominator"),
    ({"primary": {"name": "r", "type": "ratio", "numerator": "a", "denominator": "a", "mde": 1}}, "must differ"),
    ({"primary": {"name": "r", "type": "ratio", "numerator": "a", "denominator": "b", "mde": 1, "cap": {"value": 1}}},
     "unknown or unsupported key(s) ['cap']"),
    ({"primary": {"name": "c", "type": "conversion", "cap": {"value": 1}}}, "unknown or unsupported key(s) ['cap']"),
    ({"primary": {"name": "c", "type": "conversion", "margin": 1}}, "unknown or unsupported key(s) ['margin']"),
    ({"primary": {"name": "c", "type": "conversion", "direction": "up"}}, "direction must be"),
    ({"secondary": [{"name": "m", "type": "mean", "cap": {"quantile": 1.0}}]}, "cap.quantile must be between 0 and 1"),
    ({"secondary": [{"name": "m", "type": "mean", "cap": {"value": 1, "quantile": 0.5}}]}, "cap must be"),
    ({"secondary": [{"name": "m", "type": "mean", "cap": {"value": float("nan")}}]}, "cap.value must be a finite"),
    ({"secondary": [{"name": "converted", "type": "mean"}]}, "metric names must be unique"),
    ({"secondary": {"name": "m"}}, "metrics.secondary must be a list"),
    ({"guardrails": [{"name": "g", "type": "mean"}]}, "needs a margin"),
    ({"guardrails": [{"name": "g", "type": "mean", "margin": 0}]}, "margin must be above 0"),
    ({"extra": []}, "metrics must be an object"),
])
def test_refusals_say_what_was_wrong(change, message):
    raw = {"primary": {"name": "converted", "type": "conversion"}} | change
    with pytest.raises(InvalidDefinition, match=None) as refused:
        parse_metrics(raw)
    assert message in str(refused.value)


def test_once_started_the_primary_metric_is_fixed_but_the_others_may_change():
    before = parse_metrics(DECLARED)
    fewer = parse_metrics(DECLARED | {"secondary": []})
    check_primary_kept(before, fewer, started=True)
    other = parse_metrics(DECLARED | {"primary": {"name": "converted", "type": "conversion", "source": "click"}})
    check_primary_kept(before, other, started=False)
    with pytest.raises(InvalidDefinition, match="primary metric is fixed"):
        check_primary_kept(before, other, started=True)
