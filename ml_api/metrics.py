"""Prometheus metrics, correct across gunicorn workers (prometheus_client multiprocess mode).

gunicorn.conf.py points ``PROMETHEUS_MULTIPROC_DIR`` at an empty directory before any
worker imports this module; each worker then writes its samples to files there and
``GET /metrics`` sums them over every live (and dead) worker. Without that variable
(tests through Flask's client, a single process) the default registry is used.

Metric objects are module-level because that is how prometheus_client registers them;
label values are bounded (route rules, experiment/variant/model names from MySQL and
api.env), never raw paths or user ids.
"""

import os
from typing import Any

from flask import Blueprint, Response, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from assigner import StoreUnavailable

bp = Blueprint("metrics", __name__)

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


def count_request(response: Response) -> None:
    """One sample per request, by route rule (not the raw path)."""
    rule = request.url_rule
    child(REQUESTS, rule.rule if rule is not None else "unmatched", request.method, str(response.status_code)).inc()


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

    def _counted(self, operation: str, *args: Any) -> Any:
        try:
            return getattr(self._store, operation)(*args)
        except StoreUnavailable:
            DEPENDENCY_ERRORS.labels("redis").inc()
            raise


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text exposition of every worker's metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
