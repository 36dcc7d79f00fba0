"""POST /covariates: pre-experiment values per user for CUPED (see ml_api/experiments/covariates.py)."""

from typing import Any

from flask import Blueprint, request

from ml_api.services import services
from ml_api.serving.covariates import post_covariates
from ml_api.web.bodies import json_body

bp = Blueprint("covariates", __name__)


@bp.post("/covariates")
def covariates() -> dict[str, Any]:
    """Record users' pre-experiment covariate values; values for users already exposed are refused and counted."""
    return post_covariates(services(), json_body(request))
