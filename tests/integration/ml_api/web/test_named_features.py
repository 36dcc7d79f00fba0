"""Named features through the HTTP API (real Redis and MySQL): the churn pipelines, and 400s that name the column."""

import pytest

from tests.integration.ml_api.web.test_api import assert_error, predict

CUSTOMER = {"tenure": 1, "Contract": "Month-to-month", "InternetService": "Fiber optic", "MonthlyCharges": 85.0,
            "TotalCharges": 85.0, "SeniorCitizen": 0, "PaymentMethod": "Electronic check", "PaperlessBilling": "Yes"}


@pytest.fixture
def churn(make_experiment):
    return make_experiment((50, 50), models=("churn_logreg", "churn_boost"))


def exposures(db, repo, experiment: str) -> int:
    with db.connection() as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT COUNT(*) FROM assignments WHERE experiment_id = %s", (repo.get(experiment).id,))
        return cursor.fetchone()[0]


def test_the_churn_pipelines_answer_named_features(client, churn):
    answers = [predict(client, {"user_id": f"c-{n}", "experiment": churn, "features": CUSTOMER}).get_json()
               for n in range(12)]
    assert {a["model"]["name"] for a in answers} == {"churn_logreg", "churn_boost"}
    for answer in answers:
        assert answer["prediction"] in {"Yes", "No"} and set(answer["probabilities"]) == {"Yes", "No"}
        assert answer["fallback"] is False


def test_missing_values_are_imputed(client, churn):
    body = {"user_id": "c-new", "experiment": churn, "features": {**CUSTOMER, "TotalCharges": None, "Contract": None}}
    assert predict(client, body).status_code == 200


@pytest.mark.parametrize("features,words", [
    ({k: v for k, v in CUSTOMER.items() if k != "tenure"}, ['missing the column "tenure"']),
    ({**CUSTOMER, "Colour": "red"}, ['the column "Colour"', "does not take"]),
    ({**CUSTOMER, "tenure": "one"}, ['features["tenure"] must be a number']),
    ({**CUSTOMER, "Contract": 2}, ['features["Contract"] must be a string']),
    ({**CUSTOMER, "Contract": [1]}, ['features["Contract"] must be a number, string, boolean or null']),
    ([1.0, 85.0, 85.0, 0.0], ["takes named features", "tenure, MonthlyCharges"]),
    ({}, ["non-empty object"]),
])
def test_bad_named_input_is_a_400_naming_the_column_and_records_nothing(client, churn, db, repo, features, words):
    response = predict(client, {"user_id": "c-bad", "experiment": churn, "features": features})
    assert_error(response, 400, *words)
    assert exposures(db, repo, churn) == 0


def test_a_non_finite_named_number_is_refused(client, churn):
    raw = '{"user_id": "c-inf", "experiment": "%s", "features": {"tenure": 1e999}}' % churn
    response = client.post("/predict", data=raw, content_type="application/json")
    assert_error(response, 400, 'features["tenure"] must be finite')


def test_every_model_of_the_experiment_must_take_the_columns(client, make_experiment, db, repo):
    mixed = make_experiment((50, 50), models=("logreg", "churn_boost"))
    response = predict(client, {"user_id": "c-mixed", "experiment": mixed, "features": CUSTOMER})
    assert_error(response, 400, 'missing the columns "sepal length (cm)"', "'logreg'")
    assert exposures(db, repo, mixed) == 0


def test_the_list_form_is_unchanged_and_iris_also_takes_its_column_names(client, make_experiment):
    iris = make_experiment((50, 50), models=("logreg", "forest"))
    as_list = predict(client, {"user_id": "i-1", "experiment": iris, "features": [5.1, 3.5, 1.4, 0.2]}).get_json()
    named = {"petal width (cm)": 0.2, "petal length (cm)": 1.4, "sepal width (cm)": 3.5, "sepal length (cm)": 5.1}
    as_names = predict(client, {"user_id": "i-1", "experiment": iris, "features": named}).get_json()
    assert (as_names["prediction"], as_names["probabilities"]) == (as_list["prediction"], as_list["probabilities"])
