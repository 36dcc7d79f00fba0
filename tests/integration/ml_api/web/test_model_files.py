"""Model files of both formats through the HTTP API (real Redis and MySQL): a .skops pipeline is served as its
joblib twin is, and a .skops file holding types SKOPS_TRUSTED_TYPES does not list is refused, naming them."""

import secrets
import shutil

import pytest

from assigner import ExperimentStatus
from ml_api.experiments.definitions import VariantSpec
from ml_api.experiments.repository import ExperimentRepository
from scripts.train_models import DEMO_BY_NAME, train_one
from tests.integration.ml_api.web.test_api import predict
from tests.integration.ml_api.web.test_named_features import CUSTOMER


@pytest.fixture(scope="module")
def skops_dir(model_dir, tmp_path_factory):
    """The demo models, and the churn pipeline and the forest also as .skops files (v1: the same fits)."""
    path = tmp_path_factory.mktemp("skops-models")
    for file in model_dir.iterdir():
        shutil.copy(file, path)
    for name in ("churn_boost", "forest"):
        train_one(DEMO_BY_NAME[name], path, "v1", file_format="skops")
    return path


def experiment_with(db, model: str) -> str:
    """A running experiment whose two variants both use ``model`` (a name the test's app configures)."""
    name = f"files-{model}-{secrets.token_hex(3)}"
    variants = [VariantSpec("control", 50, model), VariantSpec("variation", 50, model)]
    ExperimentRepository(db, {model}).create(name, variants, actor="test", status=ExperimentStatus.RUNNING)
    return name


def test_a_skops_pipeline_is_served_as_its_joblib_twin(make_app, skops_dir, db, make_experiment):
    safe, pickled = experiment_with(db, "churn_safe"), make_experiment((50, 50), models=("churn_boost", "churn_boost"))
    app = make_app(MODEL_DIR=str(skops_dir), MODEL_CHURN_SAFE="churn-boost-v1.skops")
    client = app.test_client()
    for n in range(5):
        features = {**CUSTOMER, "tenure": n * 7, "TotalCharges": None if n == 2 else 85.0 * n}
        one = predict(client, {"user_id": f"s-{n}", "experiment": safe, "features": features})
        twin = predict(client, {"user_id": f"s-{n}", "experiment": pickled, "features": features})
        assert one.status_code == 200, one.get_json()
        assert one.get_json()["model"] == {"name": "churn_safe", "version": "v1"}
        assert one.get_json()["probabilities"] == twin.get_json()["probabilities"]
    served = {m["name"]: m for m in client.get("/models").get_json()["models"]}["churn_safe"]
    assert served["file"] == "churn-boost-v1.skops" and served["estimator"] == "GradientBoostingClassifier"
    assert client.get("/ready").get_json()["checks"]["models"]["models"]["churn_safe"]["file"] == "churn-boost-v1.skops"


def test_a_skops_file_with_untrusted_types_is_refused_naming_them(make_app, skops_dir, db):
    trees = experiment_with(db, "trees")
    app = make_app(MODEL_DIR=str(skops_dir), MODEL_TREES="iris-forest-v1.skops", SKOPS_TRUSTED_TYPES="numpy.dtype")
    client = app.test_client()
    ready = client.get("/ready")
    error = ready.get_json()["checks"]["models"]["models"]["trees"]["error"]
    assert ready.status_code == 503
    assert "iris-forest-v1.skops" in error and "sklearn.tree._tree.Tree" in error and "SKOPS_TRUSTED_TYPES" in error
    response = predict(client, {"user_id": "t-1", "experiment": trees, "features": [5.1, 3.5, 1.4, 0.2]})
    assert response.status_code == 503 and "sklearn.tree._tree.Tree" in response.get_json()["detail"]
