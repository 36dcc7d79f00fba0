"""``models list|validate`` and GET /models: which file serves, and whether a new file may be swapped in."""

import json
import os
import secrets
import subprocess
import sys

from assigner import ExperimentStatus
from ml_api.config import PROJECT_ROOT, Config
from ml_api.experiments.definitions import VariantSpec
from ml_api.experiments.repository import ExperimentRepository
from ml_api.infra.database import Database
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


def own_model(overrides: dict[str, str], file: str) -> tuple[str, dict[str, str]]:
    """A model name only this test's experiments use (the run's database holds every test's experiments,
    and a refusal names the first experiment that does not fit)."""
    name = f"own_{secrets.token_hex(4)}"
    return name, {**overrides, f"MODEL_{name.upper()}": file}


def experiment_of(db: Database, config: Config, models: tuple[str, str], own: str) -> str:
    """A running experiment answered by ``models``, one of them ``own`` (known to this test only)."""
    name = f"exp-{secrets.token_hex(4)}"
    variants = [VariantSpec(n, 50, m) for n, m in zip(("control", "variation"), models)]
    ExperimentRepository(db, [*config.model_files, own]).create(name, variants, actor="test",
                                                               status=ExperimentStatus.RUNNING)
    return name


def test_validate_accepts_a_new_version_and_refuses_a_file_of_other_inputs(overrides, tmp_path, db, config):
    mine, settings = own_model(overrides, "churn-boost-v1.joblib")
    churn = experiment_of(db, config, ("churn_logreg", mine), mine)
    new = train_one(DEMO_BY_NAME["forest"], tmp_path, version="v2", seed=7)
    shown = cli(settings, "validate", str(new), "--name", "forest")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["version"] == "v2" and "prediction" in json.loads(shown.stdout)["sample"]
    refused = cli(settings, "validate", str(new), "--name", mine)
    assert refused.returncode == 1, refused.stdout
    assert f"experiment {churn!r} also answers with 'churn_logreg' (churn-logreg-v1.joblib)" in refused.stderr
    assert "sepal length (cm) (number)" in refused.stderr and "tenure (number)" in refused.stderr
    (tmp_path / "broken.joblib").write_bytes(b"not a model")
    broken = cli(settings, "validate", str(tmp_path / "broken.joblib"))
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


def test_validate_without_a_file_refuses_an_api_env_whose_files_do_not_fit_together(overrides, db, config):
    mine, settings = own_model(overrides, "iris-forest-v1.joblib")
    iris = experiment_of(db, config, ("logreg", mine), mine)
    swapped = cli({**settings, f"MODEL_{mine.upper()}": "churn-boost-v1.joblib"}, "validate")
    assert swapped.returncode == 1
    assert f"experiment {iris!r} also answers with 'logreg' (iris-logreg-v1.joblib)" in swapped.stderr \
        or f"experiment {iris!r} also answers with {mine!r} (churn-boost-v1.joblib)" in swapped.stderr


def test_get_models_and_ready_name_the_file(client):
    models = {m["name"]: m for m in client.get("/models").get_json()["models"]}
    assert models["logreg"]["feature_count"] == 4 and models["logreg"]["file"] == "iris-logreg-v1.joblib"
    ready = client.get("/ready").get_json()["checks"]["models"]["models"]
    assert ready["churn_logreg"]["file"] == "churn-logreg-v1.joblib"
