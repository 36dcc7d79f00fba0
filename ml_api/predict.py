"""POST /predict: validate, assign, predict, record, emit one event, answer."""

import time
from typing import Any

from flask import Blueprint, request

from assigner import Assignment, Experiment, ExperimentStatus, assign
from assigner.hashing import user_hash
from ml_api import metrics
from ml_api.catalog import DefinitionsUnavailable
from ml_api.errors import ApiError
from ml_api.models import LoadedModel, ModelError, Prediction
from ml_api.rollout import Rollout, rollout
from ml_api.services import Services, services
from ml_api.validation import PredictRequest, json_body, parse_predict

bp = Blueprint("predict", __name__)


def find_experiment(svc: Services, name: str) -> Experiment:
    """The running definition of ``name``; 404 when unknown, 503 when none can be loaded."""
    try:
        experiment = svc.catalog.get(name)
    except DefinitionsUnavailable as exc:
        raise ApiError(503, "definitions_unavailable", f"experiment definitions cannot be loaded: {exc}") from None
    if experiment is None:
        raise ApiError(404, "unknown_experiment", f"no experiment named {name!r}")
    return experiment


@bp.post("/predict")
def predict() -> dict[str, Any]:
    """Assign the user to a variant (sticky) and answer with that variant's prediction."""
    return answer(services(), rollout(), json_body(request))


def answer(svc: Services, mirror: Rollout, body: dict[str, Any]) -> dict[str, Any]:
    """The whole of /predict after HTTP: from the parsed body to the answer, or an ApiError.

    Served by ``predict_lane`` for well-formed requests and by the Flask view above for the
    rest, so both answer alike."""
    started = time.perf_counter()
    req = parse_predict(body, svc.config.default_experiment, svc.config.max_user_id_length)
    experiment = find_experiment(svc, req.experiment)
    check_feature_count(svc, experiment, req.features)  # before the exposure is recorded

    assignment = assign(experiment, req.user_id, svc.store, svc.recorder, svc.memory)
    assigned = time.perf_counter()
    try:
        model, prediction, fallback, model_error = serve(svc, experiment, assignment, req)
    except ApiError as exc:
        exc.event_fields.update({"experiment.name": experiment.name, "experiment.variant": assignment.variant,
                                 "experiment.in_experiment": assignment.in_experiment})
        if assignment.in_experiment:  # no model could answer: an error against the guardrails
            svc.request_stats.record(experiment.id, assignment.variant, (time.perf_counter() - started) * 1000,
                                     error=True)
        raise
    predicted = time.perf_counter()
    request_id = svc.requests.new_id()
    svc.requests.remember(request_id, experiment.name, req.user_id)  # sent by a background thread

    latency = {
        "assignment_ms": (assigned - started) * 1000,
        "model_ms": (predicted - assigned) * 1000,
        "total_ms": (time.perf_counter() - started) * 1000,
    }
    observe(experiment, assignment, model, fallback, latency)
    if assignment.in_experiment:  # guardrails compare exposed users only
        svc.request_stats.record(experiment.id, assignment.variant, latency["total_ms"], error=False, fallback=fallback)
    mirror.mirror(experiment, assignment, req, request_id, model, prediction)  # shadow model, off the request path
    svc.events.emit("predict", predict_event(svc, req, experiment, assignment, model, prediction, request_id,
                                             fallback, model_error, latency))
    reply: dict[str, Any] = {
        "request_id": request_id,
        "experiment": experiment.name,
        "experiment_status": experiment.status.value,
        "variant": assignment.variant,
        "in_experiment": assignment.in_experiment,
        "model": {"name": model.name, "version": model.version},
        "prediction": prediction.label,
        "probabilities": prediction.probabilities,
        "fallback": fallback,
        "latency_ms": round(latency["total_ms"], 3),
    }
    if experiment.status is not ExperimentStatus.RUNNING:
        reply["note"] = f"experiment is {experiment.status.value}: serving the default variant to everyone"
    return reply


def predict_event(svc: Services, req: PredictRequest, experiment: Experiment, assignment: Assignment,
                  model: LoadedModel, prediction: Prediction, request_id: str, fallback: bool,
                  model_error: str | None, latency: dict[str, float]) -> dict[str, Any]:
    """The ``predict`` event's fields, given as nested groups (cheaper to encode than dotted keys)."""
    fields: dict[str, Any] = {
        "event": {"outcome": "success"},
        "http": {"request": {"id": request_id, "method": "POST"}, "response": {"status_code": 200}},
        "url": {"path": "/predict"},
        "experiment": {
            "name": experiment.name,
            "variant": assignment.variant,
            "in_experiment": assignment.in_experiment,
            "fallback": fallback,
            "assignment_source": assignment.source.value,
        },
        "user": {"hash": user_hash(req.user_id), "id": req.user_id} if svc.config.log_raw_user_id
        else {"hash": user_hash(req.user_id)},
        "model": {"name": model.name, "version": model.version},
        "prediction": {"label": prediction.label},
        "latency": latency,
    }
    if prediction.probability is not None:  # None for regression models
        fields["prediction"]["probability"] = prediction.probability
    if model_error:
        fields["error"] = {"type": "model_error", "message": model_error}
    return fields


def observe(experiment: Experiment, assignment: Assignment, model: LoadedModel, fallback: bool,
            latency: dict[str, float]) -> None:
    """Prometheus samples of one served prediction (queued: metrics.SampleQueue)."""
    metrics.SAMPLES.inc(metrics.child(metrics.STICKY_LOOKUPS, assignment.source.value))
    metrics.SAMPLES.observe(metrics.child(metrics.MODEL_LATENCY, model.name), latency["model_ms"] / 1000)
    metrics.SAMPLES.observe(metrics.child(metrics.PREDICT_LATENCY, experiment.name, assignment.variant, model.name),
                            latency["total_ms"] / 1000)
    if fallback:
        metrics.SAMPLES.inc(metrics.child(metrics.FALLBACKS, experiment.name, assignment.variant))


def serve(
    svc: Services, experiment: Experiment, assignment: Assignment, req: PredictRequest
) -> tuple[LoadedModel, Prediction, bool, str | None]:
    """Predict with the variant's model; if it fails, the default (control) variant answers."""
    model_name = experiment.variant(assignment.variant).model
    control_name = experiment.variant(experiment.default_variant).model
    try:
        return (*predict_with(svc, model_name, req.features, budget=model_name != control_name), False, None)
    except ModelError as exc:
        if model_name == control_name:
            raise ApiError(503, "model_unavailable", str(exc)) from None
        variant_error = str(exc)
    try:
        return (*predict_with(svc, control_name, req.features), True, variant_error)
    except ModelError as exc:
        raise ApiError(503, "model_unavailable", f"{variant_error}; fallback failed too: {exc}") from None


def predict_with(
    svc: Services, model_name: str, features: list[float], budget: bool = False
) -> tuple[LoadedModel, Prediction]:
    """Predict with one model; ``budget`` applies MODEL_TIMEOUT_MS (variations only)."""
    model = svc.models.get(model_name)
    return model, svc.models.predict_within_budget(model, features) if budget else model.predict(features)


def check_feature_count(svc: Services, experiment: Experiment, features: list[float]) -> None:
    """400 unless the features fit every model the experiment may answer with (any variant, or control)."""
    for name in dict.fromkeys(variant.model for variant in experiment.variants):
        try:
            expected = svc.models.get(name).n_features
        except ModelError:
            continue  # not loaded: serving it falls back to control, or answers 503
        if expected is not None and len(features) != expected:
            raise ApiError(
                400, "invalid_request",
                f"features must hold {expected} numbers for model {name!r}, got {len(features)}",
            )
