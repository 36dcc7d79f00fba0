"""``models list|validate`` and GET /models: which file serves, and whether a new file may be swapped in."""

import json
import os
import subprocess
import sys

from ml_api.config import PROJECT_ROOT
from scripts.train_models import DEMO_BY_NAME, train_one


def cli(overrides: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **overrides, "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.run([sys.executable, "-m", "ml_api.cli", "models", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_models_list_shows_every_configured_file_with_its_features(overrides):
    listed = {m["name"]: m for m in json.loads(cli(overrides, "list").stdout)}
    assert listed["forest"]["file"] == "iris-forest-v1.joblib" and len(listed["forest"]["sha256"]) == 64
    assert listed["churn_boost"]["estimator"] == "GradientBoostingClassifier"
    assert [f["name"] for f in listed["churn_boost"]["features"]][:2] == ["tenure", "MonthlyCharges"]


def test_validate_accepts_a_new_version_and_refuses_a_file_of_other_inputs(overrides, tmp_path, make_experiment):
    churn = make_experiment((50, 50), models=("churn_logreg", "churn_boost"))
    new = train_one(DEMO_BY_NAME["forest"], tmp_path, version="v2", seed=7)
    shown = cli(overrides, "validate", str(new), "--name", "forest")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["version"] == "v2" and "prediction" in json.loads(shown.stdout)["sample"]
    refused = cli(overrides, "validate", str(new), "--name", "churn_boost")
    assert refused.returncode == 1, refused.stdout
    assert f"experiment {churn!r} also answers with 'churn_logreg' (churn-logreg-v1.joblib)" in refused.stderr
    assert "sepal length (cm) (number)" in refused.stderr and "tenure (number)" in refused.stderr
    (tmp_path / "broken.joblib").write_bytes(b"not a model")
    broken = cli(overrides, "validate", str(tmp_path / "broken.joblib"))
    assert broken.returncode == 1 and "cannot load 'broken.joblib'" in broken.stderr


def test_validate_checks_a_model_alone_in_its_experiment_against_the_file_it_replaces(overrides, tmp_path,
                                                                                      make_experiment):
    make_experiment((50, 50), models=("forest", "forest"))
    other = train_one(DEMO_BY_NAME["churn_logreg"], tmp_path, version="v2")
    refused = cli(overrides, "validate", str(other), "--name", "forest")
    assert refused.returncode == 1 and "the experiments using 'forest' send what iris-forest-v1.joblib takes" \
        in refused.stderr
    unused = cli(overrides, "validate", str(other), "--name", "candidate")  # no experiment uses that name yet
    assert unused.returncode == 0, unused.stderr


def test_validate_without_a_file_refuses_an_api_env_whose_files_do_not_fit_together(overrides, model_dir,
                                                                                   make_experiment):
    iris = make_experiment((50, 50), models=("logreg", "forest"))
    swapped = cli({**overrides, "MODEL_FOREST": "churn-boost-v1.joblib"}, "validate")
    assert swapped.returncode == 1
    assert f"experiment {iris!r} also answers with 'logreg' (iris-logreg-v1.joblib)" in swapped.stderr \
        or f"experiment {iris!r} also answers with 'forest' (churn-boost-v1.joblib)" in swapped.stderr


def test_get_models_and_ready_name_the_file(client):
    models = {m["name"]: m for m in client.get("/models").get_json()["models"]}
    assert models["logreg"]["feature_count"] == 4 and models["logreg"]["file"] == "iris-logreg-v1.joblib"
    ready = client.get("/ready").get_json()["checks"]["models"]["models"]
    assert ready["churn_logreg"]["file"] == "churn-logreg-v1.joblib"
