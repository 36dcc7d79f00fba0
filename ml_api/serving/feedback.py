"""The request core of /feedback: an outcome recorded against the variant of the user's first exposure.

Like ``serving.predict`` it knows no HTTP: it takes the parsed body and returns the answer,
or raises a domain error (unknown request id, a user never assigned, dependencies away).
"""

import uuid
from typing import TYPE_CHECKING, Any

from assigner import StoreUnavailable
from assigner.store import REDIS_ERRORS, unconfirmed
from ml_api.errors import (
    AssignmentUnknowable,
    DatabaseUnavailable,
    InvalidRequest,
    NotAssigned,
    RequestIdsUnavailable,
    UnknownRequest,
)
from ml_api.serving.requests import FeedbackRequest, parse_feedback
from ml_api.telemetry import event_kinds

if TYPE_CHECKING:
    from ml_api.services import Services


def record_feedback(svc: "Services", body: dict[str, Any]) -> dict[str, Any]:
    """Record an outcome against the variant the user was first assigned; the 202 answer's body."""
    req = parse_feedback(body, svc.config.default_experiment, svc.config.max_user_id_length)
    experiment_name, user_id = resolve_user(svc, req)
    experiment = svc.catalog.require(experiment_name)
    known = svc.catalog.metrics_of(experiment).feedback_names
    if req.metric not in known:
        raise InvalidRequest(f"experiment {experiment.name!r} has no metric {req.metric!r}; "
                             f"it takes outcomes for: {', '.join(known)}")
    variant = assigned_variant(svc, experiment.id, user_id)
    if variant is None:
        raise NotAssigned(
            f"user {user_id!r} was never assigned in experiment {experiment.name!r} "
            "(outside its traffic allocation, forced, or never sent to /predict)"
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
        "metric": req.metric,
    })
    svc.events.emit(event_kinds.FEEDBACK, event_kinds.feedback_fields(
        feedback_id, experiment.name, variant, svc.users.fields(user_id),
        req.outcome, req.metric,
    ))
    return {
        "feedback_id": feedback_id,
        "experiment": experiment.name,
        "variant": variant,
        "outcome": req.outcome,
        "metric": req.metric,
        "status": "accepted",
    }


def assigned_variant(svc: "Services", experiment_id: int, user_id: str) -> str | None:
    """The variant of the user's first exposure, from any store that knows it; None when none does.

    This worker's memory of confirmed assignments first (what MySQL said, without asking it
    again), then MySQL's record. A served user may not be in MySQL yet: their exposure can
    wait in this host's spool (MySQL was away, or is just back and the spool not yet
    drained), and the sticky cache holds what the request was served. Only when every store
    answered and none knows the user is the answer "never assigned"; when a store that
    could know is away, nobody can tell, and the caller is asked to retry
    (AssignmentUnknowable, a 503).
    """
    if svc.memory is not None and (remembered := svc.memory.recall(experiment_id, user_id)) is not None:
        return remembered
    away = []
    try:
        variant = svc.recorder.find_assignment(experiment_id, user_id)
        if variant is not None:
            return variant
    except DatabaseUnavailable:
        away.append("MySQL")
    variant = svc.recorder.find_spooled(experiment_id, user_id)
    if variant is not None:
        return variant
    try:
        cached = svc.store.get(experiment_id, user_id)
        if cached is not None:
            return unconfirmed(cached) or cached  # a guess made while MySQL was away: the variant served
    except StoreUnavailable:
        away.append("Redis")
    if away:
        raise AssignmentUnknowable(
            f"{' and '.join(away)} cannot be asked for this user's variant right now; retry shortly")
    return None


def resolve_user(svc: "Services", req: FeedbackRequest) -> tuple[str, str]:
    """``(experiment, user_id)`` from the request id (kept in Redis) or from the body.

    A request id that cannot be looked up (Redis away, or restarted empty, or the id expired)
    is no reason to refuse an outcome whose body also names the user: the body's
    ``user_id`` and ``experiment`` are then used, exactly as when no request id is sent.
    """
    if req.request_id is None:
        return req.experiment, req.user_id
    try:
        found, redis_away = svc.requests.resolve(req.request_id), False
    except REDIS_ERRORS:  # a cluster's own errors too
        found, redis_away = None, True
    if found is None:
        if req.user_id is not None:
            return req.experiment or svc.config.default_experiment, req.user_id
        if redis_away:
            raise RequestIdsUnavailable(
                "request ids cannot be resolved while Redis is away; send user_id and experiment instead")
        raise UnknownRequest(f"request_id {req.request_id} is unknown or has expired")
    experiment, user_id = found
    if req.user_id is not None and req.user_id != user_id:
        raise InvalidRequest(f"request_id {req.request_id} was served to another user than user_id {req.user_id!r}; "
                             "send one of them, or both of the same request")
    if req.experiment is not None and req.experiment != experiment:
        raise InvalidRequest(f"request_id {req.request_id} belongs to experiment {experiment!r}, "
                             f"not {req.experiment!r}")
    return experiment, user_id
