"""POST /covariates: pre-exposure values are kept, later ones refused and counted, bad bodies answered with 400."""

import pytest

from ml_api.services import of_app

DECLARATION = {"primary": {"name": "revenue", "type": "mean", "mde": 1, "covariate": "revenue_before"}}


@pytest.fixture
def experiment(make_experiment):
    return make_experiment(metrics=DECLARATION)


def stored(app, name: str) -> dict[str, float]:
    svc = of_app(app)
    with svc.db.connection() as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT c.user_id, c.value FROM metric_covariates c JOIN experiments e ON e.id = c.experiment_id"
                       " WHERE e.name = %s", (name,))
        return dict(cursor.fetchall())


def test_values_before_the_exposure_are_kept_and_replaceable_later_ones_refused(app, client, experiment):
    body = {"experiment": experiment, "covariate": "revenue_before",
            "values": [{"user_id": "a", "value": 1.5}, {"user_id": "b", "value": 0}]}
    assert client.post("/covariates", json=body).json["accepted"] == 2
    assert client.post("/predict", json={"user_id": "a", "experiment": experiment,
                                         "features": [5.1, 3.5, 1.4, 0.2]}).status_code == 200
    body["values"] = [{"user_id": "a", "value": 9.0}, {"user_id": "b", "value": 2.0}]
    answer = client.post("/covariates", json=body)
    assert answer.status_code == 200
    assert answer.json == {"experiment": experiment, "covariate": "revenue_before", "accepted": 1,
                           "refused_exposed": 1, "late_users": ["a"]}
    assert stored(app, experiment) == {"a": 1.5, "b": 2.0}


@pytest.mark.parametrize("body, message", [
    ({"experiment": "no-such-experiment", "covariate": "revenue_before", "values": [{"user_id": "a", "value": 1}]},
     None),  # 404
    ({"covariate": "spend", "values": [{"user_id": "a", "value": 1}]}, "declared: revenue_before"),
    ({"covariate": "revenue_before"}, "values must be a non-empty list"),
    ({"covariate": "revenue_before", "values": []}, "values must be a non-empty list"),
    ({"covariate": "revenue_before", "values": [{"value": 1}]}, "values[0].user_id is required"),
    ({"covariate": "revenue_before", "values": [{"user_id": "a", "value": "1"}]}, "values[0].value must be a finite"),
    ({"covariate": "revenue_before", "values": [{"user_id": "a", "value": True}]}, "values[0].value must be a finite"),
    ({"covariate": "revenue_before", "values": [{"user_id": "a", "value": 1e13}]}, "values[0].value must be a finite"),
    ({"covariate": "revenue_before", "values": [{"user_id": "a ", "value": 1}]}, "must not begin or end"),
    ({"covariate": "revenue_before", "values": [{"user_id": "a", "value": 1}, {"user_id": "a", "value": 2}]},
     "more than once"),
    ({"covariate": "revenue_before", "values": ["a"]}, "values[0] must be an object"),
    ({"values": [{"user_id": "a", "value": 1}]}, "covariate is required"),
])
def test_bad_bodies_say_what_was_wrong(client, experiment, body, message):
    answer = client.post("/covariates", json=body | ({"experiment": experiment} if message else {}))
    if message is None:
        assert answer.status_code == 404
        return
    assert answer.status_code == 400, answer.json
    assert message in answer.json["detail"]
