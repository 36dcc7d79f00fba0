"""The benchmark's baseline: the same model behind a bare Flask endpoint, no experiment.

Served by the gateway's own gunicorn settings (``ml_api/gunicorn.conf.py``: workers,
threads, worker class from api.env) and predicting through the same ``LoadedModel``, so
the difference to the gateway is the experiment logic (validation, definitions, sticky
assignment, request ids, events, metrics) and how each meets HTTP: this endpoint goes
through Flask's per-request machinery, the gateway's /predict through its lane ahead of
Flask (``ml_api/web/predict_lane.py``), which the README's performance section accounts for.

    gunicorn -c ml_api/gunicorn.conf.py 'bench.baseline_app:create_app("logreg")'
"""

import os
from typing import Any

from flask import Flask, request

from ml_api.config import load_config
from ml_api.serving.models import load_model


def create_app(model_name: str) -> Flask:
    """POST /predict ``{"features": [...]}`` answered by the model ``model_name`` of api.env."""
    config = load_config(os.environ)
    model = load_model(model_name, config.model_dir, config.model_files[model_name])
    app = Flask(__name__)

    @app.post("/predict")
    def predict() -> dict[str, Any]:
        prediction = model.predict(request.get_json()["features"])
        return {"prediction": prediction.label, "probabilities": prediction.probabilities}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
