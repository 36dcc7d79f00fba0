"""GET /experiments/<name>/results (JSON) and /experiments/<name>/results.html (the same, drawn)."""

from typing import Any

from flask import Blueprint, render_template

from ml_api.db import Database, DatabaseUnavailable
from ml_api.errors import ApiError
from ml_api.experiment_repo import UnknownExperiment
from ml_api.results_report import build_results
from ml_api.rollout_report import rollout_results
from ml_api.services import services

bp = Blueprint("results", __name__)


def experiment_results(db: Database, name: str) -> dict[str, Any]:
    """The whole document of GET /results (the CLI prints the same): statistics, then shadow and rollout."""
    return build_results(db, name) | rollout_results(db, name)


def results_of(name: str) -> dict[str, Any]:
    """The results document; 404 for an unknown experiment, 503 while MySQL is away."""
    try:
        return experiment_results(services().db, name)
    except UnknownExperiment:
        raise ApiError(404, "unknown_experiment", f"no experiment named {name!r}") from None
    except DatabaseUnavailable:
        raise ApiError(503, "database_unavailable", "results are computed from MySQL, which is unreachable") from None


@bp.get("/experiments/<name>/results")
def results(name: str) -> dict[str, Any]:
    """Per-variant rates, comparisons with the control, SRM, guardrails, power and the decision."""
    return results_of(name)


@bp.get("/experiments/<name>/results.html")
def results_page(name: str) -> str:
    """The results as a page: tables and inline SVG charts drawn from the same document."""
    return render_template("results.html", results=results_of(name))
