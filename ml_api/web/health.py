"""GET /health (the process is alive), GET /ready (it can serve: models, Redis, MySQL) and GET /models."""

from typing import Any

from flask import Blueprint

from assigner.store import REDIS_ERRORS
from ml_api.errors import DatabaseUnavailable, DefinitionsUnavailable
from ml_api.services import services
from ml_api.serving.model_info import describe_registry
from ml_api.serving.models import ModelRegistry

bp = Blueprint("health", __name__)


@bp.get("/health")
def health() -> dict[str, str]:
    """Liveness: answers while the worker runs."""
    return {"status": "ok"}


@bp.get("/models")
def models() -> dict[str, Any]:
    """Every configured model: file, version, sha256, class, features, classes and load time (or its load error)."""
    return {"models": describe_registry(services().models)}


@bp.get("/ready")
def ready() -> tuple[dict[str, Any], int]:
    """Readiness: one status per dependency; 503 when any is not ok."""
    svc = services()
    checks: dict[str, dict[str, Any]] = {}

    checks["models"] = model_status(svc.models)

    try:
        svc.redis.ping()
        checks["redis"] = {"status": "ok"}
    except REDIS_ERRORS as exc:  # the cluster client's own errors are no RedisError
        checks["redis"] = {"status": "error", "error": str(exc)}

    try:
        svc.db.ping()
        checks["mysql"] = {"status": "ok", "spooled_records": svc.spool.size()}
    except DatabaseUnavailable as exc:
        checks["mysql"] = {"status": "error", "error": str(exc), "spooled_records": svc.spool.size()}

    try:
        count = len(svc.catalog.all())
        checks["experiments"] = {"status": "ok", "count": count}
    except DefinitionsUnavailable as exc:
        checks["experiments"] = {"status": "error", "error": str(exc)}

    paused = svc.rollout.paused_by_guardrail()  # degraded, not an outage: the default variant serves
    checks["rollout"] = {"status": "degraded" if paused else "ok", "paused_by_guardrail": paused}

    statuses = {check["status"] for check in checks.values()}
    if statuses <= {"ok"}:
        return {"status": "ready", "checks": checks}, 200
    if statuses <= {"ok", "degraded"}:
        return {"status": "degraded", "checks": checks}, 200
    return {"status": "not_ready", "checks": checks}, 503


def model_status(registry: ModelRegistry) -> dict[str, Any]:
    """Per model: its version, the file it serves and that file's sha256, and the load error if api.env names a
    file that failed.

    "degraded": a file failed but the last good file of that model still serves.
    """
    models: dict[str, dict[str, Any]] = {}
    for name in sorted(registry.names):
        model, error = registry.models.get(name), registry.errors.get(name)
        entry: dict[str, Any] = {"status": "ok" if error is None else "degraded" if model else "error"}
        if model is not None:
            entry["version"], entry["file"], entry["sha256"] = model.version, model.path.name, model.sha256
        if error is not None:
            entry["error"] = error
        models[name] = entry
    statuses = {entry["status"] for entry in models.values()}
    overall = "error" if "error" in statuses else "degraded" if "degraded" in statuses else "ok"
    return {"status": overall, "models": models}
