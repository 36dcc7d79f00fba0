"""The request core of POST /predict/batch: many /predict requests in one body, one result per item.

Each item ``{user_id, features, experiment?}`` is admitted (validated, its features checked
against every model of its experiment) and assigned exactly as one /predict would be, by the
same rules (``assign_many``: a user sent twice gets one variant), with one round trip per
store for the whole batch (one pipeline of sticky claims, one multi-row INSERT of the new
exposures, one pipeline of confirmations); then the items
are grouped by model and predicted in one call per model (and form of features); a
variation group that fails is answered by its control model, as /predict falls back. Each
item ends as a single request does (``predict.conclude``: request id, metrics, guardrail
counts, shadow, one ``predict`` event). A bad item is one error among the results and does
not fail the others. It knows no HTTP: failed items are returned as their exception.
"""

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from assigner import Assignment, Experiment, assign_many
from ml_api.errors import GatewayError, InvalidRequest, ModelUnavailable
from ml_api.serving.models import LoadedModel, ModelError, Prediction
from ml_api.serving.predict import Served, admit, conclude, unavailable
from ml_api.serving.requests import PredictRequest

if TYPE_CHECKING:
    from ml_api.services import Services

Result = dict[str, Any] | GatewayError


@dataclass
class Job:
    """One admitted and assigned item, waiting for its model's group call."""

    index: int
    req: PredictRequest
    experiment: Experiment
    assignment: Assignment
    model_name: str
    control_name: str
    served: tuple[LoadedModel, Prediction] | None = None
    model_error: str | None = None


def parse_items(body: dict[str, Any], max_rows: int) -> list[Any]:
    """The body's ``items``: a list of 1 to MAX_BATCH_ROWS objects (each is checked on its own later)."""
    items = body.get("items")
    if not isinstance(items, list) or not items:
        raise InvalidRequest("items is required: a non-empty list of {user_id, features, experiment?} objects")
    if len(items) > max_rows:
        raise InvalidRequest(f"items may hold at most {max_rows} requests (MAX_BATCH_ROWS), got {len(items)}")
    return items


def answer_batch(svc: "Services", body: dict[str, Any]) -> list[Result]:
    """One result per item, in request order: the reply /predict would give, or the error it would raise."""
    started = time.perf_counter()
    items = parse_items(body, svc.config.max_batch_rows)
    results: list[Result | None] = [None] * len(items)
    admitted: list[tuple[int, PredictRequest, Experiment]] = []
    for index, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise InvalidRequest(f"items[{index}] must be an object {{user_id, features, experiment?}}")
            admitted.append((index, *admit(svc, item)))
        except GatewayError as exc:
            results[index] = exc
    assignments = assign_many([(experiment, req.user_id) for _, req, experiment in admitted],
                              svc.store, svc.recorder, svc.memory)
    jobs = [Job(index, req, experiment, assignment, experiment.variant(assignment.variant).model,
                experiment.variant(experiment.default_variant).model)
            for (index, req, experiment), assignment in zip(admitted, assignments)]
    assigned = time.perf_counter()
    failed = predict_groups(svc, jobs, fallback=False)
    predict_groups(svc, [job for job in failed if job.model_name != job.control_name], fallback=True)
    predicted = time.perf_counter()
    for job in jobs:
        if job.served is None:
            error = ModelUnavailable(job.model_error or "no model answered")
            results[job.index] = unavailable(svc, job.experiment, job.assignment, error, started)
            continue
        model, prediction = job.served
        fallback = job.model_error is not None
        results[job.index] = conclude(svc, Served(job.req, job.experiment, job.assignment, model, prediction,
                                                  fallback, job.model_error), started, assigned, predicted)
    return [result for result in results if result is not None]


def predict_groups(svc: "Services", jobs: list[Job], fallback: bool) -> list[Job]:
    """Predict ``jobs`` in one call per model (their own, or control's when ``fallback``); returns the failed ones."""
    groups: dict[tuple[str, bool], list[Job]] = defaultdict(list)
    for job in jobs:
        groups[(job.control_name if fallback else job.model_name, isinstance(job.req.features, list))].append(job)
    failed = []
    for (name, _), members in groups.items():
        features = [job.req.features for job in members]
        try:
            model = svc.models.get(name)
            budget = not fallback and any(job.model_name != job.control_name for job in members)
            predictions = (svc.models.predict_many_within_budget(model, features) if budget
                           else model.predict_many(features))
        except ModelError as exc:
            for job in members:
                job.model_error = f"{job.model_error}; fallback failed too: {exc}" if fallback else str(exc)
            failed.extend(members)
            continue
        for job, prediction in zip(members, predictions):
            job.served = (model, prediction)
    return failed
