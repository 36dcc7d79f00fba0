"""The HTTP API through Flask's test client, on real Redis and MySQL.

Every bad input gets a 4xx JSON ``{error, detail}`` that says what was wrong.
"""

import json

import pytest

IRIS = [5.1, 3.5, 1.4, 0.2]


@pytest.fixture
def experiment(make_experiment):
    return make_experiment()


def predict(client, body, **kwargs):
    return client.post("/predict", json=body, **kwargs)


def assert_error(response, status, *words):
    assert response.status_code == status, response.get_json()
    body = response.get_json()
    assert set(body) == {"error", "detail"}
    for word in words:
        assert word in body["detail"], body


def test_predict_answers_with_variant_model_and_prediction(client, experiment):
    response = predict(client, {"user_id": "u-1", "features": IRIS, "experiment": experiment})
    assert response.status_code == 200
    body = response.get_json()
    assert body["experiment"] == experiment and body["in_experiment"] is True
    assert body["variant"] in {"control", "variation"}
    assert body["model"] == {"name": "logreg", "version": "v1"}
    assert body["prediction"] == "setosa"
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-9
    assert len(body["request_id"]) == 32 and body["latency_ms"] > 0


def test_default_experiment_is_used_when_none_is_named(client, repo, config):
    from ml_api.cli.main import DEMO_VARIANTS

    if config.default_experiment not in repo.all():
        repo.create(config.default_experiment, DEMO_VARIANTS, actor="test", status="running")
    assert predict(client, {"user_id": "u-1", "features": IRIS}).get_json()["experiment"] == config.default_experiment


@pytest.mark.parametrize("user_id,words", [
    (None, ["user_id is required", "sticky"]),
    ("", ["user_id must not be empty"]),
    ("   ", ["user_id must not be empty"]),
    (42, ["user_id must be a string"]),
    (["u"], ["user_id must be a string"]),
    ("u" * 129, ["at most 128"]),
    ("\ud800", ["not valid Unicode"]),
])
def test_bad_user_id(client, experiment, user_id, words):
    body = {"features": IRIS, "experiment": experiment}
    if user_id is not None:
        body["user_id"] = user_id
    assert_error(predict(client, body), 400, *words)


def test_features_without_user_id_explains_stickiness(client, experiment):
    assert_error(predict(client, {"features": IRIS, "experiment": experiment}), 400, "sticky", "user id")


@pytest.mark.parametrize("features,words", [
    (None, ["features is required"]),
    ([], ["non-empty list"]),
    ("1,2,3,4", ["non-empty list"]),
    ([1, 2, 3], ["must hold 4 numbers", "got 3"]),
    ([1, 2, 3, 4, 5], ["must hold 4 numbers", "got 5"]),
    ([1, "2", 3, 4], ["features[1] must be a number"]),
    ([1, True, 3, 4], ["features[1] must be a number"]),
    ([1, None, 3, 4], ["features[1] must be a number"]),
])
def test_bad_features(client, experiment, features, words):
    body = {"user_id": "u", "experiment": experiment}
    if features is not None:
        body["features"] = features
    assert_error(predict(client, body), 400, *words)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e39", "1" + "0" * 400])
def test_non_finite_features(client, experiment, literal):
    raw = f'{{"user_id": "u", "experiment": "{experiment}", "features": [1, {literal}, 3, 4]}}'
    response = client.post("/predict", data=raw, content_type="application/json")
    assert_error(response, 400, "features[1] must be finite")


def test_unknown_experiment(client):
    assert_error(predict(client, {"user_id": "u", "features": IRIS, "experiment": "no-such"}), 404, "no-such")


@pytest.mark.parametrize("status", ["paused", "stopped"])
def test_paused_or_stopped_serves_the_default_and_says_so(client, repo, make_experiment, status):
    name = make_experiment((0, 100))
    repo.set_status(name, status, actor="test")
    response = predict(client, {"user_id": "u-1", "features": IRIS, "experiment": name})
    body = response.get_json()
    assert response.status_code == 200
    assert (body["variant"], body["in_experiment"], body["experiment_status"]) == ("control", False, status)
    assert status in body["note"]


def test_body_over_the_size_limit(client, config):
    big = {"user_id": "u", "features": IRIS, "padding": "x" * config.max_body_bytes}
    assert_error(predict(client, big), 413, "MAX_BODY_BYTES")


def test_body_that_is_not_json(client):
    response = client.post("/predict", data="{user_id: u", content_type="application/json")
    assert_error(response, 400, "not valid JSON")


def test_deeply_nested_json(client):
    response = client.post("/predict", data="[" * 5000 + "]" * 5000, content_type="application/json")
    assert_error(response, 400, "not valid JSON")


def test_json_that_is_not_an_object(client):
    assert_error(predict(client, ["u", IRIS]), 400, "JSON object")


def test_wrong_content_type(client):
    response = client.post("/predict", data=json.dumps({"user_id": "u", "features": IRIS}), content_type="text/plain")
    assert_error(response, 415, "Content-Type: application/json")


def test_unknown_route_and_method_are_json(client):
    assert set(client.get("/nope").get_json()) == {"error", "detail"}
    assert client.get("/predict").status_code == 405


def test_feedback_by_request_id_and_by_user(client, experiment):
    served = predict(client, {"user_id": "u-fb", "features": IRIS, "experiment": experiment}).get_json()
    by_request = client.post("/feedback", json={"request_id": served["request_id"], "outcome": True})
    assert by_request.status_code == 202
    assert by_request.get_json()["variant"] == served["variant"]
    by_user = client.post("/feedback", json={"user_id": "u-fb", "experiment": experiment, "outcome": 12.5})
    assert by_user.status_code == 202 and by_user.get_json()["outcome"] == 12.5
    counts = client.get(f"/experiments/{experiment}").get_json()
    variant = next(v for v in counts["variants"] if v["name"] == served["variant"])
    assert (variant["users"], variant["outcomes"]) == (1, 2)


def test_feedback_for_a_user_never_assigned(client, experiment):
    response = client.post("/feedback", json={"user_id": "stranger", "experiment": experiment, "outcome": 1})
    assert_error(response, 404, "never assigned", "stranger")


def test_feedback_for_an_unknown_request(client):
    assert_error(client.post("/feedback", json={"request_id": "0" * 32, "outcome": 1}), 404, "unknown or has expired")


def test_feedback_with_an_unknown_request_id_uses_the_user_sent_along(client, experiment):
    """Request ids live in Redis; one lost with it (restarted empty, expired) does not refuse a served user."""
    served = predict(client, {"user_id": "u-lost-id", "features": IRIS, "experiment": experiment}).get_json()
    body = {"request_id": "0" * 32, "user_id": "u-lost-id", "experiment": experiment, "outcome": 1}
    response = client.post("/feedback", json=body)
    assert response.status_code == 202 and response.get_json()["variant"] == served["variant"]


def test_feedback_by_request_id_while_redis_is_away(make_app, experiment):
    client = make_app(REDIS_URL="redis://127.0.0.1:1/0").test_client()
    served = predict(client, {"user_id": "u-no-redis", "features": IRIS, "experiment": experiment}).get_json()
    alone = client.post("/feedback", json={"request_id": "0" * 32, "outcome": 1})
    assert_error(alone, 503, "send user_id and experiment instead")
    along = client.post("/feedback", json={"request_id": "0" * 32, "user_id": "u-no-redis", "experiment": experiment,
                                           "outcome": 1})
    assert along.status_code == 202 and along.get_json()["variant"] == served["variant"]


@pytest.mark.parametrize("body,words", [
    ({"user_id": "u"}, ["outcome is required"]),
    ({"user_id": "u", "outcome": "yes"}, ["outcome must be true/false or a finite number"]),
    ({"user_id": "u", "outcome": None}, ["outcome is required"]),
    ({"outcome": 1}, ["either request_id, or user_id"]),
    ({"request_id": "not-an-id", "outcome": 1}, ["32 hex characters"]),
    ({"request_id": "' OR 1=1 --", "outcome": 1}, ["32 hex characters"]),
    ({"request_id": "0" * 32 + "\n", "outcome": 1}, ["32 hex characters"]),
    ({"user_id": "u", "outcome": 1e13}, ["finite number"]),
    ({"user_id": "u", "outcome": 10 ** 400}, ["finite number"]),
])
def test_bad_feedback(client, body, words):
    assert_error(client.post("/feedback", json=body), 400, *words)


def test_sql_injection_strings_are_just_data(client, experiment):
    user_id = "x'); DROP TABLE assignments; --"
    assert predict(client, {"user_id": user_id, "features": IRIS, "experiment": experiment}).status_code == 200
    response = client.post("/feedback", json={"user_id": user_id, "experiment": experiment, "outcome": 1})
    assert response.status_code == 202
    assert_error(predict(client, {"user_id": "u", "features": IRIS, "experiment": "' OR '1'='1"}), 404, "no experiment")


def test_experiments_list_and_detail(client, experiment):
    listed = client.get("/experiments").get_json()["experiments"]
    assert experiment in [e["name"] for e in listed]
    detail = client.get(f"/experiments/{experiment}").get_json()
    assert [v["name"] for v in detail["variants"]] == ["control", "variation"]
    assert "salt" not in detail
    assert_error(client.get("/experiments/no-such"), 404, "no-such")


def test_health_and_ready(client, experiment):
    assert client.get("/health").get_json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert {k: v["status"] for k, v in ready.get_json()["checks"].items()} == {
        "models": "ok", "redis": "ok", "mysql": "ok", "experiments": "ok", "rollout": "ok"}


def test_ready_is_503_when_redis_is_unreachable(make_app, experiment):
    app = make_app(REDIS_URL="redis://127.0.0.1:1/0")
    response = app.test_client().get("/ready")
    assert response.status_code == 503
    assert response.get_json()["checks"]["redis"]["status"] == "error"
    # ... while predictions still answer, from the hash and MySQL
    served = predict(app.test_client(), {"user_id": "u", "features": IRIS, "experiment": experiment})
    assert served.status_code == 200


def test_metrics_count_requests_sticky_lookups_and_latency(client, experiment):
    for _ in range(2):
        predict(client, {"user_id": "metrics-user", "features": IRIS, "experiment": experiment})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'abtest_http_requests_total{method="POST",route="/predict",status="200"}' in text
    assert 'abtest_sticky_lookups_total{source="memory"}' in text  # the second request
    assert f'abtest_predict_latency_seconds_count{{experiment="{experiment}",model="logreg",variant=' in text


def test_redis_failures_on_the_pipelined_claim_are_counted(make_app, experiment):
    client = make_app(REDIS_URL="redis://127.0.0.1:1/0").test_client()
    assert predict(client, {"user_id": "u-down", "features": IRIS, "experiment": experiment}).status_code == 200
    assert 'abtest_dependency_errors_total{dependency="redis"}' in client.get("/metrics").get_data(as_text=True)


def test_features_that_do_not_fit_the_model_record_nothing(client, experiment, db, repo):
    response = predict(client, {"user_id": "wrong-shape", "experiment": experiment, "features": [1, 2, 3]})
    assert_error(response, 400, "must hold 4 numbers")
    with db.connection() as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT COUNT(*) FROM assignments WHERE experiment_id = %s AND user_id = %s",
                       (repo.get(experiment).id, "wrong-shape"))
        assert cursor.fetchone()[0] == 0  # no exposure for a request that was refused
