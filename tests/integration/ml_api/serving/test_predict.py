"""A variation whose model raises or exceeds its time budget is answered by control."""

import json
import secrets
import shutil
import time
from pathlib import Path

import joblib
import jsonschema
import pytest

from ml_api.config import PROJECT_ROOT
from ml_api.experiments.definitions import VariantSpec
from tests.model_doubles import FailingModel, SlowModel

IRIS = [5.1, 3.5, 1.4, 0.2]


@pytest.fixture
def misbehaving_app(make_app, model_dir, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(model_dir, models)
    joblib.dump(FailingModel(), models / "failing.joblib")
    joblib.dump(SlowModel(2.0), models / "slow.joblib")
    env_file = tmp_path / "api.env"
    env_file.write_text((PROJECT_ROOT / "api.env").read_text() + "\nMODEL_FAILING=failing.joblib\nMODEL_SLOW=slow.joblib\n")
    return make_app(MODEL_DIR=str(models), API_ENV_FILE=str(env_file), MODEL_TIMEOUT_MS="200")


def make_experiment(app, models: tuple[str, str], weights: tuple[int, int]) -> str:
    """An experiment in the app's own repository, which knows the extra models."""
    name = f"fallback-{secrets.token_hex(4)}"
    variants = [VariantSpec("control", weights[0], models[0]), VariantSpec("variation", weights[1], models[1])]
    app.extensions["ml_api"].experiments.create(name, variants, actor="test", status="running")
    return name


def events_of(app, overrides) -> list[dict]:
    app.extensions["ml_api"].events.flush()
    return [json.loads(line) for line in Path(overrides["EVENT_FILE"]).read_text().splitlines()]


@pytest.mark.parametrize("model,message", [("failing", "feature store unreachable"), ("slow", "time budget of 200 ms")])
def test_variation_failure_falls_back_to_control(misbehaving_app, overrides, model, message):
    experiment = make_experiment(misbehaving_app, ("logreg", model), (0, 100))
    client = misbehaving_app.test_client()
    started = time.monotonic()
    response = client.post("/predict", json={"user_id": "u-fb", "experiment": experiment, "features": IRIS})
    elapsed = time.monotonic() - started
    body = response.get_json()
    assert response.status_code == 200
    assert (body["variant"], body["fallback"], body["model"]["name"]) == ("variation", True, "logreg")
    assert elapsed < 1.5, "a slow variation costs at most its budget"
    event = [e for e in events_of(misbehaving_app, overrides) if e["event"]["action"] == "predict"][-1]
    assert event["experiment"]["fallback"] is True and event["model"]["name"] == "logreg"
    assert message in event["error"]["message"]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert f'abtest_fallbacks_total{{experiment="{experiment}",variant="variation"}}' in metrics


def test_control_failure_is_a_clear_503(misbehaving_app, overrides):
    experiment = make_experiment(misbehaving_app, ("failing", "logreg"), (100, 0))
    response = misbehaving_app.test_client().post(
        "/predict", json={"user_id": "u", "experiment": experiment, "features": IRIS})
    assert response.status_code == 503
    assert "feature store unreachable" in response.get_json()["detail"]
    pending = misbehaving_app.extensions["ml_api"].request_stats.pending()
    errors = [counts[1] for (_, variant, _, _), counts in pending.items() if variant == "control"]
    assert errors == [1], "the failed request counts as an error for the guardrails"
    error_event = [e for e in events_of(misbehaving_app, overrides) if e["event"]["action"] == "error"][-1]
    assert (error_event["experiment"]["name"], error_event["experiment"]["variant"]) == (experiment, "control")
    jsonschema.validate(error_event, json.loads((PROJECT_ROOT / "logstash" / "event.schema.json").read_text()))
