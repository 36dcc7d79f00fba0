"""Per-minute request counts and latency histograms per variant, the data behind guardrails.

Each worker adds requests up in memory (``record`` costs a deque append; the sums are made
when they are read or written) and a daemon thread adds the sums to ``request_stats`` (per minute) and ``request_totals`` (per
experiment) every second, in one transaction. Rows are additive, so any number of workers
and hosts write into the same rows, and the results query sums them with GROUP BY. A
failed flush keeps its counts for the next one; counts recorded in the last second before
a worker dies are lost (they are monitoring data, not the record). Once an hour the
flusher deletes per-minute rows older than REQUEST_STATS_RETENTION_DAYS (the guardrails
read the last two minutes); ``request_totals`` keeps everything.

Latency is kept as a histogram with fixed, log-spaced bucket bounds (4 per doubling, about
19 % wide), so a percentile over any set of rows is computed from summed bucket counts:
bucket 0 holds latencies up to 0.25 ms, bucket k holds (LATENCY_BOUNDS_MS[k-1],
LATENCY_BOUNDS_MS[k]], and the last bucket everything above 16.4 s.
"""

import bisect
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ml_api.errors import DatabaseUnavailable
from ml_api.infra.background import PeriodicTask
from ml_api.infra.database import Database

log = logging.getLogger(__name__)

LATENCY_BOUNDS_MS: tuple[float, ...] = tuple(0.25 * 2 ** (k / 4) for k in range(65))
OVERFLOW_BUCKET = len(LATENCY_BOUNDS_MS)

ADD_COUNTS = (
    " ON DUPLICATE KEY UPDATE requests = requests + VALUES(requests), errors = errors + VALUES(errors),"
    " fallbacks = fallbacks + VALUES(fallbacks)"
)
UPSERT_MINUTES = (
    "INSERT INTO request_stats (experiment_id, variant, minute, latency_bucket, requests, errors, fallbacks)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s)" + ADD_COUNTS
)
# Old per-minute rows, one variant at a time: a range of the primary key, in small batches
# so that no delete holds many row locks while workers add their counts.
PRUNE_MINUTES = "DELETE FROM request_stats WHERE experiment_id = %s AND variant = %s AND minute < %s LIMIT %s"
PRUNE_BATCH_ROWS = 5000
PRUNE_INTERVAL_SECONDS = 3600.0
UPSERT_TOTALS = (
    "INSERT INTO request_totals (experiment_id, variant, latency_bucket, requests, errors, fallbacks)"
    " VALUES (%s, %s, %s, %s, %s, %s)" + ADD_COUNTS
)

# (experiment_id, variant, minute (Unix time DIV 60), latency bucket) -> [requests, errors, fallbacks]
Key = tuple[int, str, int, int]
Counts = dict[Key, list[int]]


def latency_bucket(latency_ms: float) -> int:
    """The histogram bucket of one latency."""
    return bisect.bisect_left(LATENCY_BOUNDS_MS, latency_ms)


def latency_percentile(bucket_counts: Mapping[int, int], quantile: float) -> float | None:
    """The ``quantile`` of a summed histogram, interpolated linearly inside its bucket; None if empty.

    Past the last bound the answer is that bound: the true value is at least that much.
    """
    total = sum(bucket_counts.values())
    if total <= 0:
        return None
    rank = quantile * total
    seen = 0
    for bucket in sorted(bucket_counts):
        count = bucket_counts[bucket]
        if count <= 0:
            continue
        if bucket >= OVERFLOW_BUCKET:
            return LATENCY_BOUNDS_MS[-1]
        if seen + count >= rank:
            low = LATENCY_BOUNDS_MS[bucket - 1] if bucket > 0 else 0.0
            return low + (LATENCY_BOUNDS_MS[bucket] - low) * (rank - seen) / count
        seen += count
    return LATENCY_BOUNDS_MS[-1]  # only reached through rounding of rank


@dataclass
class RequestSums:
    """Requests of one variant, with the summed latency histogram (bucket -> requests)."""

    requests: int = 0
    errors: int = 0
    fallbacks: int = 0
    latency_buckets: dict[int, int] = field(default_factory=dict)


class RequestStats:
    """The request counts of this worker not yet written to MySQL, and the thread that writes them."""

    def __init__(self, db: Database, interval: float = 1.0, clock: Callable[[], float] = time.time,
                 retention_minutes: int = 0) -> None:
        self._db = db
        self._clock = clock
        self._retention_minutes = retention_minutes  # 0: keep every per-minute row
        self._next_prune = 0.0  # the thread's first run prunes
        self._pending: Counts = {}
        self._queued: deque[tuple[Key, bool, bool]] = deque()  # recorded, not yet added to _pending
        self._lock = threading.Lock()
        self._flusher = PeriodicTask("request-stats-flusher", self.tick, interval)

    def record(self, experiment_id: int, variant: str, latency_ms: float, error: bool = False,
               fallback: bool = False) -> None:
        """Count one request of a variant (in memory; the flusher writes it)."""
        self._queued.append(((experiment_id, variant, int(self._clock() // 60), latency_bucket(latency_ms)),
                             error, fallback))

    def _add_queued(self) -> None:
        """Sum the recorded requests into the pending counts (callers hold the lock)."""
        while True:
            try:
                key, error, fallback = self._queued.popleft()
            except IndexError:
                return
            _add(self._pending, key, (1, int(error), int(fallback)))

    def pending(self) -> Counts:
        """A copy of the counts not yet written."""
        with self._lock:
            self._add_queued()
            return {key: list(counts) for key, counts in self._pending.items()}

    def tick(self) -> None:
        """One run of the flusher thread: the hourly prune when it is due, then the flush."""
        if self._retention_minutes and self._clock() >= self._next_prune:
            self._next_prune = self._clock() + PRUNE_INTERVAL_SECONDS
            try:
                self.prune()
            except DatabaseUnavailable:
                log.warning("old request statistics not pruned: MySQL unavailable; next try in an hour")
        self.flush()

    def flush(self) -> int:
        """Write pending counts in one transaction; on any failure they stay pending. Returns minute rows written."""
        with self._lock:
            self._add_queued()
            batch, self._pending = self._pending, {}
        if not batch:
            return 0
        totals: dict[tuple[int, str, int], list[int]] = {}
        for (experiment_id, variant, _, bucket), counts in batch.items():
            _add(totals, (experiment_id, variant, bucket), counts)
        try:
            with self._db.transaction() as conn:
                cursor = conn.cursor()
                # All minute rows, then all totals, each sorted: concurrent flushes of several
                # workers take their row locks in one order and cannot deadlock.
                cursor.executemany(UPSERT_MINUTES, [(*key, *counts) for key, counts in sorted(batch.items())])
                cursor.executemany(UPSERT_TOTALS, [(*key, *counts) for key, counts in sorted(totals.items())])
        except BaseException:
            with self._lock:
                for key, counts in batch.items():
                    _add(self._pending, key, counts)
            raise
        return len(batch)

    def prune(self) -> int:
        """Delete the per-minute rows older than the retention; returns how many."""
        oldest_kept = int(self._clock() // 60) - self._retention_minutes
        deleted = 0
        with self._db.connection() as conn:
            cursor = conn.cursor()
            cursor.execute("SELECT experiment_id, name FROM variants")
            for experiment_id, variant in cursor.fetchall():
                while True:
                    cursor.execute(PRUNE_MINUTES, (experiment_id, variant, oldest_kept, PRUNE_BATCH_ROWS))
                    deleted += cursor.rowcount
                    if cursor.rowcount < PRUNE_BATCH_ROWS:
                        break
        return deleted

    def start(self) -> None:
        """Start the flushing thread in this process (after gunicorn's fork), once."""
        self._flusher.ensure_started()

    def stop(self) -> None:
        self._flusher.stop()


def _add(into: dict, key: tuple, counts: Sequence[int]) -> None:
    """Add [requests, errors, fallbacks] to the counts under ``key``."""
    summed = into.setdefault(key, [0, 0, 0])
    for i, value in enumerate(counts):
        summed[i] += value
