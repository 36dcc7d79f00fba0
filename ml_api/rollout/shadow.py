"""Shadow (mirror) traffic: a candidate model answers a share of requests off the request path.

Which users are mirrored is decided by the user's *shadow* bucket (``shadow:{salt}:{user}``),
so the same users are mirrored on every request, worker and host. The request thread only
hands a job to a small per-worker pool and returns: the caller's answer, latency and status
never depend on the shadow model. When the pool is full (a slow or hanging shadow model)
the job is skipped and counted (``abtest_shadow_skipped_total``), never queued without
bound. Each shadow prediction emits one ``shadow_predict`` event beside the served
prediction and is kept in memory until the rollout thread writes it to
``shadow_predictions`` (at most MAX_PENDING_ROWS wait; beyond that rows are dropped and
counted, as they are monitoring data, not the record).
"""

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from assigner import in_traffic
from assigner.hashing import shadow_bucket
from ml_api.infra.database import Database
from ml_api.infra.native_threads import offload
from ml_api.serving.inputs import Features
from ml_api.serving.models import ModelError, ModelRegistry
from ml_api.serving.requests import label_text
from ml_api.telemetry import event_kinds, metrics
from ml_api.telemetry.events import EventEmitter
from ml_api.telemetry.pseudonyms import UserPseudonyms

log = logging.getLogger(__name__)

SHADOW_THREADS = 2
# Jobs running or waiting per worker; a shadow model that hangs costs at most this many.
SHADOW_QUEUE_LIMIT = 64
MAX_PENDING_ROWS = 10_000
MAX_ERROR_LENGTH = 255
INSERT_SHADOW = (
    "INSERT INTO shadow_predictions (request_id, experiment_id, user_id, variant, served_model, served_label,"
    " shadow_model, shadow_label, shadow_error, shadow_ms, created_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE request_id = request_id"
)


def is_mirrored(salt: str, user_id: str, percent: float) -> bool:
    """Whether the user's requests go to the shadow model too (stable, proportional to ``percent``)."""
    return in_traffic(percent / 100, shadow_bucket(salt, user_id))


@dataclass(frozen=True)
class ShadowJob:
    """One served request to replay on the shadow model."""

    request_id: str
    experiment_id: int
    experiment: str
    variant: str
    in_experiment: bool
    user_id: str
    features: Features
    served_model: str
    served_label: Any
    shadow_model: str


class ShadowMirror:
    """This worker's bounded shadow pool and the shadow predictions not yet written."""

    def __init__(self, models: ModelRegistry, events: EventEmitter, users: UserPseudonyms,
                 threads: int = SHADOW_THREADS, queue_limit: int = SHADOW_QUEUE_LIMIT) -> None:
        self._models = models
        self._events = events
        self._users = users
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="shadow")
        self._slots = threading.BoundedSemaphore(queue_limit)
        self._in_flight = 0
        self._idle = threading.Condition()
        self._rows: list[tuple] = []
        self._rows_lock = threading.Lock()

    def submit(self, job: ShadowJob) -> bool:
        """Queue ``job`` unless the pool is full (then skip and count); never blocks."""
        if not self._slots.acquire(blocking=False):
            metrics.SHADOW_SKIPPED.labels(job.experiment, "pool_full").inc()
            return False
        with self._idle:
            self._in_flight += 1
        self._executor.submit(self._run, job).add_done_callback(self._done)
        return True

    def _done(self, _: Future) -> None:
        self._slots.release()
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no job runs or waits (tests, shutdown); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def _run(self, job: ShadowJob) -> None:
        started = time.perf_counter()
        version, label, probability, error = None, None, None, None
        try:
            model = self._models.get(job.shadow_model)
            version = model.version
            # Under gevent this pool's jobs are greenlets: the model itself runs on a native thread,
            # so a hanging or CPU-bound shadow model never holds the worker's event loop.
            prediction = offload(model.predict, job.features)
            label, probability = prediction.label, prediction.probability
        except ModelError as exc:
            error = str(exc)
        elapsed_ms = (time.perf_counter() - started) * 1000
        agrees = None if error else label_text(label) == label_text(job.served_label)
        result = "error" if error else "agree" if agrees else "disagree"
        metrics.SHADOW_PREDICTIONS.labels(job.experiment, job.shadow_model, result).inc()
        self._keep((
            job.request_id, job.experiment_id, job.user_id, job.variant, job.served_model,
            label_text(job.served_label), job.shadow_model, None if error else label_text(label),
            error[:MAX_ERROR_LENGTH] if error else None, elapsed_ms, datetime.now(timezone.utc).replace(tzinfo=None),
        ), job.experiment)
        self._events.emit(event_kinds.SHADOW_PREDICT, event_kinds.shadow_fields(
            job.request_id, job.experiment, job.variant, job.in_experiment,
            self._users.fields(job.user_id), job.shadow_model, version, label,
            probability, job.served_model, job.served_label, agrees, elapsed_ms,
            error,
        ))

    def _keep(self, row: tuple, experiment: str) -> None:
        with self._rows_lock:
            if len(self._rows) < MAX_PENDING_ROWS:
                self._rows.append(row)
                return
        metrics.SHADOW_SKIPPED.labels(experiment, "records_full").inc()

    def flush(self, db: Database) -> int:
        """Write the kept shadow predictions in one statement; on failure they stay for the next try."""
        with self._rows_lock:
            rows, self._rows = self._rows, []
        if not rows:
            return 0
        try:
            with db.connection() as conn:
                conn.cursor().executemany(INSERT_SHADOW, rows)
        except BaseException:
            with self._rows_lock:
                self._rows = (rows + self._rows)[:MAX_PENDING_ROWS]
            raise
        return len(rows)
