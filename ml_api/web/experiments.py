"""GET /experiments and /experiments/<name>: definitions with live counts per variant."""

from typing import Any

from flask import Blueprint

from assigner import Experiment
from ml_api.experiments.definitions import describe
from ml_api.services import Services, services

bp = Blueprint("experiments", __name__)


def with_counts(svc: Services, experiment: Experiment) -> dict[str, Any]:
    """The public definition (no salt) with users and outcomes per variant."""
    counts = svc.recorder.variant_counts(experiment.id)
    body = describe(experiment)
    body.pop("salt")  # the salt lets anyone predict assignments; it stays internal
    for variant in body["variants"]:
        variant.update(counts.get(variant["name"], {"users": 0, "outcomes": 0}))
    return body


@bp.get("/experiments")
def list_experiments() -> dict[str, Any]:
    """Every experiment with users and outcomes per variant."""
    svc = services()
    return {"experiments": [with_counts(svc, e) for e in sorted(svc.experiments.all().values(), key=lambda e: e.name)]}


@bp.get("/experiments/<name>")
def get_experiment(name: str) -> dict[str, Any]:
    """One experiment with users and outcomes per variant."""
    svc = services()
    return with_counts(svc, svc.experiments.get(name))
