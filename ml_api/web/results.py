"""GET /experiments/<name>/results (JSON) and /experiments/<name>/results.html (the same, drawn)."""

from typing import Any

from flask import Blueprint, render_template

from ml_api.results.document import experiment_results
from ml_api.services import services

bp = Blueprint("results", __name__, template_folder="templates")


@bp.get("/experiments/<name>/results")
def results(name: str) -> dict[str, Any]:
    """Per-variant rates, comparisons with the control, SRM, guardrails, power and the decision."""
    return experiment_results(services().db, name, services().experiments)


@bp.get("/experiments/<name>/results.html")
def results_page(name: str) -> str:
    """The results as a page: tables and inline SVG charts drawn from the same document."""
    return render_template("results.html", results=experiment_results(services().db, name, services().experiments))
