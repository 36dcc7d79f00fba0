"""The request core of /predict: parse → experiment → assign → predict → record → event.

It knows no HTTP: it takes the parsed JSON body and returns the answer, or raises a domain
error (``ml_api.errors``) that the web layer maps to a status. The Flask view and the
predict lane both call :func:`answer`, so both answer alike.
"""

import time
from typing import TYPE_CHECKING, Any

from assigner import Assignment, Experiment, ExperimentStatus, assign
from ml_api.errors import InvalidRequest, ModelUnavailable
from ml_api.serving.models import LoadedModel, ModelError, Prediction
from ml_api.serving.requests import PredictRequest, parse_predict
from ml_api.telemetry import event_kinds, metrics

if TYPE_CHECKING:
    from ml_api.services import Services


def answer(svc: "Services", body: dict[str, Any]) -> dict[str, Any]:
    """The whole of /predict after HTTP: from the parsed body to the answer."""
    started = time.perf_counter()
    req = parse_predict(body, svc.config.default_experiment, svc.config.max_user_id_length)
    experiment = svc.catalog.require(req.experiment)
    check_feature_count(svc, experiment, req.features)  # before the exposure is recorded

    assignment = assign(experiment, req.user_id, svc.store, svc.recorder, svc.memory)
    assigned = time.perf_counter()
    try:
        model, prediction, fallback, model_error = serve(svc, experiment, assignment, req)
    except ModelUnavailable as exc:
        exc.event_fields = event_kinds.failed_experiment(experiment, assignment)
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
    svc.rollout.mirror(experiment, assignment, req, request_id, model, prediction)  # shadow model, off the request path
    svc.events.emit(event_kinds.PREDICT, event_kinds.predict_fields(
        request_id, svc.users.fields(req.user_id), experiment, assignment,
        {"name": model.name, "version": model.version}, prediction.label, prediction.probability, fallback,
        model_error, latency,
    ))
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
    svc: "Services", experiment: Experiment, assignment: Assignment, req: PredictRequest
) -> tuple[LoadedModel, Prediction, bool, str | None]:
    """Predict with the variant's model; if it fails, the default (control) variant answers."""
    model_name = experiment.variant(assignment.variant).model
    control_name = experiment.variant(experiment.default_variant).model
    try:
        return (*predict_with(svc, model_name, req.features, budget=model_name != control_name), False, None)
    except ModelError as exc:
        if model_name == control_name:
            raise ModelUnavailable(str(exc)) from None
        variant_error = str(exc)
    try:
        return (*predict_with(svc, control_name, req.features), True, variant_error)
    except ModelError as exc:
        raise ModelUnavailable(f"{variant_error}; fallback failed too: {exc}") from None


def predict_with(
    svc: "Services", model_name: str, features: list[float], budget: bool = False
) -> tuple[LoadedModel, Prediction]:
    """Predict with one model; ``budget`` applies MODEL_TIMEOUT_MS (variations only)."""
    model = svc.models.get(model_name)
    return model, svc.models.predict_within_budget(model, features) if budget else model.predict(features)


def check_feature_count(svc: "Services", experiment: Experiment, features: list[float]) -> None:
    """Refuse features that do not fit every model the experiment may answer with (any variant, or control)."""
    for name in dict.fromkeys(variant.model for variant in experiment.variants):
        try:
            expected = svc.models.get(name).n_features
        except ModelError:
            continue  # not loaded: serving it falls back to control, or answers 503
        if expected is not None and len(features) != expected:
            raise InvalidRequest(f"features must hold {expected} numbers for model {name!r}, got {len(features)}")
