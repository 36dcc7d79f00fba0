"""POST /feedback: an outcome for a user's variant (a conversion, a click, a score)."""

import uuid
from typing import Any

from flask import Blueprint, request

from assigner import StoreUnavailable
from assigner.store import REDIS_ERRORS, unconfirmed
from assigner.hashing import user_hash
from ml_api.db import DatabaseUnavailable
from ml_api.errors import ApiError
from ml_api.predict import find_experiment
from ml_api.services import Services, services
from ml_api.validation import FeedbackRequest, json_body, parse_feedback

bp = Blueprint("feedback", __name__)


@bp.post("/feedback")
def feedback() -> tuple[dict[str, Any], int]:
    """Record an outcome against the variant the user was first assigned."""
    svc = services()
    req = parse_feedback(json_body(request), svc.config.default_experiment, svc.config.max_user_id_length)
    experiment_name, user_id = resolve_user(svc, req)
    experiment = find_experiment(svc, experiment_name)
    variant = assigned_variant(svc, experiment.id, user_id)
    if variant is None:
        raise ApiError(
            404, "not_assigned",
            f"user {user_id!r} was never assigned in experiment {experiment.name!r} "
            "(outside its traffic allocation, forced, or never sent to /predict)",
        )
    feedback_id = uuid.uuid4().hex
    svc.recorder.record_outcome({
        "feedback_id": feedback_id,
        "experiment_id": experiment.id,
        "user_id": user_id,
        "variant": variant,
        "request_id": req.request_id,
        "value": req.outcome,
        "label": req.label,
    })
    svc.events.emit("feedback", {
        "event.outcome": "success",
        "http.request.id": feedback_id,
        "http.request.method": "POST",
        "url.path": "/feedback",
        "http.response.status_code": 202,
        "experiment.name": experiment.name,
        "experiment.variant": variant,
        "user.hash": user_hash(user_id),
        "user.id": user_id if svc.config.log_raw_user_id else None,
        "feedback.outcome": req.outcome,
    })
    return {
        "feedback_id": feedback_id,
        "experiment": experiment.name,
        "variant": variant,
        "outcome": req.outcome,
        "status": "accepted",
    }, 202


def assigned_variant(svc: Services, experiment_id: int, user_id: str) -> str | None:
    """The variant of the user's first exposure: MySQL's record, else the sticky cache.

    With MySQL away the cache answers, and the outcome waits in the spool; with both
    away nobody can tell the user's variant, so the caller is asked to retry (503).
    """
    try:
        return svc.recorder.find_assignment(experiment_id, user_id)
    except DatabaseUnavailable:
        pass
    try:
        cached = svc.store.get(experiment_id, user_id)
    except StoreUnavailable:
        raise ApiError(503, "dependencies_unavailable",
                       "neither MySQL nor Redis can tell this user's variant right now; retry shortly") from None
    return unconfirmed(cached) or cached  # a guess made while MySQL was away is all there is


def resolve_user(svc: Services, req: FeedbackRequest) -> tuple[str, str]:
    """``(experiment, user_id)`` from the request id (kept in Redis) or from the body."""
    if req.request_id is None:
        return req.experiment, req.user_id
    try:
        found = svc.requests.resolve(req.request_id)
    except REDIS_ERRORS:  # a cluster's own errors too
        raise ApiError(
            503, "cache_unavailable",
            "request ids cannot be resolved while Redis is away; send user_id and experiment instead",
        ) from None
    if found is None:
        raise ApiError(404, "unknown_request", f"request_id {req.request_id} is unknown or has expired")
    return found
