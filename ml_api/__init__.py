"""The experiment gateway: a Flask application factory served by gunicorn.

    gunicorn -c ml_api/gunicorn.conf.py 'ml_api:create_app()'
"""

import os
from collections.abc import Mapping
from functools import partial

from flask import Flask, Response

from ml_api import admin, docs, errors, experiments, feedback, health, metrics, predict, results, rollout_admin
from ml_api.config import load_config
from ml_api.json_provider import OrjsonProvider
from ml_api.predict_lane import PredictLane
from ml_api.request_events import emit_error_events
from ml_api.rollout import rollout
from ml_api.services import Services, build_services, init_app, start_background


def create_app(overrides: Mapping[str, str] | None = None) -> Flask:
    """Build the app from api.env, the environment, then ``overrides`` (tests)."""
    config = load_config({**os.environ, **(overrides or {})})
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.json = OrjsonProvider(app)
    app.json.sort_keys = False
    svc = build_services(config)
    init_app(app, svc)
    errors.init_app(app)
    for module in (predict, feedback, experiments, health, admin, rollout_admin, metrics, results, docs):
        app.register_blueprint(module.bp)
    app.after_request(after_every_request)  # one hook: each one costs Flask a few microseconds per request
    app.before_request(partial(start_background, svc))
    with app.app_context():
        mirror = rollout()
    app.wsgi_app = PredictLane(app.wsgi_app, svc, mirror, app.json.encode_body)  # type: ignore[method-assign]
    report_model_errors(svc)
    return app


def after_every_request(response: Response) -> Response:
    """The request's Prometheus sample, and the error event of a failed /predict or /feedback."""
    metrics.count_request(response)
    if response.status_code >= 400:
        emit_error_events(response)
    return response


def report_model_errors(svc: Services) -> None:
    """One error event per model that failed to load in this worker (e.g. after a reload)."""
    for name, error in svc.models.errors.items():
        svc.events.emit("error", {
            "event.outcome": "failure",
            "model.name": name,
            "model.version": svc.models.models[name].version if name in svc.models.models else None,
            "error.type": "model_load_error",
            "error.message": error,
        })
