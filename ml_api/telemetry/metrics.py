"""Prometheus metrics, correct across gunicorn workers (prometheus_client multiprocess mode).

gunicorn.conf.py points ``PROMETHEUS_MULTIPROC_DIR`` at an empty directory before any
worker imports this module; each worker then writes its samples to files there and
``GET /metrics`` (``ml_api.web.metrics``) sums them over every live (and dead) worker. Without that variable
(tests through Flask's client, a single process) the default registry is used.

Metric objects are module-level because that is how prometheus_client registers them;
label values are bounded (route rules, experiment/variant/model names from MySQL and
api.env), never raw paths or user ids.
"""

from bisect import bisect_left
from collections import deque
from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter, Histogram

from assigner import StoreUnavailable
from assigner.store import Entry

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

REQUESTS = Counter("abtest_http_requests_total", "HTTP requests by route and status", ["route", "method", "status"])
PREDICT_LATENCY = Histogram(
    "abtest_predict_latency_seconds", "Total /predict latency by experiment, variant and serving model",
    ["experiment", "variant", "model"], buckets=LATENCY_BUCKETS,
)
MODEL_LATENCY = Histogram(
    "abtest_model_latency_seconds", "Model prediction time by model", ["model"], buckets=LATENCY_BUCKETS,
)
FALLBACKS = Counter("abtest_fallbacks_total", "Predictions answered by control after the variant's model failed",
                    ["experiment", "variant"])
STICKY_LOOKUPS = Counter("abtest_sticky_lookups_total",
                         "Sticky assignments by where they came from (memory, redis = cache hits)", ["source"])
DEPENDENCY_ERRORS = Counter("abtest_dependency_errors_total", "Failures talking to a dependency", ["dependency"])
GUARDRAIL_BREACHES = Counter("abtest_guardrail_breaches_total", "Experiments paused by a guardrail breach",
                             ["experiment", "guardrail"])
SHADOW_PREDICTIONS = Counter("abtest_shadow_predictions_total",
                             "Shadow predictions by result (agree, disagree with the served one, error)",
                             ["experiment", "model", "result"])
SHADOW_SKIPPED = Counter("abtest_shadow_skipped_total", "Mirrored requests not shadowed (pool_full, records_full)",
                         ["experiment", "reason"])


_children: dict[tuple[Any, tuple[str, ...]], Any] = {}


def child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, remembered: the hot path skips prometheus_client's lock and checks.

    Label values are bounded (see the module docstring), so this stays small."""
    key = (metric, labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*labels)
    return found


class SampleQueue:
    """Counter increments and histogram observations of the request path, written in batches.

    In multiprocess mode every prometheus_client sample is a locked write into a
    memory-mapped file (a histogram observation is two), and /predict takes six: together
    about a tenth of what the gateway adds to a request. Queued, a sample costs the request
    a deque append; ``apply`` (the worker's ``metrics-writer`` thread every
    ``APPLY_INTERVAL_SECONDS``, /metrics before it answers, and worker exit) adds the queue
    up and writes each label set once. So a sample reaches /metrics up to that late.
    """

    def __init__(self) -> None:
        self._queued: deque[tuple[Any, float | None]] = deque()

    def inc(self, counter: Any) -> None:
        """``counter.inc()`` (a labelled child, see :func:`child`), later."""
        self._queued.append((counter, None))

    def observe(self, histogram: Any, value: float) -> None:
        """``histogram.observe(value)`` (a labelled child), later."""
        self._queued.append((histogram, value))

    def apply(self) -> int:
        """Write everything queued; returns how many samples that was."""
        counts: dict[Any, int] = {}
        observed: dict[Any, tuple[list[float], list[int]]] = {}
        taken = 0
        while True:
            try:
                metric, value = self._queued.popleft()
            except IndexError:
                break
            taken += 1
            if value is None:
                counts[metric] = counts.get(metric, 0) + 1
                continue
            total, buckets = observed.get(metric) or observed.setdefault(
                metric, ([0.0], [0] * len(metric._upper_bounds)))
            total[0] += value
            # Histogram.observe counts a value in the first bucket whose bound is >= it
            buckets[bisect_left(metric._upper_bounds, value)] += 1
        for metric, count in counts.items():
            metric.inc(count)
        for metric, (total, buckets) in observed.items():
            # What Histogram.observe does, once per label set (prometheus_client 0.26, pinned;
            # tests/unit/ml_api/telemetry/test_metrics.py compares the result with observe itself).
            metric._sum.inc(total[0])
            for index, count in enumerate(buckets):
                if count:
                    metric._buckets[index].inc(count)
        return taken


SAMPLES = SampleQueue()
APPLY_INTERVAL_SECONDS = 1.0


def count_routed(rule: str, method: str, status: int) -> None:
    """One sample per request: its route rule, method and status."""
    SAMPLES.inc(child(REQUESTS, rule, method, str(status)))


class InstrumentedStore:
    """Wraps a sticky store to count its failures (the assigner itself stays I/O-free)."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def claim(self, experiment_id: int, user_id: str, candidate: str) -> str | None:
        return self._counted("claim", experiment_id, user_id, candidate)

    def put(self, experiment_id: int, user_id: str, variant: str) -> None:
        self._counted("put", experiment_id, user_id, variant)

    def get(self, experiment_id: int, user_id: str) -> str | None:
        return self._counted("get", experiment_id, user_id)

    def claim_many(self, claims: Sequence[Entry]) -> list[str | None]:
        return self._counted("claim_many", claims)

    def put_many(self, entries: Sequence[Entry]) -> None:
        self._counted("put_many", entries)

    def _counted(self, operation: str, *args: Any) -> Any:
        try:
            return getattr(self._store, operation)(*args)
        except StoreUnavailable:
            DEPENDENCY_ERRORS.labels("redis").inc()
            raise
