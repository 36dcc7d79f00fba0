"""POST /predict through Flask: the requests the predict lane passes on (chunked, unusual bodies)."""

from typing import Any

from flask import Blueprint, request

from ml_api.services import services
from ml_api.serving.predict import answer
from ml_api.web.bodies import json_body

bp = Blueprint("predict", __name__)


@bp.post("/predict")
def predict() -> dict[str, Any]:
    """Assign the user to a variant (sticky) and answer with that variant's prediction."""
    return answer(services(), json_body(request))
