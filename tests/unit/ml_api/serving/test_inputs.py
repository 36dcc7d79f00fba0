"""Named features against the model's own columns: every mismatch is refused naming the column."""

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from ml_api.errors import InvalidRequest
from ml_api.serving.models import LoadedModel
from scripts.demo_data import churn_frame, churn_preprocessing

CUSTOMER = {"tenure": 1, "MonthlyCharges": 85.0, "TotalCharges": 85.0, "SeniorCitizen": 0,
            "Contract": "Month-to-month", "InternetService": "Fiber optic", "PaymentMethod": "Electronic check",
            "PaperlessBilling": "Yes"}


@pytest.fixture(scope="module")
def churn_rows():
    return churn_frame(600, seed=3)


@pytest.fixture(scope="module")
def pipeline_model(churn_rows, tmp_path_factory) -> LoadedModel:
    frame, labels = churn_rows
    estimator = make_pipeline(churn_preprocessing(), LogisticRegression(max_iter=500)).fit(frame, labels)
    return LoadedModel("churn", tmp_path_factory.mktemp("m") / "churn.joblib", estimator)


@pytest.fixture(scope="module")
def strict_model(churn_rows, tmp_path_factory) -> LoadedModel:
    """No imputation, and unknown categories refused by the encoder."""
    frame, labels = churn_rows
    columns = ColumnTransformer([("n", StandardScaler(), ["tenure", "MonthlyCharges"]),
                                 ("c", OneHotEncoder(handle_unknown="error"), ["Contract"])])
    estimator = make_pipeline(columns, LogisticRegression()).fit(frame[["tenure", "MonthlyCharges", "Contract"]], labels)
    return LoadedModel("strict", tmp_path_factory.mktemp("m") / "strict.joblib", estimator)


def test_a_pipeline_reads_its_columns_and_their_kinds(pipeline_model):
    inputs = pipeline_model.inputs
    assert inputs.names == list(CUSTOMER)
    kinds = {c.name: c.kind for c in inputs.columns}
    assert kinds["tenure"] == "number" and kinds["Contract"] == "category"
    assert all(c.nullable for c in inputs.columns), "every column is imputed"
    assert inputs.needs_frame and not inputs.takes_list


def test_named_features_predict_what_the_pipeline_predicts_on_a_dataframe(pipeline_model, churn_rows):
    frame, _ = churn_rows
    for index in range(20):
        row = frame.iloc[index].to_dict()
        row = {k: (None if isinstance(v, float) and np.isnan(v) else v.item() if hasattr(v, "item") else v)
               for k, v in row.items()}
        pipeline_model.inputs.check("churn", row)
        want = pipeline_model.estimator.predict_proba(frame.iloc[[index]])[0]
        got = pipeline_model.predict(row)
        assert list(got.probabilities.values()) == want.tolist()
    rows = [CUSTOMER, {**CUSTOMER, "tenure": 60, "Contract": "Two year"}, {**CUSTOMER, "TotalCharges": None}]
    for batch, single in zip(pipeline_model.predict_many(rows), map(pipeline_model.predict, rows)):
        # A batch's matrix products may add in another order: equal up to the last bits.
        assert batch.label == single.label
        assert batch.probabilities == pytest.approx(single.probabilities, rel=1e-12, abs=1e-15)


def test_null_is_imputed_where_the_pipeline_imputes(pipeline_model):
    row = {**CUSTOMER, "TotalCharges": None, "PaymentMethod": None}
    pipeline_model.inputs.check("churn", row)
    assert pipeline_model.predict(row).label in {"Yes", "No"}


@pytest.mark.parametrize("change,words", [
    ({"tenure": "one"}, ['features["tenure"] must be a number', "fitted on numbers"]),
    ({"Contract": 12}, ['features["Contract"] must be a string', "fitted on categories"]),
    ({"Contract": True}, ['features["Contract"] must be a string']),
    ({"Colour": "red"}, ['features has the column "Colour"', "tenure, MonthlyCharges"]),
])
def test_a_bad_named_value_names_its_column(pipeline_model, change, words):
    with pytest.raises(InvalidRequest) as refused:
        pipeline_model.inputs.check("churn", {**CUSTOMER, **change})
    for word in words:
        assert word in str(refused.value)


def test_a_missing_column_is_named(pipeline_model):
    row = {k: v for k, v in CUSTOMER.items() if k not in {"tenure", "Contract"}}
    with pytest.raises(InvalidRequest, match='missing the columns "tenure", "Contract" for model \'churn\''):
        pipeline_model.inputs.check("churn", row)


def test_a_list_sent_to_a_named_model_is_told_the_names(pipeline_model):
    with pytest.raises(InvalidRequest, match="takes named features: .* columns tenure, MonthlyCharges, TotalCharges"):
        pipeline_model.inputs.check("churn", [1.0, 2.0, 3.0, 4.0])


def test_null_without_imputation_and_unknown_categories_are_refused(strict_model):
    row = {"tenure": 3, "MonthlyCharges": 50.0, "Contract": "One year"}
    strict_model.inputs.check("strict", row)
    with pytest.raises(InvalidRequest, match=r'features\["tenure"\] must not be null: .* does not impute'):
        strict_model.inputs.check("strict", {**row, "tenure": None})
    with pytest.raises(InvalidRequest, match=r'features\["Contract"\] must be one of "Month-to-month", "One year", '
                                             r'"Two year" for model \'strict\', got "Weekly"'):
        strict_model.inputs.check("strict", {**row, "Contract": "Weekly"})


def test_a_model_fitted_on_an_array_takes_the_list_or_the_bundles_names(tmp_path):
    x = np.array([[1.0, 2.0], [2.0, 1.0], [0.0, 3.0], [3.0, 0.0]])
    estimator = LogisticRegression().fit(x, ["a", "b", "a", "b"])
    bare = LoadedModel("bare", tmp_path / "bare.joblib", estimator)
    bare.inputs.check("bare", [1.0, 2.0])
    with pytest.raises(InvalidRequest, match="fitted without column names: send features as a list of 2 numbers"):
        bare.inputs.check("bare", {"x": 1.0, "y": 2.0})
    named = LoadedModel("named", tmp_path / "named.joblib", estimator, {"feature_names": ["x", "y"]})
    named.inputs.check("named", [1.0, 2.0])
    named.inputs.check("named", {"y": 2.0, "x": 1.0})
    assert named.predict({"y": 2.0, "x": 1.0}) == named.predict([1.0, 2.0]), "columns are put in the fitted order"
