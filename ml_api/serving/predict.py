"""The request core of /predict: parse → experiment → assign → predict → record → event.

It knows no HTTP: it takes the parsed JSON body and returns the answer, or raises a domain
error (``ml_api.errors``) that the web layer maps to a status. The Flask view and the
predict lane both call :func:`answer`, so both answer alike.
"""

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from assigner import Assignment, Experiment, ExperimentStatus, assign
from ml_api.errors import ModelUnavailable
from ml_api.serving.inputs import Features
from ml_api.serving.models import LoadedModel, ModelError, Prediction
from ml_api.serving.requests import PredictRequest, parse_predict
from ml_api.telemetry import event_kinds, metrics

if TYPE_CHECKING:
    from ml_api.services import Services


def answer(svc: "Services", body: dict[str, Any]) -> dict[str, Any]:
    """The whole of /predict after HTTP: from the parsed body to the answer."""
    started = time.perf_counter()
    req, experiment = admit(svc, body)
    assignment = assign(experiment, req.user_id, svc.store, svc.recorder, svc.memory)
    assigned = time.perf_counter()
    try:
        model, prediction, fallback, model_error = serve(svc, experiment, assignment, req)
    except ModelUnavailable as exc:
        raise unavailable(svc, experiment, assignment, exc, started) from None
    return conclude(svc, Served(req, experiment, assignment, model, prediction, fallback, model_error),
                    started, assigned, time.perf_counter())


def admit(svc: "Services", body: dict[str, Any]) -> tuple[PredictRequest, Experiment]:
    """The validated request and its experiment; features every model of it can take (before any exposure)."""
    req = parse_predict(body, svc.config.default_experiment, svc.config.max_user_id_length)
    experiment = svc.catalog.require(req.experiment)
    check_features(svc, experiment, req.features)  # before the exposure is recorded
    return req, experiment


@dataclass(frozen=True)
class Served:
    """One answered request, before its request id, event and reply are made."""

    req: PredictRequest
    experiment: Experiment
    assignment: Assignment
    model: LoadedModel
    prediction: Prediction
    fallback: bool
    model_error: str | None


def unavailable(svc: "Services", experiment: Experiment, assignment: Assignment, exc: ModelUnavailable,
                started: float) -> ModelUnavailable:
    """No model could answer an assigned request: an error against the guardrails, told with its variant."""
    exc.event_fields = event_kinds.failed_experiment(experiment, assignment)
    if assignment.in_experiment:
        svc.request_stats.record(experiment.id, assignment.variant, (time.perf_counter() - started) * 1000, error=True)
    return exc


def conclude(svc: "Services", done: Served, started: float, assigned: float, predicted: float) -> dict[str, Any]:
    """Request id, metrics, guardrail counts, shadow, event, and the reply of one served request."""
    req, experiment, assignment, model, prediction = done.req, done.experiment, done.assignment, done.model, \
        done.prediction
    request_id = svc.requests.new_id()
    svc.requests.remember(request_id, experiment.name, req.user_id)  # sent by a background thread

    latency = {
        "assignment_ms": (assigned - started) * 1000,
        "model_ms": (predicted - assigned) * 1000,
        "total_ms": (time.perf_counter() - started) * 1000,
    }
    observe(experiment, assignment, model, done.fallback, latency)
    if assignment.in_experiment:  # guardrails compare exposed users only
        svc.request_stats.record(experiment.id, assignment.variant, latency["total_ms"], error=False,
                                 fallback=done.fallback)
    svc.rollout.mirror(experiment, assignment, req, request_id, model, prediction)  # shadow model, off the request path
    svc.events.emit(event_kinds.PREDICT, event_kinds.predict_fields(
        request_id, svc.users.fields(req.user_id), experiment, assignment,
        {"name": model.name, "version": model.version}, prediction.label, prediction.probability, done.fallback,
        done.model_error, latency,
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
        "fallback": done.fallback,
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
    svc: "Services", model_name: str, features: Features, budget: bool = False
) -> tuple[LoadedModel, Prediction]:
    """Predict with one model; ``budget`` applies MODEL_TIMEOUT_MS (variations only)."""
    model = svc.models.get(model_name)
    return model, svc.models.predict_within_budget(model, features) if budget else model.predict(features)


def check_features(svc: "Services", experiment: Experiment, features: Features) -> None:
    """Refuse features that do not fit every model the experiment may answer with (any variant, or control)."""
    for name in dict.fromkeys(variant.model for variant in experiment.variants):
        try:
            model = svc.models.get(name)
        except ModelError:
            continue  # not loaded: serving it falls back to control, or answers 503
        model.inputs.check(name, features)
