"""Safe rollouts in one worker: shadow mirroring on the request path, and the rollout thread.

The rollout thread (one per gunicorn worker, started with the worker's other threads by
``Services.start`` before the worker serves) runs ``tick`` every CONFIG_REFRESH_SECONDS:

1. reload every experiment's rollout state (shadow, ramp, guardrails) from MySQL, which
   the request path reads without touching MySQL;
2. write the shadow predictions kept since the last tick;
3. advance every running ramp whose step has lasted its minimum duration;
4. pause every running experiment whose variation breaches a guardrail, judged on the
   per-minute request counts all workers share in MySQL (``request_stats``) over the
   current and the previous minute;
5. every VERDICT_CHECK_SECONDS, judge the running experiments whose plan opts in
   (``stop_variations``): the results record any new verdict, and a variation whose final
   verdict is ``stop`` gets weight 0 while the others keep running.

Steps 3 to 5 run in every worker of every host: they are compare-and-set changes
(``rollout.changes``), so exactly one worker applies each advance and each pause, and only
its repository reports the ``experiment_change`` (as for every change) and only it emits the
``guardrail_breach`` event and counts the breach. A worker that exits gracefully writes
its last shadow predictions first (``close``, from ``Services.stop``).
"""

import logging
import time
from collections.abc import Callable
from typing import Any

from assigner import Assignment, Experiment, ExperimentStatus
from ml_api.errors import DatabaseUnavailable
from ml_api.infra.background import PeriodicTask
from ml_api.infra.database import Database
from ml_api.rollout.changes import RolloutRepository
from ml_api.rollout.guardrails import Breach, first_breach, window_start
from ml_api.rollout.ramp import is_due
from ml_api.rollout.shadow import ShadowJob, ShadowMirror, is_mirrored
from ml_api.rollout.store import RolloutState
from ml_api.serving.models import LoadedModel, Prediction
from ml_api.serving.requests import PredictRequest
from ml_api.telemetry import event_kinds, metrics
from ml_api.telemetry.events import EventEmitter

log = logging.getLogger(__name__)


class Rollout:
    """This worker's rollout state, shadow mirror and rollout thread."""

    def __init__(self, repo: RolloutRepository, shadow: ShadowMirror, db: Database, events: EventEmitter,
                 interval_seconds: float, clock: Callable[[], float] = time.time,
                 stopped_variations: Callable[[str], list[str]] | None = None,
                 verdict_interval_seconds: float = 60.0) -> None:
        self.repo = repo
        # The variations of an experiment with a final stop verdict that still get traffic (it
        # records new verdicts): the results' judgement, handed in so rollout need not import results.
        self._stopped_variations = stopped_variations
        self._verdict_interval = verdict_interval_seconds
        self._last_verdict_check = -float("inf")
        self.shadow = shadow
        self._db = db
        self._events = events
        self._clock = clock
        self._states: dict[int, RolloutState] = {}
        self._loop = PeriodicTask("rollout", self.tick, interval_seconds)

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
        """Stop ticking, let running shadow predictions finish (briefly), then write what is kept."""
        self._loop.stop()
        self.shadow.wait_idle(timeout)
        self._run_step(self._flush_shadow)

    def tick(self) -> None:
        """One round of the rollout thread (see the module docstring); each step survives the others' failures."""
        for step in (self._refresh, self._flush_shadow, self._advance_ramps, self._check_guardrails,
                     self._stop_variations):
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
        self.shadow.flush(self._db)

    def _advance_ramps(self) -> None:
        for state in list(self._states.values()):
            due = state.running and state.ramp_step is not None and state.seconds_in_step is not None
            if due and is_due(state.ramp, state.ramp_step, state.seconds_in_step):
                self.repo.advance_ramp(state)

    def _check_guardrails(self) -> None:
        minute = int(self._clock() // 60)
        for state in list(self._states.values()):
            if not state.running or not state.guardrails:
                continue
            window = self.repo.window(state.experiment_id, window_start(minute, state.guardrail_from_minute))
            breach = first_breach(state.guardrails, window, state.default_variant)
            if breach is not None and self.repo.pause_for_breach(state, breach, minute):
                self._report_breach(state.experiment, breach)

    def _stop_variations(self) -> None:
        now = self._clock()
        if self._stopped_variations is None or now - self._last_verdict_check < self._verdict_interval:
            return
        self._last_verdict_check = now
        for state in list(self._states.values()):
            if not (state.running and state.stop_variations):
                continue
            for variant in self._stopped_variations(state.experiment):
                if self.repo.stop_variation(state.experiment, variant):
                    log.warning("verdict: variation %r of %r stopped, its weight is now 0", variant, state.experiment)

    def _report_breach(self, experiment: str, breach: Breach) -> None:
        """The winner of a pause (only it) counts the breach and emits the event."""
        log.warning("guardrail paused experiment %r: %s", experiment, breach.describe())
        metrics.GUARDRAIL_BREACHES.labels(experiment, breach.guardrail).inc()
        self._events.emit(event_kinds.GUARDRAIL_BREACH, event_kinds.breach_fields(
            experiment, breach.variant, breach.guardrail, breach.observed, breach.threshold, breach.requests,
            breach.describe()))
