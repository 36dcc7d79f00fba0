"""Per-metric sums in SQL (capping, ratios, CUPED covariates) equal the same sums computed in Python from the rows."""

import random
import uuid
from datetime import datetime

import numpy as np
import pytest

from ml_api.experiments.covariates import record_covariates
from ml_api.experiments.metrics import parse_metrics
from ml_api.results.fold import fold
from ml_api.results.metric_sums import fetch_metric_sums
from ml_api.results.query import fetch_aggregates

T0 = datetime(2024, 5, 1, 12, 0)
VARIANTS = ("control", "variation")
DECLARATION = {
    "primary": {"name": "clicked", "type": "conversion", "source": "click", "covariate": "clicks_before"},
    "secondary": [
        {"name": "revenue", "type": "mean", "covariate": "revenue_before"},
        {"name": "revenue_capped", "type": "mean", "source": "revenue", "cap": {"value": 40.0}},
        {"name": "revenue_p90", "type": "mean", "source": "revenue", "cap": {"quantile": 0.9},
         "covariate": "revenue_before"},
        {"name": "refunds_p97", "type": "mean", "source": "refund", "cap": {"quantile": 0.97}},
        {"name": "revenue_per_order", "type": "ratio", "numerator": "revenue", "denominator": "orders"},
    ],
}




def post(recorder, experiment, user: str, variant: str, metric: str, value: float) -> None:
    recorder.record_outcome({"feedback_id": uuid.uuid4().hex, "experiment_id": experiment.id, "user_id": user,
                             "variant": variant, "request_id": None, "value": value, "metric": metric})


def build_record(db, recorder, experiment, seed: int = 3):
    """Users (some of them late to get a covariate), their outcomes on four feedback metrics, and the same
    per-user values kept in Python."""
    rng = random.Random(seed)
    users = {f"u{i}": VARIANTS[i % 2] for i in range(300)}
    before = {"clicks_before": {}, "revenue_before": {}}
    for user in list(users)[:200]:  # covariates first: these users are not exposed yet
        before["clicks_before"][user] = float(rng.randint(0, 5))
        before["revenue_before"][user] = round(rng.expovariate(1 / 20), 2)
    for name, values in before.items():
        assert record_covariates(db, experiment.id, name, list(values.items())) == []
    for user, variant in users.items():
        recorder.record_first(experiment, user, variant)
    late = record_covariates(db, experiment.id, "revenue_before", [("u250", 5.0), ("u251", 6.0)])
    assert late == ["u250", "u251"]  # exposed already: refused
    totals = {metric: {} for metric in ("click", "revenue", "orders", "refund")}
    for user, variant in users.items():
        if rng.random() < 0.6:
            for _ in range(rng.randint(1, 3)):
                metric, value = rng.choice([("click", float(rng.random() < 0.5)), ("revenue", rng.expovariate(1 / 25)),
                                            ("orders", 1.0), ("refund", -rng.expovariate(1 / 5)),
                                            ("refund", rng.uniform(-3, 8))])
                post(recorder, experiment, user, variant, metric, value)
                totals[metric][user] = totals[metric].get(user, 0.0) + value
    return users, totals, before


def per_user(users, values, variant, default=0.0):
    return np.array([values.get(u, default) for u, v in users.items() if v == variant])


def test_sql_sums_equal_python_sums_for_every_metric_type(db, recorder, experiment):
    users, totals, before = build_record(db, recorder, experiment)
    agg = fetch_aggregates(db, experiment.name)
    sums = agg.metric_sums
    exposed = len(users)

    def pooled_quantile(metric, q):
        values = np.array([totals[metric].get(u, 0.0) for u in users])
        return float(np.quantile(values, q, method="inverted_cdf"))

    caps = {"revenue_capped": 40.0, "revenue_p90": pooled_quantile("revenue", 0.9),
            "refunds_p97": pooled_quantile("refund", 0.97)}
    assert sums["revenue_p90"].cap == pytest.approx(caps["revenue_p90"])
    assert sums["refunds_p97"].cap == pytest.approx(caps["refunds_p97"])
    assert sums["revenue_capped"].cap == 40.0
    for variant in VARIANTS:
        n = sum(1 for v in users.values() if v == variant)
        clicked = (per_user(users, totals["click"], variant) > 0).astype(float)
        s = sums["clicked"].variants[variant]
        assert (s.n, s.sum_y, s.sum_y2) == (n, pytest.approx(clicked.sum()), pytest.approx(clicked.sum()))
        for name, source in (("revenue", "revenue"), ("revenue_capped", "revenue"), ("revenue_p90", "revenue"),
                             ("refunds_p97", "refund")):
            y = per_user(users, totals[source], variant)
            if name in caps:
                y = np.minimum(y, caps[name])
            s = sums[name].variants[variant]
            assert s.n == n
            assert s.sum_y == pytest.approx(y.sum()) and s.sum_y2 == pytest.approx((y * y).sum())
        y, x = per_user(users, totals["revenue"], variant), per_user(users, totals["orders"], variant)
        s = sums["revenue_per_order"].variants[variant]
        assert (s.sum_y, s.sum_y2) == (pytest.approx(y.sum()), pytest.approx((y * y).sum()))
        assert (s.sum_x, s.sum_x2, s.sum_xy) == (pytest.approx(x.sum()), pytest.approx((x * x).sum()),
                                                 pytest.approx((x * y).sum()))
        for name, y in (("clicked", clicked), ("revenue", per_user(users, totals["revenue"], variant)),
                        ("revenue_p90", np.minimum(per_user(users, totals["revenue"], variant), caps["revenue_p90"]))):
            covariate = sums[name].metric.covariate
            x = per_user(users, before[covariate], variant)  # users without a value (the late ones too): 0
            c = sums[name].cuped[variant]
            assert (c.n, c.sum_y) == (n, pytest.approx(y.sum()))
            assert (c.sum_x, c.sum_x2, c.sum_xy) == (pytest.approx(x.sum()), pytest.approx((x * x).sum()),
                                                     pytest.approx((x * y).sum()))
            assert c.users_with_x == sum(1 for u, v in users.items() if v == variant and u in before[covariate])
    assert exposed == sum(s.n for s in sums["revenue"].variants.values())


@pytest.mark.parametrize("quantile", [0.5, 0.75, 0.99])
def test_a_quantile_cap_is_numpys_inverted_cdf_over_every_exposed_user(db, recorder, repo, make_experiment, quantile):
    """Mostly users without outcomes (zeros), a few negative and positive sums: the cap lands on each kind."""
    metrics = parse_metrics({"primary": {"name": "m", "type": "mean", "mde": 1, "cap": {"quantile": quantile}}})
    experiment = repo.get(make_experiment())
    values = {}
    for i in range(101):
        user = f"q{i}"
        recorder.record_first(experiment, user, VARIANTS[i % 2])
        if i % 4 == 0:
            values[user] = float(i - 40)
            post(recorder, experiment, user, VARIANTS[i % 2], "m", values[user])
    fold(db, experiment.id)  # the sums read what was folded (fetch_aggregates folds first)
    with db.connection() as conn:
        cursor = conn.cursor()
        sums = fetch_metric_sums(cursor, experiment.id, metrics, {"control": 51, "variation": 50})
    pooled = np.array([values.get(f"q{i}", 0.0) for i in range(101)])
    assert sums["m"].cap == np.quantile(pooled, quantile, method="inverted_cdf")


def test_the_default_metrics_read_the_outcome_feedback_metric_only(db, recorder, repo, make_experiment):
    experiment = repo.get(make_experiment())
    recorder.record_first(experiment, "a", "control")
    post(recorder, experiment, "a", "control", "outcome", 3.0)
    post(recorder, experiment, "a", "control", "revenue", 100.0)  # another metric: not in the default ones
    agg = fetch_aggregates(db, experiment.name)
    assert agg.outcomes["control"].total == 3.0
    assert agg.metric_sums["outcome"].variants["control"].sum_y == 1.0
    assert agg.metric_sums["outcome_value"].variants["control"].sum_y == 3.0
