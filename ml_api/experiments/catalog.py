"""The in-process copy of experiment definitions, refreshed when MySQL says they changed.

Each worker checks a cheap fingerprint (``definitions_version``) at most every
``CONFIG_REFRESH_SECONDS`` and reloads all definitions when it moved, so a change made on
any host is seen by every request, on every worker, that starts more than that interval
after the change was committed. When MySQL is unreachable the last known definitions keep
serving; they are also kept in a local snapshot file, so a worker that starts while MySQL
is away serves them too.
"""

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from assigner import Experiment
from ml_api.errors import DatabaseUnavailable, DefinitionsUnavailable, UnknownExperiment
from ml_api.experiments.definitions import describe, from_description
from ml_api.experiments.metrics import DEFAULT_METRICS, MetricSet, parse_metrics, read_all_metrics
from ml_api.experiments.repository import definitions_version, load_experiments
from ml_api.infra.database import Database

log = logging.getLogger(__name__)


class ExperimentCatalog:
    def __init__(
        self, db: Database, refresh_seconds: float, snapshot_path: Path, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._db = db
        self._snapshot_path = snapshot_path
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._experiments: dict[str, Experiment] | None = None
        self._metrics: dict[int, MetricSet] = {}  # declared metric sets by experiment id
        self._fingerprint: tuple[int, int] | None = None
        self._checked_at = float("-inf")
        self._lock = threading.Lock()
        self.last_error: str | None = None

    def get(self, name: str) -> Experiment | None:
        """The definition called ``name``, or None when there is none."""
        return self.all().get(name)

    def require(self, name: str) -> Experiment:
        """The definition called ``name``: UnknownExperiment when there is none,
        DefinitionsUnavailable when none could ever be loaded."""
        experiment = self.all().get(name)
        if experiment is None:
            raise UnknownExperiment(name)
        return experiment

    def metrics_of(self, experiment: Experiment) -> MetricSet:
        """The metrics ``experiment`` declares (the default ones when it declares none), as last loaded."""
        self._refresh_if_due()
        return self._metrics.get(experiment.id, DEFAULT_METRICS)

    def all(self) -> dict[str, Experiment]:
        self._refresh_if_due()
        if self._experiments is None:
            raise DefinitionsUnavailable(f"experiment definitions cannot be loaded: {self.last_error or 'never loaded'}")
        return self._experiments

    def _refresh_if_due(self) -> None:
        """Refresh when the last read began CONFIG_REFRESH_SECONDS ago or more.

        A request that finds a refresh due waits for it (one thread reads, the others wait on
        the lock, then find it no longer due), so no request that starts more than the
        interval after a change was committed is answered with definitions older than that
        change. The wait is bounded by MySQL's connect timeout, and by nothing at all once
        the pool's circuit breaker knows MySQL is away."""
        if not self._due():
            return
        with self._lock:
            if self._due():
                self._refresh()

    def _due(self) -> bool:
        return self._experiments is None or self._clock() - self._checked_at >= self._refresh_seconds

    def _refresh(self) -> None:
        started = self._clock()  # the read below sees every change committed before this moment
        try:
            with self._db.connection() as conn:
                fingerprint = definitions_version(conn)
                if fingerprint != self._fingerprint or self._experiments is None:
                    self._experiments = load_experiments(conn)
                    self._metrics = read_all_metrics(conn)
                    self._fingerprint = fingerprint
                    self._write_snapshot(self._experiments)
            self.last_error = None
        except DatabaseUnavailable as exc:
            self.last_error = f"MySQL unavailable, serving last known definitions: {exc}"
            log.warning(self.last_error)
            if self._experiments is None:
                self._experiments, self._metrics = self._read_snapshot() or (None, {})
        finally:
            self._checked_at = started  # only now: requests arriving meanwhile waited for this read

    def _write_snapshot(self, experiments: dict[str, Experiment]) -> None:
        data = [describe(e) | {"id": e.id}
                | ({"metrics": self._metrics[e.id].as_dict()} if e.id in self._metrics else {})
                for e in experiments.values()]
        temporary = self._snapshot_path.with_suffix(f".{os.getpid()}.tmp")
        try:
            self._snapshot_path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(json.dumps(data))
            temporary.replace(self._snapshot_path)  # atomic: readers see the old or the new file
        except OSError as exc:
            log.warning("could not write the definitions snapshot %s: %s", self._snapshot_path, exc)

    def _read_snapshot(self) -> tuple[dict[str, Experiment], dict[int, MetricSet]] | None:
        try:
            data = json.loads(self._snapshot_path.read_text())
        except (OSError, ValueError):
            return None
        log.warning("serving experiment definitions from the snapshot %s", self._snapshot_path)
        return ({item["name"]: from_description(item) for item in data},
                {int(item["id"]): parse_metrics(item["metrics"]) for item in data if "metrics" in item})
