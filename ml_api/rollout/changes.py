"""Changing an experiment's rollout: shadow, ramp, and the automatic ramp advance and guardrail pause.

Every change goes through ``ExperimentRepository.apply_change``: one transaction that locks the
experiment row, applies the change, bumps ``version`` (which every worker polls) and
appends a history row whose before/after snapshots include the rollout. The two automatic
changes are compare-and-set updates inside that transaction, so with any number of
workers and hosts trying at once exactly one succeeds and the others roll back:

* a ramp advance: ``ramp_step = ramp_step + 1 WHERE ramp_step = <seen> AND step_started_at
  <= NOW(3) - <min duration>`` (MySQL's clock, so host clocks do not matter);
* a guardrail pause: ``status = 'paused' WHERE status = 'running'``.
"""

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from mysql.connector.abstracts import MySQLConnectionAbstract

from assigner import Experiment, ExperimentStatus
from ml_api.errors import InvalidDefinition, UnknownExperiment
from ml_api.experiments.repository import ExperimentRepository
from ml_api.infra.database import Database
from ml_api.rollout.guardrails import Breach
from ml_api.rollout.ramp import parse_ramp
from ml_api.rollout.store import RolloutState, find_state, load_states
from ml_api.telemetry.request_stats import RequestSums

RAMP_ACTOR = "ramp"
GUARDRAIL_ACTOR = "guardrail"
VERDICT_ACTOR = "verdict"

ENSURE_ROW = (
    "INSERT INTO experiment_rollouts (experiment_id) VALUES (%s) ON DUPLICATE KEY UPDATE experiment_id = experiment_id"
)
SET_SHADOW = "UPDATE experiment_rollouts SET shadow_model = %s, shadow_percent = %s WHERE experiment_id = %s"
CLEAR_SHADOW = "UPDATE experiment_rollouts SET shadow_model = NULL, shadow_percent = 0 WHERE experiment_id = %s"
SET_RAMP = (
    "UPDATE experiment_rollouts SET ramp = %s, ramp_step = 0, step_started_at = CURRENT_TIMESTAMP(3)"
    " WHERE experiment_id = %s"
)
CLEAR_RAMP = (
    "UPDATE experiment_rollouts SET ramp = NULL, ramp_step = NULL, step_started_at = NULL WHERE experiment_id = %s"
)
ADVANCE_RAMP = (
    "UPDATE experiment_rollouts SET ramp_step = ramp_step + 1, step_started_at = CURRENT_TIMESTAMP(3)"
    " WHERE experiment_id = %s AND ramp_step = %s"
    " AND step_started_at <= CURRENT_TIMESTAMP(3) - INTERVAL %s MICROSECOND"
)
SET_BREACH = (
    "UPDATE experiment_rollouts SET guardrail_breach = %s, guardrail_from_minute = %s WHERE experiment_id = %s"
)
PAUSE_IF_RUNNING = "UPDATE experiments SET status = 'paused' WHERE id = %s AND status = 'running'"
# A variation loses its traffic only with a recorded final stop verdict, and only once.
STOP_VARIATION = (
    "UPDATE variants v JOIN experiment_verdicts d ON d.experiment_id = v.experiment_id AND d.subject = v.name"
    " SET v.weight = 0 WHERE v.experiment_id = %s AND v.name = %s AND v.weight > 0 AND d.verdict = 'stop'"
)
# Requests per variant and latency bucket since a minute, less the baseline taken at the last
# (re)start (the counts its minute held then: served before it, they are not judged again).
WINDOW = (
    "SELECT variant, latency_bucket, SUM(requests), SUM(errors), SUM(fallbacks) FROM ("
    " SELECT variant, latency_bucket, CAST(requests AS SIGNED) AS requests, CAST(errors AS SIGNED) AS errors,"
    " CAST(fallbacks AS SIGNED) AS fallbacks FROM request_stats WHERE experiment_id = %s AND minute >= %s"
    " UNION ALL SELECT variant, latency_bucket, -CAST(requests AS SIGNED), -CAST(errors AS SIGNED),"
    " -CAST(fallbacks AS SIGNED) FROM guardrail_baselines WHERE experiment_id = %s AND minute >= %s"
    ") counted GROUP BY variant, latency_bucket"
)

Change = Callable[[MySQLConnectionAbstract, Experiment], None]


class ChangeRaced(Exception):
    """Another worker made this automatic change first (or it is no longer due): roll back."""


class RolloutRepository:
    """Shadow, ramp and guardrail-pause changes, each one history-logged experiment change."""

    def __init__(self, experiments: ExperimentRepository, db: Database, known_models: Iterable[str]) -> None:
        self._experiments = experiments
        self._db = db
        self._known_models = set(known_models)

    def states(self) -> dict[int, RolloutState]:
        with self._db.connection() as conn:
            return load_states(conn)

    def state(self, name: str) -> RolloutState:
        """One experiment's rollout state (UnknownExperiment when there is none)."""
        with self._db.connection() as conn:
            state = find_state(conn, name)
        if state is None:
            raise UnknownExperiment(name)
        return state

    def set_shadow(self, name: str, model: Any, percent: Any, actor: str) -> Experiment:
        """Mirror ``percent`` % of the experiment's users to ``model`` (a model named in api.env)."""
        if not isinstance(model, str) or model not in self._known_models:
            raise InvalidDefinition(f"unknown shadow model {model!r}; configured: {sorted(self._known_models)}")
        # Stored with four decimals: a share that would round to 0 would mirror nobody.
        if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not 0.0001 <= percent <= 100:
            raise InvalidDefinition(
                f"shadow percent must be a number above 0 and at most 100 (0.0001 at least), got {str(percent)[:40]}"
            )
        return self._update(name, "set_shadow", actor, SET_SHADOW, (model, round(percent, 4)))

    def clear_shadow(self, name: str, actor: str) -> Experiment:
        return self._update(name, "clear_shadow", actor, CLEAR_SHADOW, ())

    def set_ramp(self, name: str, steps: Any, actor: str) -> Experiment:
        """Start a ramp: step 0's allocation applies now, later steps when each is due."""
        parsed = parse_ramp(steps)

        def change(conn: MySQLConnectionAbstract, before: Experiment) -> None:
            _set_allocation(conn, before.id, parsed[0].allocation)
            _update_row(conn, before.id, SET_RAMP, (json.dumps([s.as_dict() for s in parsed]),))

        return self._experiments.apply_change(name, "set_ramp", actor, change)

    def clear_ramp(self, name: str, actor: str) -> Experiment:
        """Stop ramping; the allocation stays where the ramp left it."""
        return self._update(name, "clear_ramp", actor, CLEAR_RAMP, ())

    def advance_ramp(self, state: RolloutState) -> bool:
        """Apply the step after ``state.ramp_step`` if it is due; False when another worker did (or it is not due)."""
        current = state.ramp_step
        if current is None or current + 1 >= len(state.ramp):
            return False
        min_microseconds = round(state.ramp[current].min_seconds * 1e6)

        def change(conn: MySQLConnectionAbstract, before: Experiment) -> None:
            if before.status is not ExperimentStatus.RUNNING:
                raise ChangeRaced("not running")
            cursor = conn.cursor()
            cursor.execute(ADVANCE_RAMP, (before.id, current, min_microseconds))
            if cursor.rowcount != 1:
                raise ChangeRaced("advanced already, or not due")
            _set_allocation(conn, before.id, state.ramp[current + 1].allocation)

        return self._automatic(state.experiment, "ramp_advance", RAMP_ACTOR, change)

    def pause_for_breach(self, state: RolloutState, breach: Breach, minute: int) -> bool:
        """Pause a running experiment for ``breach``; False when it was no longer running (another worker won)."""

        def change(conn: MySQLConnectionAbstract, before: Experiment) -> None:
            cursor = conn.cursor()
            cursor.execute(PAUSE_IF_RUNNING, (before.id,))
            if cursor.rowcount != 1:
                raise ChangeRaced("not running")
            # Requests of this minute and earlier led to the pause; after a resume they do not count again.
            _update_row(conn, before.id, SET_BREACH, (json.dumps(breach.as_dict()), minute + 1))

        return self._automatic(state.experiment, "guardrail_pause", GUARDRAIL_ACTOR, change)

    def stop_variation(self, name: str, variant: str) -> bool:
        """Set a variation's weight to 0 because its final verdict is ``stop`` (history action
        ``stop_variation``, actor ``verdict``); False when it had no traffic left or no such verdict.
        Users assigned to it before keep it (assignments are sticky); new users go to the others."""

        def change(conn: MySQLConnectionAbstract, before: Experiment) -> None:
            if variant == before.default_variant:
                raise ChangeRaced("the control keeps its traffic")
            cursor = conn.cursor()
            cursor.execute(STOP_VARIATION, (before.id, variant))
            if cursor.rowcount != 1:
                raise ChangeRaced("stopped already, or no stop verdict")

        return self._automatic(name, "stop_variation", VERDICT_ACTOR, change)

    def window(self, experiment_id: int, since_minute: int) -> dict[str, RequestSums]:
        """Requests per variant from ``since_minute`` on, summed over every worker and host, less the
        counts the last (re)start found in its minute."""
        with self._db.connection() as conn:
            cursor = conn.cursor()
            cursor.execute(WINDOW, (experiment_id, since_minute, experiment_id, since_minute))
            rows = cursor.fetchall()
        window: dict[str, RequestSums] = defaultdict(RequestSums)
        for variant, bucket, *counts in rows:
            requests, errors, fallbacks = map(int, counts)
            if requests <= 0:  # all of it before the resume
                continue
            sums = window[variant]
            sums.latency_buckets[int(bucket)] = requests
            sums.requests, sums.errors, sums.fallbacks = (
                sums.requests + requests, sums.errors + errors, sums.fallbacks + fallbacks)
        return dict(window)

    def _update(self, name: str, action: str, actor: str, statement: str, params: tuple) -> Experiment:
        def change(conn: MySQLConnectionAbstract, before: Experiment) -> None:
            _update_row(conn, before.id, statement, params)

        return self._experiments.apply_change(name, action, actor, change)

    def _automatic(self, name: str, action: str, actor: str, change: Change) -> bool:
        try:
            self._experiments.apply_change(name, action, actor, change)
        except ChangeRaced:
            return False
        return True


def _update_row(conn: MySQLConnectionAbstract, experiment_id: int, statement: str, params: tuple) -> None:
    """Run one of the UPDATE statements above on the experiment's row, creating the row first."""
    cursor = conn.cursor()
    cursor.execute(ENSURE_ROW, (experiment_id,))
    cursor.execute(statement, (*params, experiment_id))


def _set_allocation(conn: MySQLConnectionAbstract, experiment_id: int, allocation: float) -> None:
    conn.cursor().execute("UPDATE experiments SET traffic_allocation = %s WHERE id = %s", (allocation, experiment_id))
