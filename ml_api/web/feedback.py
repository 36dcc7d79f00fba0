"""POST /feedback: an outcome for a user's variant (a conversion, a click, a score)."""

from typing import Any

from flask import Blueprint, request

from ml_api.services import services
from ml_api.serving.feedback import record_feedback
from ml_api.web.bodies import json_body

bp = Blueprint("feedback", __name__)


@bp.post("/feedback")
def feedback() -> tuple[dict[str, Any], int]:
    """Record an outcome against the variant the user was first assigned."""
    return record_feedback(services(), json_body(request)), 202
