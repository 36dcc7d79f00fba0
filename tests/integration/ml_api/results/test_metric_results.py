"""The metrics section of the results on real MySQL: every declared metric, CUPED, capping, guardrail metrics
and the decision on a mean primary metric. Expected values are computed here from the rows that were inserted."""

import uuid
from datetime import datetime, timedelta

import numpy as np
import pytest

from ml_api.experiments.covariates import record_covariates

START = datetime(2024, 3, 1)
DECLARATION = {
    "primary": {"name": "clicked", "type": "conversion", "source": "click"},
    "secondary": [
        {"name": "revenue", "type": "mean", "cap": {"quantile": 0.99}, "covariate": "revenue_before"},
        {"name": "revenue_per_order", "type": "ratio", "numerator": "revenue", "denominator": "orders"},
    ],
    "guardrails": [{"name": "latency_ms", "type": "mean", "direction": "lower", "margin": 5}],
}


def insert(db, experiment_id: int, exposures: list[tuple[str, str]], outcomes: list[tuple[str, str, str, float]]):
    """Exposures (user, variant) and outcomes (user, variant, metric, value), in multi-row statements."""
    with db.transaction() as conn:
        cursor = conn.cursor()
        cursor.executemany("INSERT INTO assignments (experiment_id, user_id, variant, assigned_at)"
                           " VALUES (%s, %s, %s, %s)",
                           [(experiment_id, u, v, START + timedelta(seconds=i)) for i, (u, v) in enumerate(exposures)])
        cursor.executemany(
            "INSERT INTO outcomes (feedback_id, experiment_id, user_id, variant, value, recorded_at, metric)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [(uuid.uuid4().hex, experiment_id, u, v, value, START + timedelta(hours=1), metric)
             for u, v, metric, value in outcomes])


def results(client, name: str) -> dict:
    answer = client.get(f"/experiments/{name}/results")
    assert answer.status_code == 200, answer.text
    return answer.json


def test_every_metric_is_reported_and_a_failed_guardrail_metric_stops_the_variation(client, db, repo, make_experiment):
    name = make_experiment(metrics=DECLARATION)
    experiment = repo.get(name)
    rng = np.random.default_rng(11)
    users = [(f"u{i}", ("control", "variation")[i % 2]) for i in range(4000)]
    before = rng.gamma(2.0, 10.0, len(users))
    assert record_covariates(db, experiment.id, "revenue_before",
                             [(u, float(x)) for (u, _), x in zip(users, before)]) == []
    outcomes, revenue = [], {}
    for (user, variant), x in zip(users, before):
        revenue[user] = max(0.0, x + rng.normal(0, 6)) + (1.0 if variant == "variation" else 0.0)
        outcomes += [(user, variant, "revenue", revenue[user]), (user, variant, "orders", float(rng.integers(1, 4))),
                     (user, variant, "latency_ms", rng.normal(100 if variant == "control" else 160, 10))]
        if rng.random() < 0.2:
            outcomes.append((user, variant, "click", 1.0))
    insert(db, experiment.id, users, outcomes)

    document = results(client, name)
    metrics = {m["name"]: m for m in document["metrics"]}
    assert document["primary_metric"] == "clicked"
    assert list(metrics) == ["clicked", "revenue", "revenue_per_order", "latency_ms"]
    for metric in metrics.values():
        (comparison,) = metric["comparisons"]
        assert comparison["ci_low"] < comparison["difference"] < comparison["ci_high"]
        assert comparison["sequential"]["ci_low"] <= comparison["ci_low"]  # always-valid: wider
        assert comparison["sequential"]["ci_high"] >= comparison["ci_high"]
    pooled = np.array([revenue[u] for u, _ in users])
    assert metrics["revenue"]["cap_applied"] == pytest.approx(np.quantile(pooled, 0.99, method="inverted_cdf"))
    cuped = metrics["revenue"]["comparisons"][0]["cuped"]
    rho = np.corrcoef(before, np.minimum(pooled, metrics["revenue"]["cap_applied"]))[0, 1]
    assert cuped["variance_reduction"] == pytest.approx(rho ** 2, abs=0.05)
    assert cuped["ci_high"] - cuped["ci_low"] < metrics["revenue"]["comparisons"][0]["ci_high"] - \
        metrics["revenue"]["comparisons"][0]["ci_low"]
    guardrail = metrics["latency_ms"]["comparisons"][0]["non_inferiority"]
    assert guardrail["status"] == "failed" and guardrail["margin"] == 5
    (verdict,) = document["verdicts"]
    assert verdict["verdict"] == "stop" and "latency_ms" in verdict["reason"], verdict


def test_a_mean_primary_metric_decides_with_its_own_always_valid_test(client, db, repo, make_experiment):
    name = make_experiment(metrics={"primary": {"name": "revenue", "type": "mean", "mde": 1.0}})
    experiment = repo.get(name)
    rng = np.random.default_rng(5)
    users = [(f"m{i}", ("control", "variation")[i % 2]) for i in range(3000)]
    insert(db, experiment.id, users,
           [(u, v, "revenue", float(rng.normal(20 if v == "control" else 23, 5))) for u, v in users])
    document = results(client, name)
    assert document["primary_metric"] == "revenue"
    assert document["decision"]["action"] == "ship_variation", document["decision"]
    assert document["decision"]["reason"].startswith("ship variation: mean")
    comparison = document["metrics"][0]["comparisons"][0]
    assert comparison["sequential"]["ci_low"] > 0
    assert document["metrics"][0]["tau2"] == 1.0 and document["metrics"][0]["tau2_source"] == "mde"


def test_feedback_for_an_undeclared_metric_is_refused_with_the_declared_ones(client, make_experiment):
    name = make_experiment(metrics=DECLARATION)
    answer = client.post("/feedback", json={"user_id": "x", "experiment": name, "outcome": 1, "metric": "refunds"})
    assert answer.status_code == 400
    assert "click, latency_ms, orders, revenue" in answer.json["detail"]
    answer = client.post("/feedback", json={"user_id": "x", "experiment": name, "outcome": 1})
    assert answer.status_code == 400 and "no metric 'outcome'" in answer.json["detail"]
