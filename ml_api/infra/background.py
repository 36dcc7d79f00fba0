"""One periodic daemon thread per worker process, started on first use (after gunicorn's fork)."""

import logging
import os
import threading
from collections.abc import Callable

from ml_api.errors import DependencyUnavailable

log = logging.getLogger(__name__)

_pid = os.getpid()


def current_pid() -> int:
    """``os.getpid()`` without its system call (glibc no longer caches it): asked on every request."""
    return _pid


def _note_fork() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_note_fork)


class PeriodicTask:
    """Runs ``task`` every ``interval`` seconds; a failing run is logged and retried next time."""

    def __init__(self, name: str, task: Callable[[], object], interval: float) -> None:
        self.name = name
        self._task = task
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def ensure_started(self) -> None:
        """Start the thread in this process, once. Cheap enough to call on every request."""
        if self.is_running():
            return  # the common case: no lock taken
        with self._lock:
            if not self.is_running():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """End the thread after its current run (worker shutdown, tests)."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._task()
            except DependencyUnavailable as exc:  # expected while MySQL or Redis is away: one line, no trace
                log.warning("%s: %s; will retry", self.name, exc)
            except Exception:  # keep the thread alive: what it had to do stays for the next run
                log.warning("%s: run failed, will retry", self.name, exc_info=True)
