"""Safe rollouts in one worker: shadow mirroring on the request path, and the rollout thread.

The rollout thread (one per gunicorn worker, started by ``post_worker_init`` before the
worker serves) runs ``tick`` every CONFIG_REFRESH_SECONDS:

1. reload every experiment's rollout state (shadow, ramp, guardrails) from MySQL, which
   the request path reads without touching MySQL;
2. write the shadow predictions kept since the last tick;
3. advance every running ramp whose step has lasted its minimum duration;
4. pause every running experiment whose variation breaches a guardrail, judged on the
   per-minute request counts all workers share in MySQL (``request_stats``) over the
   current and the previous minute.

Steps 3 and 4 run in every worker of every host: they are compare-and-set changes
(rollout_changes), so exactly one worker applies each advance and each pause, and only
that worker emits the event and counts the breach. A worker that exits gracefully writes
its last shadow predictions first (``close``, from gunicorn's ``worker_exit``).
"""

import logging
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, current_app

from assigner import Assignment, Experiment, ExperimentStatus
from ml_api import metrics
from ml_api.background import PeriodicTask
from ml_api.db import DatabaseUnavailable
from ml_api.models import LoadedModel, Prediction
from ml_api.rollout_changes import RAMP_ACTOR, RolloutRepository
from ml_api.rollout_guardrails import Breach, first_breach, window_start
from ml_api.rollout_ramp import is_due
from ml_api.rollout_shadow import ShadowJob, ShadowMirror, is_mirrored
from ml_api.rollout_store import RolloutState
from ml_api.services import Services
from ml_api.validation import PredictRequest

log = logging.getLogger(__name__)

EXTENSION = "rollout"


class Rollout:
    """This worker's rollout state, shadow mirror and rollout thread."""

    def __init__(self, svc: Services, clock: Callable[[], float] = time.time) -> None:
        self.svc = svc
        self.repo = RolloutRepository(svc.experiments, svc.db, svc.models.names)
        self.shadow = ShadowMirror(svc.models, svc.events, svc.config.log_raw_user_id)
        self._clock = clock
        self._states: dict[int, RolloutState] = {}
        self._loop = PeriodicTask("rollout", self.tick, svc.config.config_refresh_seconds)

    def mirror(self, experiment: Experiment, assignment: Assignment, req: PredictRequest, request_id: str,
               served: LoadedModel, prediction: Prediction) -> None:
        """Hand a served request to the shadow model if its user is in the mirrored share; never blocks."""
        state = self._states.get(experiment.id)
        if state is None or not state.mirrors or not is_mirrored(experiment.salt, req.user_id, state.shadow_percent):
            return
        self.shadow.submit(ShadowJob(
            request_id=request_id, experiment_id=experiment.id, experiment=experiment.name,
            variant=assignment.variant, in_experiment=assignment.in_experiment, user_id=req.user_id,
            features=req.features, served_model=served.name, served_label=prediction.label,
            shadow_model=state.shadow_model,
        ))

    def paused_by_guardrail(self) -> list[dict[str, Any]]:
        """Experiments a guardrail paused (and nobody resumed yet), as last loaded."""
        return [{"experiment": s.experiment, **s.breach} for s in self._states.values()
                if s.breach and s.status == ExperimentStatus.PAUSED.value]

    def start(self) -> None:
        """Load the state once, then keep ticking in a daemon thread (idempotent)."""
        if not self._loop.is_running():
            self.tick()
        self._loop.ensure_started()

    def close(self, timeout: float = 2.0) -> None:
        """Let running shadow predictions finish (briefly), then write what is kept."""
        self.shadow.wait_idle(timeout)
        self._run_step(self._flush_shadow)

    def tick(self) -> None:
        """One round of the rollout thread (see the module docstring); each step survives the others' failures."""
        for step in (self._refresh, self._flush_shadow, self._advance_ramps, self._check_guardrails):
            self._run_step(step)

    @staticmethod
    def _run_step(step: Callable[[], None]) -> None:
        """Run one step; log its failure rather than end the thread."""
        try:
            step()
        except DatabaseUnavailable as exc:
            log.debug("rollout: %s skipped, MySQL unavailable: %s", step.__name__, exc)
        except Exception:  # a failed statement, or a bug, must not end ramps and guardrails for good
            log.exception("rollout: %s failed", step.__name__)

    def _refresh(self) -> None:
        self._states = self.repo.states()

    def _flush_shadow(self) -> None:
        self.shadow.flush(self.svc.db)

    def _advance_ramps(self) -> None:
        for state in list(self._states.values()):
            due = state.running and state.ramp_step is not None and state.seconds_in_step is not None
            if due and is_due(state.ramp, state.ramp_step, state.seconds_in_step) and self.repo.advance_ramp(state):
                self._emit_change(state.experiment, "ramp_advance", RAMP_ACTOR)

    def _check_guardrails(self) -> None:
        minute = int(self._clock() // 60)
        for state in list(self._states.values()):
            if not state.running or not state.guardrails:
                continue
            window = self.repo.window(state.experiment_id, window_start(minute, state.guardrail_from_minute))
            breach = first_breach(state.guardrails, window, state.default_variant)
            if breach is not None and self.repo.pause_for_breach(state, breach, minute):
                self._report_breach(state.experiment, breach)

    def _report_breach(self, experiment: str, breach: Breach) -> None:
        """The winner of a pause (only it) counts the breach and emits the event."""
        log.warning("guardrail paused experiment %r: %s", experiment, breach.describe())
        metrics.GUARDRAIL_BREACHES.labels(experiment, breach.guardrail).inc()
        self.svc.events.emit("guardrail_breach", {
            "event.outcome": "failure",
            "experiment.name": experiment,
            "experiment.variant": breach.variant,
            "guardrail.name": breach.guardrail,
            "guardrail.observed": breach.observed,
            "guardrail.threshold": breach.threshold,
            "guardrail.requests": breach.requests,
            "change.actor": "guardrail",
            "change.action": "guardrail_pause",
            "error.type": "guardrail_breach",
            "error.message": breach.describe(),
        })

    def _emit_change(self, experiment: str, action: str, actor: str) -> None:
        self.svc.events.emit("experiment_change", {
            "event.outcome": "success",
            "experiment.name": experiment,
            "change.actor": actor,
            "change.action": action,
        })


def init_app(app: Flask) -> None:
    """Give the app its Rollout (after ``services.init_app``); gunicorn workers start its thread."""
    app.extensions[EXTENSION] = Rollout(app.extensions["ml_api"])


def rollout() -> Rollout:
    """The current app's Rollout (inside a request or app context)."""
    return current_app.extensions[EXTENSION]


def of_worker(app: Any) -> Rollout | None:
    """The Rollout of a gunicorn worker's app (None before the app loaded)."""
    return getattr(app, "extensions", {}).get(EXTENSION)
