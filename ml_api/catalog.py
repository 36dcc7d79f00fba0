"""The in-process copy of experiment definitions, refreshed when MySQL says they changed.

Each worker checks a cheap fingerprint (``definitions_version``) at most every
``CONFIG_REFRESH_SECONDS`` and reloads all definitions when it moved, so a change made on
any host reaches every worker within that interval plus one request. When MySQL is
unreachable the last known definitions keep serving.
"""

import logging
import threading
import time
from collections.abc import Callable

from assigner import Experiment
from ml_api.db import Database, DatabaseUnavailable
from ml_api.experiment_repo import definitions_version, load_experiments

log = logging.getLogger(__name__)


class DefinitionsUnavailable(Exception):
    """No definitions were ever loaded and MySQL cannot be reached."""


class ExperimentCatalog:
    def __init__(self, db: Database, refresh_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._db = db
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._experiments: dict[str, Experiment] | None = None
        self._fingerprint: tuple[int, int] | None = None
        self._checked_at = float("-inf")
        self._lock = threading.Lock()
        self.last_error: str | None = None

    def get(self, name: str) -> Experiment | None:
        """The definition called ``name``, or None when there is none."""
        return self.all().get(name)

    def all(self) -> dict[str, Experiment]:
        self._refresh_if_due()
        if self._experiments is None:
            raise DefinitionsUnavailable(self.last_error or "experiment definitions not loaded")
        return self._experiments

    def _refresh_if_due(self) -> None:
        if not self._due():
            return
        with self._lock:  # one thread refreshes; the others wait for its result
            if self._due():
                self._refresh()

    def _due(self) -> bool:
        return self._experiments is None or self._clock() - self._checked_at >= self._refresh_seconds

    def _refresh(self) -> None:
        self._checked_at = self._clock()
        try:
            with self._db.connection() as conn:
                fingerprint = definitions_version(conn)
                if fingerprint != self._fingerprint or self._experiments is None:
                    self._experiments = load_experiments(conn)
                    self._fingerprint = fingerprint
            self.last_error = None
        except DatabaseUnavailable as exc:
            self.last_error = f"MySQL unavailable, serving last known definitions: {exc}"
            log.warning(self.last_error)
