"""Through gunicorn: the churn pipelines answer named features, and a batch answers as its single requests do."""

import pytest

from tests.customers import customers

ROWS = 1000


def test_a_batch_of_1000_answers_as_1000_single_requests(gateway, make_experiment):
    # Two experiments with one salt assign every user alike: one is asked item by item, the other in one batch.
    options = {"models": ("churn_logreg", "churn_boost"), "salt": "batch-vs-single", "traffic_allocation": 0.8}
    single, batched = make_experiment((30, 70), **options), make_experiment((30, 70), **options)
    people = customers(ROWS)
    singles = []
    for n, features in enumerate(people):
        response = gateway.post("/predict", {"user_id": f"p-{n}", "experiment": single, "features": features})
        assert response.status_code == 200, response.text
        singles.append(response.json())
    items = [{"user_id": f"p-{n}", "experiment": batched, "features": f} for n, f in enumerate(people)]
    response = gateway.post("/predict/batch", {"items": items})
    assert response.status_code == 200, response.text[:500]
    answers = response.json()["results"]
    assert len(answers) == ROWS and response.json()["errors"] == 0
    for one, many in zip(singles, answers):
        assert (many["variant"], many["in_experiment"], many["model"], many["prediction"]) == \
               (one["variant"], one["in_experiment"], one["model"], one["prediction"])
        # One call per model multiplies matrices of many rows: equal up to the last bits.
        assert many["probabilities"] == pytest.approx(one["probabilities"], rel=1e-12, abs=1e-15)
    assert {a["model"]["name"] for a in answers} == {"churn_logreg", "churn_boost"}
    counts = {name: {v["name"]: v["users"] for v in gateway.get(f"/experiments/{name}").json()["variants"]}
              for name in (single, batched)}
    assert counts[single] == counts[batched] and 0 < sum(counts[single].values()) < ROWS
    again = gateway.post("/predict/batch", {"items": items[:50]}).json()["results"]
    assert [a["variant"] for a in again] == [a["variant"] for a in answers[:50]], "sticky across batches"
