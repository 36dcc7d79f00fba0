"""Through gunicorn: the churn pipelines answer named features, refuse bad ones naming the column, and a batch
answers as its single requests do."""

import pytest

from tests.customers import customers

ROWS = 1000

CUSTOMER = customers(1)[0]
# Every bad named input of the issue, each with the words its 400 must say.
BAD_INPUTS = {
    "missing column": ({k: v for k, v in CUSTOMER.items() if k != "tenure"}, ['missing the column "tenure"']),
    "unknown column": ({**CUSTOMER, "Colour": "red"}, ['the column "Colour"']),
    "string where numeric": ({**CUSTOMER, "MonthlyCharges": "a lot"}, ['features["MonthlyCharges"] must be a number']),
    "number where categorical": ({**CUSTOMER, "Contract": 12}, ['features["Contract"] must be a string']),
    "list to a named model": ([1.0, 85.0, 85.0, 0.0], ["takes named features", "tenure", "MonthlyCharges",
                                                       "Contract", "PaymentMethod"]),
}


def test_every_bad_named_input_is_a_400_naming_the_column_alone_and_in_a_batch(gateway, make_experiment):
    churn = make_experiment((50, 50), models=("churn_logreg", "churn_boost"))
    good = gateway.post("/predict", {"user_id": "named-ok", "experiment": churn, "features": CUSTOMER})
    assert good.status_code == 200, good.text
    for case, (features, words) in BAD_INPUTS.items():
        response = gateway.post("/predict", {"user_id": "named-bad", "experiment": churn, "features": features})
        assert response.status_code == 400 and response.json()["error"] == "invalid_request", (case, response.text)
        assert all(word in response.json()["detail"] for word in words), (case, response.json())
    items = [{"user_id": f"named-{n}", "experiment": churn, "features": features}
             for n, (features, _) in enumerate(BAD_INPUTS.values())]
    answers = gateway.post("/predict/batch", {"items": [*items, {"user_id": "named-ok", "experiment": churn,
                                                                  "features": CUSTOMER}]}).json()
    assert answers["errors"] == len(BAD_INPUTS) and answers["results"][-1]["variant"] == good.json()["variant"]
    for (case, (_, words)), answer in zip(BAD_INPUTS.items(), answers["results"]):
        assert answer["status"] == 400 and all(word in answer["detail"] for word in words), (case, answer)
    users = {v["name"]: v["users"] for v in gateway.get(f"/experiments/{churn}").json()["variants"]}
    assert sum(users.values()) == 1, "a refused request counts nobody"


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
