"""Every event the gateway emits: its action name and its fields, built one way.

Fields are nested objects in the shape of ``logstash/event.schema.json`` (``{"experiment":
{"name": …}}``, never dotted keys); a ``None`` value means "not known" and is left out when
the event is encoded (``events.without_none``). Action names are constants here, never
derived from a function's name, so renaming code cannot change what Kibana shows.
"""

from typing import Any

from assigner import Assignment, Experiment

PREDICT = "predict"
FEEDBACK = "feedback"
ERROR = "error"
EXPERIMENT_CHANGE = "experiment_change"
GUARDRAIL_BREACH = "guardrail_breach"
SHADOW_PREDICT = "shadow_predict"

Fields = dict[str, Any]

# ECS categorization (event.kind, event.category, event.type): the values ECS allows, chosen per
# kind of event here and nowhere else, so Kibana can filter "every change" or "every error" by
# the standard fields as well as by event.action.
KIND_EVENT, KIND_ALERT = "event", "alert"
WEB, CONFIGURATION, PROCESS = ["web"], ["configuration"], ["process"]
ACCESS, ERROR_TYPE, CHANGE, CREATION, INFO = ["access"], ["error"], ["change"], ["creation"], ["info"]
NANOS_PER_MS = 1_000_000


def ecs_event(outcome: str, kind: str, category: list[str], types: list[str], duration_ms: float | None = None) -> Fields:
    """The ``event`` group's ECS fields (the emitter adds id, action and dataset); ``event.duration``
    is in nanoseconds, as ECS defines it."""
    group: Fields = {"outcome": outcome, "kind": kind, "category": category, "type": types}
    if duration_ms is not None:
        group["duration"] = round(duration_ms * NANOS_PER_MS)
    return group


def predict_fields(request_id: str, user: Fields, experiment: Experiment, assignment: Assignment,
                   model: Fields, label: Any, probability: float | None, fallback: bool,
                   model_error: str | None, latency: dict[str, float]) -> Fields:
    """One served prediction (built on the request path: plain dicts; ``variant_weight`` is the definition's,
    as the assignment used it)."""
    fields: Fields = {
        "event": ecs_event("success", KIND_EVENT, WEB, ACCESS, latency["total_ms"]),
        "http": {"request": {"id": request_id, "method": "POST"}, "response": {"status_code": 200}},
        "url": {"path": "/predict"},
        "experiment": {
            "name": experiment.name,
            "variant": assignment.variant,
            "in_experiment": assignment.in_experiment,
            "fallback": fallback,
            "assignment_source": assignment.source.value,
            "variant_weight": variant_weight(experiment, assignment.variant),
        },
        "user": user,
        "model": model,
        "prediction": {"label": label} if probability is None else {"label": label, "probability": probability},
        "latency": latency,
    }
    if model_error:
        fields["error"] = {"type": "model_error", "message": model_error}
    return fields


def variant_weight(experiment: Experiment, variant: str) -> float | None:
    """The variant's configured share of the experiment's users (0..1), which Kibana draws beside the
    observed split; None for a name the definition does not list."""
    total = sum(v.weight for v in experiment.variants)
    for candidate in experiment.variants:
        if candidate.name == variant:
            return candidate.weight / total if total > 0 else None
    return None


def error_fields(request_id: str, method: str, path: str, status: int, body: Fields, known: Fields) -> Fields:
    """A failed /predict or /feedback; ``known`` holds the groups the failing code knew (``experiment``)."""
    return {
        "event": ecs_event("failure", KIND_EVENT, WEB, ERROR_TYPE),
        "http": {"request": {"id": request_id, "method": method}, "response": {"status_code": status}},
        "url": {"path": path},
        "error": {"type": body.get("error", "http_error"), "message": body.get("detail")},
        **known,
    }


def failed_experiment(experiment: Experiment, assignment: Assignment) -> Fields:
    """The ``known`` groups of a /predict that failed after its user was assigned."""
    return {"experiment": {"name": experiment.name, "variant": assignment.variant,
                           "in_experiment": assignment.in_experiment}}


def model_load_error_fields(model: str, version: str | None, message: str) -> Fields:
    """A model that failed to load in a worker (at boot or after a reload)."""
    return {
        "event": ecs_event("failure", KIND_EVENT, PROCESS, ERROR_TYPE),
        "model": {"name": model, "version": version},
        "error": {"type": "model_load_error", "message": message},
    }


def feedback_fields(feedback_id: str, experiment: str, variant: str, user: Fields, outcome: float,
                    metric: str = "outcome") -> Fields:
    """An outcome accepted for a user's variant, for one of the experiment's metrics."""
    return {
        "event": ecs_event("success", KIND_EVENT, WEB, ACCESS),
        "http": {"request": {"id": feedback_id, "method": "POST"}, "response": {"status_code": 202}},
        "url": {"path": "/feedback"},
        "experiment": {"name": experiment, "variant": variant},
        "user": user,
        "feedback": {"outcome": outcome, "metric": metric},
    }


def change_fields(experiment: str, action: str, actor: str, summary: str, before: Fields | None,
                  after: Fields) -> Fields:
    """A committed change of an experiment (``change_events`` builds it from the history's record)."""
    return {
        "event": ecs_event("success", KIND_EVENT, CONFIGURATION, CREATION if before is None else CHANGE),
        "experiment": {"name": experiment},
        "change": {"actor": actor, "action": action, "summary": summary, "before": before, "after": after},
    }


def breach_fields(experiment: str, variant: str, guardrail: str, observed: float, threshold: float,
                  requests: int, description: str) -> Fields:
    """A guardrail that paused an experiment (emitted by the one worker that paused it)."""
    return {
        "event": ecs_event("failure", KIND_ALERT, CONFIGURATION, CHANGE),
        "experiment": {"name": experiment, "variant": variant},
        "guardrail": {"name": guardrail, "observed": observed, "threshold": threshold, "requests": requests},
        "change": {"actor": "guardrail", "action": "guardrail_pause"},
        "error": {"type": "guardrail_breach", "message": description},
    }


def shadow_fields(request_id: str, experiment: str, variant: str, in_experiment: bool, user: Fields,
                  model: str, version: str | None, label: Any, probability: float | None,
                  served_model: str, served_label: Any, agrees: bool | None, model_ms: float,
                  error: str | None) -> Fields:
    """One shadow prediction beside the served one."""
    return {
        "event": ecs_event("failure" if error else "success", KIND_EVENT, WEB, ERROR_TYPE if error else INFO, model_ms),
        "http": {"request": {"id": request_id}},
        "experiment": {"name": experiment, "variant": variant, "in_experiment": in_experiment},
        "user": user,
        "model": {"name": model, "version": version},
        "prediction": {"label": label, "probability": probability},
        "shadow": {"served_model": served_model, "served_label": served_label, "agrees": agrees},
        "latency": {"model_ms": model_ms},
        "error": {"type": "shadow_model_error" if error else None, "message": error},
    }
