"""The admin HTTP API: create and change experiments, guarded by ADMIN_TOKEN.

Every call needs ``Authorization: Bearer <ADMIN_TOKEN>`` (401 without it, 403 with a
wrong one; the comparison takes constant time). ``X-Actor`` names who acts, for the
change history (default ``admin-api``); the repository reports every committed change as an
``experiment_change`` event. ADMIN_TOKEN=disabled (or an empty one that `make run` has not
generated yet) turns the admin API off.
"""

import hmac
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, request

from ml_api.errors import InvalidRequest
from ml_api.experiments.definitions import STATUS_OF_ACTION, describe, parse_variants
from ml_api.services import services
from ml_api.serving.requests import checked_user_id, text_field
from ml_api.web.bodies import json_body
from ml_api.web.errors import Forbidden, Unauthorized

bp = Blueprint("admin", __name__, url_prefix="/admin")
MAX_ACTOR_LENGTH = 128
View = Callable[..., Any]


def require_admin(view: View) -> View:
    """Check the bearer token before the view runs."""

    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        check_token(request.headers.get("Authorization", ""), services().config.admin_token)
        return view(*args, **kwargs)

    return guarded


def check_token(header: str, token: str) -> None:
    """Unauthorized without a bearer header, Forbidden with a wrong token (compared in constant time)."""
    if not header.startswith("Bearer "):
        raise Unauthorized("admin calls need the header 'Authorization: Bearer <ADMIN_TOKEN>'")
    if not token:
        raise Forbidden("the admin API is disabled: ADMIN_TOKEN=disabled, or empty and none generated yet"
                        " (`make run` generates one into LOCAL_SECRETS_FILE)")
    if not hmac.compare_digest(header[len("Bearer "):].encode(), token.encode()):
        raise Forbidden("wrong admin token")


def actor() -> str:
    """Who makes the change, for the history: ``admin:<X-Actor>``."""
    name = request.headers.get("X-Actor", "admin-api").strip()[:MAX_ACTOR_LENGTH] or "admin-api"
    return f"admin:{name}"


@bp.post("/experiments")
@require_admin
def create_experiment() -> tuple[dict[str, Any], int]:
    """Create an experiment (draft unless "status": "running")."""
    svc = services()
    body = json_body(request)
    name = text_field(body, "name", 64)
    variants = parse_variants(body.get("variants"), svc.models.names)
    experiment = svc.experiments.create(
        name, variants, actor(),
        default_variant=body.get("default_variant"),
        traffic_allocation=body.get("traffic_allocation", 1.0),
        salt=body.get("salt"),
        status=body.get("status", "draft"),
        metrics=body.get("metrics"),
    )
    if "guardrails" in body:
        experiment = svc.experiments.set_guardrails(name, body["guardrails"], actor())
    return describe(experiment) | {"metrics": svc.experiments.metrics(name).as_dict()}, 201


@bp.patch("/experiments/<name>")
@require_admin
def change_experiment(name: str) -> dict[str, Any]:
    """Change weights, traffic allocation, guardrails, the plan, the metrics or (before the start) the salt."""
    repo = services().experiments
    body = json_body(request)
    changes = {
        "weights": repo.set_weights,
        "traffic_allocation": repo.set_traffic_allocation,
        "guardrails": repo.set_guardrails,
        "plan": repo.set_plan,
        "metrics": repo.set_metrics,
        "salt": repo.set_salt,
    }
    unknown = set(body) - set(changes)
    if unknown or not body:
        raise InvalidRequest(f"give any of {sorted(changes)}; unknown: {sorted(unknown)}")
    experiment = None
    for key, change in changes.items():
        if key in body:
            experiment = change(name, body[key], actor())
    return describe(experiment) | {"guardrails": repo.guardrails(name), "plan": repo.plan(name).as_dict(),
                                   "metrics": repo.metrics(name).as_dict()}


@bp.post("/experiments/<name>/<any(start, pause, stop):action>")
@require_admin
def change_status(name: str, action: str) -> dict[str, Any]:
    """Start, pause or stop an experiment."""
    return describe(services().experiments.set_status(name, STATUS_OF_ACTION[action], actor()))


@bp.put("/experiments/<name>/overrides/<path:user_id>")
@require_admin
def force_variant(name: str, user_id: str) -> dict[str, Any]:
    """Force a user's variant (QA); forced users are excluded from the statistics."""
    user_id = checked_user_id(user_id, services().config.max_user_id_length)
    variant = text_field(json_body(request), "variant", 64)
    return describe(services().experiments.force_variant(name, user_id, variant, actor()))


@bp.delete("/experiments/<name>/overrides/<path:user_id>")
@require_admin
def clear_override(name: str, user_id: str) -> dict[str, Any]:
    """Remove a user's forced variant."""
    user_id = checked_user_id(user_id, services().config.max_user_id_length)
    return describe(services().experiments.clear_override(name, user_id, actor()))


@bp.get("/experiments/<name>/history")
@require_admin
def history(name: str) -> dict[str, Any]:
    """Every change of the experiment: time, actor, action, before and after."""
    repo = services().experiments
    repo.get(name)  # 404 for an unknown experiment rather than an empty list
    return {"experiment": name, "changes": repo.history(name)}
