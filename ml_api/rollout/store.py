"""Rollout rows in MySQL (``experiment_rollouts``): reading them, and the two hooks of the change history.

Kept free of the experiment repository (which calls ``rollout_snapshot`` and
``resume_rollout`` inside its change transaction); the changes themselves are in
``rollout.changes``.
"""

import json
import time
from dataclasses import dataclass, field
from typing import Any

from mysql.connector.abstracts import MySQLConnectionAbstract

from assigner import ExperimentStatus
from ml_api.rollout.guardrails import stored_thresholds
from ml_api.rollout.ramp import RampStep, steps_from_json

SELECT_STATES = (
    "SELECT e.id, e.name, e.status, e.default_variant, e.guardrails, r.shadow_model, r.shadow_percent, r.ramp,"
    " r.ramp_step, TIMESTAMPDIFF(MICROSECOND, r.step_started_at, CURRENT_TIMESTAMP(3)), r.guardrail_breach,"
    " r.guardrail_from_minute, COALESCE(p.stop_variations, 0)"
    " FROM experiments e LEFT JOIN experiment_rollouts r ON r.experiment_id = e.id"
    " LEFT JOIN experiment_plans p ON p.experiment_id = e.id"
)


# An experiment with guardrails gets its rollout row when it starts, so the guardrail window
# always has a first minute (one without guardrails is never paused and needs none).
ENSURE_GUARDED_ROW = (
    "INSERT INTO experiment_rollouts (experiment_id) SELECT id FROM experiments WHERE id = %s"
    " AND guardrails IS NOT NULL ON DUPLICATE KEY UPDATE experiment_id = experiment_id"
)
SNAPSHOT_BASELINE = (
    "INSERT INTO guardrail_baselines (experiment_id, variant, minute, latency_bucket, requests, errors, fallbacks)"
    " SELECT experiment_id, variant, minute, latency_bucket, requests, errors, fallbacks FROM request_stats"
    " WHERE experiment_id = %s AND minute = %s"
)


@dataclass(frozen=True)
class RolloutState:
    """An experiment's rollout settings as every worker sees them."""

    experiment_id: int
    experiment: str
    status: str
    default_variant: str
    guardrails: dict[str, float] = field(default_factory=dict)
    shadow_model: str | None = None
    shadow_percent: float = 0.0
    ramp: tuple[RampStep, ...] = ()
    ramp_step: int | None = None
    seconds_in_step: float | None = None
    breach: dict[str, Any] | None = None
    guardrail_from_minute: int = 0
    stop_variations: bool = False  # the plan lets a variation with a final stop verdict lose its traffic

    @property
    def mirrors(self) -> bool:
        return self.shadow_model is not None and self.shadow_percent > 0

    @property
    def running(self) -> bool:
        return self.status == ExperimentStatus.RUNNING.value


def _state(row: tuple) -> RolloutState:
    (experiment_id, name, status, default_variant, guardrails, shadow_model, shadow_percent, ramp, ramp_step,
     elapsed_us, breach, from_minute, stop_variations) = row
    return RolloutState(
        experiment_id=int(experiment_id),
        experiment=name,
        status=status,
        default_variant=default_variant,
        guardrails=stored_thresholds(guardrails)[0],  # a bad stored value: the results say why
        shadow_model=shadow_model,
        shadow_percent=float(shadow_percent or 0),
        ramp=steps_from_json(json.loads(ramp)) if ramp else (),
        ramp_step=ramp_step,
        seconds_in_step=elapsed_us / 1e6 if elapsed_us is not None else None,
        breach=json.loads(breach) if breach else None,
        guardrail_from_minute=int(from_minute or 0),
        stop_variations=bool(stop_variations),
    )


def load_states(conn: MySQLConnectionAbstract) -> dict[int, RolloutState]:
    """Rollout state of every experiment with a rollout row, guardrails or stop_variations, by experiment id."""
    cursor = conn.cursor()
    cursor.execute(SELECT_STATES + " WHERE r.experiment_id IS NOT NULL OR e.guardrails IS NOT NULL"
                   " OR p.stop_variations = 1")
    states = {state.experiment_id: state for state in map(_state, cursor.fetchall())}
    cursor.close()
    return states


def find_state(conn: MySQLConnectionAbstract, name: str) -> RolloutState | None:
    """One experiment's rollout state; None when there is no experiment of that name."""
    cursor = conn.cursor()
    cursor.execute(SELECT_STATES + " WHERE e.name = %s", (name,))
    row = cursor.fetchone()
    cursor.close()
    return _state(row) if row else None


def rollout_snapshot(conn: MySQLConnectionAbstract, experiment_id: int) -> dict[str, Any]:
    """``{"rollout": ...}`` for the change history; {} for an experiment that never had one."""
    cursor = conn.cursor()
    cursor.execute(SELECT_STATES + " WHERE e.id = %s AND r.experiment_id IS NOT NULL", (experiment_id,))
    row = cursor.fetchone()
    cursor.close()
    if row is None:
        return {}
    state = _state(row)
    return {"rollout": {"shadow": shadow_of(state), "ramp": ramp_of(state), "paused_by_guardrail": state.breach}}


def shadow_of(state: RolloutState) -> dict[str, Any] | None:
    """The shadow settings for the API and the history (None: no shadow)."""
    return {"model": state.shadow_model, "percent": state.shadow_percent} if state.shadow_model else None


def ramp_of(state: RolloutState) -> dict[str, Any] | None:
    """The ramp steps and the current step for the history (None: no ramp)."""
    if not state.ramp:
        return None
    return {"steps": [s.as_dict() for s in state.ramp], "step": state.ramp_step}


def resume_rollout(conn: MySQLConnectionAbstract, experiment_id: int, minute: int | None = None) -> None:
    """On a (re)start: forget the guardrail pause, restart the current ramp step's clock, and let the
    guardrails judge the requests served from now on.

    The guardrails count per minute; the counts of this minute so far (served before the
    pause) are kept as the baseline the guardrails subtract, so they judge what comes after
    the resume at once instead of from the next minute."""
    minute = int(time.time() // 60) if minute is None else minute
    cursor = conn.cursor()
    cursor.execute(ENSURE_GUARDED_ROW, (experiment_id,))
    cursor.execute(
        "UPDATE experiment_rollouts SET guardrail_breach = NULL, guardrail_from_minute = %s,"
        " step_started_at = IF(ramp IS NULL, NULL, CURRENT_TIMESTAMP(3)) WHERE experiment_id = %s",
        (minute, experiment_id),
    )
    cursor.execute("DELETE FROM guardrail_baselines WHERE experiment_id = %s", (experiment_id,))
    cursor.execute(SNAPSHOT_BASELINE, (experiment_id, minute))
