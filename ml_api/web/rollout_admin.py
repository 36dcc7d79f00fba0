"""Admin API of safe rollouts: shadow model, canary ramp, guardrail state (same token as admin.py).

Resuming an experiment that a guardrail paused is the ordinary ``POST
/admin/experiments/<name>/start``: it clears the pause and restarts the ramp step's clock.
"""

from typing import Any

from flask import Blueprint, request

from ml_api.rollout.report import describe_rollout
from ml_api.services import services
from ml_api.web.admin import actor, require_admin
from ml_api.web.bodies import json_body

bp = Blueprint("rollout_admin", __name__, url_prefix="/admin")


@bp.get("/experiments/<name>/rollout")
@require_admin
def rollout_state(name: str) -> dict[str, Any]:
    """Shadow, ramp and guardrails of an experiment, with the live guardrail window."""
    return describe_rollout(services().rollout.repo, name)


@bp.put("/experiments/<name>/shadow")
@require_admin
def set_shadow(name: str) -> dict[str, Any]:
    """Mirror a share of the experiment's users to a shadow model, off the request path."""
    body = json_body(request)
    services().rollout.repo.set_shadow(name, body.get("model"), body.get("percent"), actor())
    return describe_rollout(services().rollout.repo, name)


@bp.delete("/experiments/<name>/shadow")
@require_admin
def clear_shadow(name: str) -> dict[str, Any]:
    """Stop mirroring requests to the shadow model."""
    services().rollout.repo.clear_shadow(name, actor())
    return describe_rollout(services().rollout.repo, name)


@bp.put("/experiments/<name>/ramp")
@require_admin
def set_ramp(name: str) -> dict[str, Any]:
    """Ramp the traffic allocation up in steps, each held for a minimum duration."""
    services().rollout.repo.set_ramp(name, json_body(request).get("steps"), actor())
    return describe_rollout(services().rollout.repo, name)


@bp.delete("/experiments/<name>/ramp")
@require_admin
def clear_ramp(name: str) -> dict[str, Any]:
    """Stop the ramp; the traffic allocation stays where it is."""
    services().rollout.repo.clear_ramp(name, actor())
    return describe_rollout(services().rollout.repo, name)
