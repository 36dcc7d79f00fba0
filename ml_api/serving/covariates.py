"""The request core of /covariates: pre-experiment values for CUPED, before the users' exposure."""

import json
from typing import TYPE_CHECKING, Any

from ml_api.errors import InvalidRequest
from ml_api.experiments.covariates import record_covariates
from ml_api.serving.requests import MAX_ABS_OUTCOME, checked_user_id, text_field

if TYPE_CHECKING:
    from ml_api.services import Services

# Users named in one answer's ``late_users`` (the count covers all).
MAX_LATE_LISTED = 20


def post_covariates(svc: "Services", body: dict[str, Any]) -> dict[str, Any]:
    """Record ``{"experiment"?, "covariate", "values": [{"user_id", "value"}, ...]}``; the answer counts
    what was accepted and what was refused because the user was already exposed."""
    experiment = svc.catalog.require(text_field(body, "experiment", 64, required=False)
                                     or svc.config.default_experiment)
    covariate = text_field(body, "covariate", 64, why=": the name a metric of the experiment declares as its covariate")
    declared = svc.catalog.metrics_of(experiment).covariates
    if covariate not in declared:
        listed = ", ".join(declared) or "none (a metric declares one with its \"covariate\" key)"
        raise InvalidRequest(f"experiment {experiment.name!r} declares no covariate {covariate!r}; declared: {listed}")
    values = parse_values(body.get("values"), svc.config.max_batch_rows, svc.config.max_user_id_length)
    late = record_covariates(svc.db, experiment.id, covariate, values)
    return {"experiment": experiment.name, "covariate": covariate, "accepted": len(values) - len(late),
            "refused_exposed": len(late), "late_users": late[:MAX_LATE_LISTED]}


def parse_values(raw: Any, max_rows: int, max_user_id_length: int) -> list[tuple[str, float]]:
    """A non-empty list of ``{"user_id", "value"}``, each user once, values finite."""
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest('values must be a non-empty list of {"user_id": ..., "value": number}')
    if len(raw) > max_rows:
        raise InvalidRequest(f"values may hold at most {max_rows} items, got {len(raw)}")
    parsed = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise InvalidRequest(f'values[{index}] must be an object {{"user_id": ..., "value": number}}')
        if "user_id" not in item:
            raise InvalidRequest(f"values[{index}].user_id is required")
        user_id = checked_user_id(item["user_id"], max_user_id_length)
        value = item.get("value")
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not -MAX_ABS_OUTCOME <= value <= MAX_ABS_OUTCOME:
            raise InvalidRequest(f"values[{index}].value must be a finite number of magnitude at most "
                                 f"{MAX_ABS_OUTCOME:g}, got {json.dumps(value)[:50]}")
        parsed.append((user_id, float(value)))
    if len({user for user, _ in parsed}) != len(parsed):
        raise InvalidRequest("values names a user more than once; send one value per user")
    return parsed
