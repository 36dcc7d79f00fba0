"""The experiment gateway: a Flask application factory served by gunicorn.

    gunicorn -c ml_api/gunicorn.conf.py 'ml_api:create_app()'

A request's path: ``web`` (the predict lane or a Flask blueprint) parses the body and
hands it to a request core in ``serving`` (``predict.answer``, ``feedback.record_feedback``),
which finds the experiment in ``experiments`` (the catalog), assigns the user (``assigner``
with the sticky store and the record), predicts with ``serving.models``, records through
``experiments.records``, and emits its event through ``telemetry``. Errors are domain errors
(``ml_api.errors``) that ``web.errors`` maps to a status in one table.
"""

import os
from collections.abc import Mapping

from flask import Flask

from ml_api.config import load_config
from ml_api.services import Services, build_services, init_app
from ml_api.telemetry import event_kinds
from ml_api.web import (
    admin,
    covariates,
    docs,
    experiments,
    feedback,
    finish,
    health,
    metrics,
    predict,
    rollout_admin,
)
# Aliased: a bare ``results`` here would hide the ``ml_api.results`` package behind the web module.
from ml_api.web import results as results_web
from ml_api.web.json_provider import OrjsonProvider
from ml_api.web.predict_lane import PredictLane

BLUEPRINTS = (predict, feedback, covariates, experiments, health, admin, rollout_admin, metrics, results_web, docs)


def create_app(overrides: Mapping[str, str] | None = None) -> Flask:
    """Build the app from api.env, the environment, then ``overrides`` (tests).

    Its background threads are not started here: ``Services.start`` does that (gunicorn's
    ``post_worker_init``), so building an app in a test or a script starts nothing."""
    config = load_config({**os.environ, **(overrides or {})})
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.json = OrjsonProvider(app)
    app.json.sort_keys = False
    svc = build_services(config)
    init_app(app, svc)
    finish.install(app, svc)
    for module in BLUEPRINTS:
        app.register_blueprint(module.bp)
    app.wsgi_app = PredictLane(app.wsgi_app, svc, app.json.encode_body)  # type: ignore[method-assign]
    report_model_errors(svc)
    return app


def report_model_errors(svc: Services) -> None:
    """One error event per model that failed to load in this worker (e.g. after a reload)."""
    for name, error in svc.models.errors.items():
        model = svc.models.models.get(name)
        svc.events.emit(event_kinds.ERROR, event_kinds.model_load_error_fields(
            name, model.version if model else None, error))
