"""The rollout as documents: the admin API / CLI view, and the results' ``shadow`` and ``rollout`` sections."""

import time
from typing import Any

from mysql.connector.abstracts import MySQLConnectionAbstract

from ml_api.errors import UnknownExperiment
from ml_api.infra.database import Database
from ml_api.rollout.changes import RolloutRepository
from ml_api.rollout.guardrails import effective_thresholds, observed, window_start
from ml_api.rollout.ramp import seconds_until_next
from ml_api.rollout.store import RolloutState, find_state, shadow_of
from ml_api.telemetry.request_stats import RequestSums

# Per shadow model: mirrored requests, shadow failures, agreements with the served label, and
# on requests whose feedback carried the true label (the latest label of each request, and
# only where the shadow answered) how often each model was right.
SHADOW_SUMMARY = (
    "SELECT s.shadow_model, COUNT(*), SUM(s.shadow_label IS NULL), SUM(s.shadow_label = s.served_label),"
    " COUNT(l.label), SUM(l.label = s.served_label), SUM(l.label = s.shadow_label)"
    " FROM shadow_predictions s LEFT JOIN feedback_labels l ON l.request_id = s.request_id"
    " AND s.shadow_label IS NOT NULL AND NOT EXISTS (SELECT 1 FROM feedback_labels n WHERE n.request_id = l.request_id"
    " AND (n.recorded_at, n.feedback_id) > (l.recorded_at, l.feedback_id))"
    " WHERE s.experiment_id = %s GROUP BY s.shadow_model ORDER BY s.shadow_model"
)


def ramp_progress(state: RolloutState) -> dict[str, Any] | None:
    """The ramp's steps, where it stands and when the next step is due (None: no ramp)."""
    if not state.ramp or state.ramp_step is None:
        return None
    step = state.ramp_step
    elapsed = state.seconds_in_step
    return {
        "steps": [s.as_dict() for s in state.ramp],
        "step": step,
        "allocation": state.ramp[step].allocation,
        "complete": step == len(state.ramp) - 1,
        "seconds_in_step": elapsed,
        "next_step_in_seconds": seconds_until_next(state.ramp, step, elapsed) if elapsed is not None else None,
    }


def guardrail_view(state: RolloutState, window: dict[str, RequestSums] | None) -> dict[str, Any]:
    """Thresholds, the pause (if a guardrail paused the experiment) and what the window shows per variant."""
    return {
        "thresholds": state.guardrails,
        "min_requests": effective_thresholds(state.guardrails)["min_requests"],
        "paused_by_guardrail": state.breach,
        "window": None if window is None else {
            variant: {"requests": sums.requests, **observed(sums)} for variant, sums in sorted(window.items())
        },
    }


def describe_rollout(repo: RolloutRepository, name: str) -> dict[str, Any]:
    """The rollout of experiment ``name`` for the admin API and the CLI, with the live guardrail window."""
    state = repo.state(name)
    since = window_start(int(time.time() // 60), state.guardrail_from_minute)
    return {
        "experiment": state.experiment,
        "status": state.status,
        "shadow": shadow_of(state),
        "ramp": ramp_progress(state),
        "guardrails": guardrail_view(state, repo.window(state.experiment_id, since)),
    }


def rollout_results(db: Database, name: str) -> dict[str, Any]:
    """The ``shadow`` and ``rollout`` sections of the results document of experiment ``name``."""
    with db.connection() as conn:
        state = find_state(conn, name)
        if state is None:
            raise UnknownExperiment(name)
        models = shadow_summary(conn, state.experiment_id)
    return {
        "shadow": {"current": shadow_of(state), "models": models},
        "rollout": {"ramp": ramp_progress(state), "guardrails": guardrail_view(state, None)},
    }


def shadow_summary(conn: MySQLConnectionAbstract, experiment_id: int) -> list[dict[str, Any]]:
    """Agreement with the served model, and accuracy of both on labelled requests, per shadow model."""
    cursor = conn.cursor()
    cursor.execute(SHADOW_SUMMARY, (experiment_id,))
    rows = cursor.fetchall()
    cursor.close()
    summary = []
    for model, *counts in rows:
        predictions, errors, agreements, labelled, served_correct, shadow_correct = (int(c or 0) for c in counts)
        answered = predictions - errors
        summary.append({
            "model": model,
            "predictions": predictions,
            "errors": errors,
            "agreements": agreements,
            "agreement_rate": agreements / answered if answered else None,
            "labelled": labelled,
            "served_correct": served_correct,
            "shadow_correct": shadow_correct,
            "served_accuracy": served_correct / labelled if labelled else None,
            "shadow_accuracy": shadow_correct / labelled if labelled else None,
        })
    return summary
