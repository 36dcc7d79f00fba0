"""GET /health (the process is alive) and GET /ready (it can serve: models, Redis, MySQL)."""

from typing import Any

import redis
from flask import Blueprint

from ml_api.catalog import DefinitionsUnavailable
from ml_api.db import DatabaseUnavailable
from ml_api.services import services

bp = Blueprint("health", __name__)


@bp.get("/health")
def health() -> dict[str, str]:
    """Liveness: answers while the worker runs."""
    return {"status": "ok"}


@bp.get("/ready")
def ready() -> tuple[dict[str, Any], int]:
    """Readiness: one status per dependency; 503 when any is not ok."""
    svc = services()
    checks: dict[str, dict[str, Any]] = {}

    models = {name: {"status": "ok", "version": m.version} for name, m in svc.models.models.items()}
    models.update({name: {"status": "error", "error": error} for name, error in svc.models.errors.items()})
    checks["models"] = {"status": "ok" if not svc.models.errors else "error", "models": models}

    try:
        svc.redis.ping()
        checks["redis"] = {"status": "ok"}
    except redis.RedisError as exc:
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

    ok = all(check["status"] == "ok" for check in checks.values())
    return {"status": "ready" if ok else "not_ready", "checks": checks}, 200 if ok else 503
