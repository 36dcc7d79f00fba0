"""POST /predict/batch through Flask (real Redis and MySQL): one result or one error per item, in order."""

import pytest

from tests.customers import customers
from tests.integration.ml_api.web.test_api import assert_error

IRIS = [5.1, 3.5, 1.4, 0.2]


def batch(client, items, **kwargs):
    return client.post("/predict/batch", json={"items": items}, **kwargs)


def test_a_bad_item_is_one_error_among_the_results(client, make_experiment):
    iris = make_experiment()
    churn = make_experiment(models=("churn_logreg", "churn_boost"))
    items = [
        {"user_id": "b-1", "experiment": iris, "features": IRIS},
        {"user_id": "b-2", "experiment": churn, "features": customers(1)[0]},
        {"user_id": "b-3", "experiment": churn, "features": IRIS},
        {"user_id": "b-4", "experiment": "no-such-experiment", "features": IRIS},
        "not an object",
        {"experiment": iris, "features": IRIS},
    ]
    body = batch(client, items).get_json()
    results = body["results"]
    assert (body["count"], body["errors"]) == (6, 4)
    assert results[0]["prediction"] == "setosa" and results[1]["prediction"] in {"Yes", "No"}
    assert results[2]["status"] == 400 and "takes named features" in results[2]["detail"]
    assert results[3]["status"] == 404 and results[3]["error"] == "unknown_experiment"
    assert results[4]["status"] == 400 and "items[4] must be an object" in results[4]["detail"]
    assert results[5]["status"] == 400 and "user_id is required" in results[5]["detail"]


def test_a_user_sent_twice_in_a_batch_keeps_one_variant(client, make_experiment):
    experiment = make_experiment()
    items = [{"user_id": f"twice-{n % 20}", "experiment": experiment, "features": IRIS} for n in range(40)]
    results = batch(client, items).get_json()["results"]
    for first, second in zip(results[:20], results[20:]):
        assert first["variant"] == second["variant"]
    users = sum(v["users"] for v in client.get(f"/experiments/{experiment}").get_json()["variants"])
    assert users == 20


@pytest.mark.parametrize("body,words", [
    ({}, ["items is required"]),
    ({"items": []}, ["items is required"]),
    ({"items": {"user_id": "u"}}, ["non-empty list"]),
])
def test_a_batch_without_items_is_a_400(client, body, words):
    assert_error(client.post("/predict/batch", json=body), 400, *words)


def test_a_batch_over_max_batch_rows_is_refused(make_app):
    client = make_app(MAX_BATCH_ROWS="3").test_client()
    items = [{"user_id": f"u-{n}", "features": IRIS} for n in range(4)]
    assert_error(batch(client, items), 400, "at most 3 requests (MAX_BATCH_ROWS)")


def test_a_batch_may_be_larger_than_one_request_but_not_than_its_own_limit(make_app, make_experiment):
    experiment = make_experiment()
    client = make_app(MAX_BODY_BYTES="2000", MAX_BATCH_BODY_BYTES="20000").test_client()
    items = [{"user_id": f"big-{n}", "experiment": experiment, "features": IRIS} for n in range(100)]
    assert batch(client, items[:50]).status_code == 200, "about 4 KB: over MAX_BODY_BYTES, within the batch limit"
    assert batch(client, items * 3).status_code == 413
