"""POST /predict through Flask (the requests the predict lane passes on), and POST /predict/batch."""

from typing import Any

from flask import Blueprint, request

from ml_api.errors import GatewayError
from ml_api.services import services
from ml_api.serving.batch import answer_batch
from ml_api.serving.predict import answer
from ml_api.telemetry import event_kinds
from ml_api.web.bodies import json_body
from ml_api.web.errors import error_reply, event_fields_of

bp = Blueprint("predict", __name__)
BATCH_PATH = "/predict/batch"


@bp.post("/predict")
def predict() -> dict[str, Any]:
    """Assign the user to a variant (sticky) and answer with that variant's prediction."""
    return answer(services(), json_body(request))


@bp.post(BATCH_PATH)
def predict_batch() -> dict[str, Any]:
    """Many /predict requests in one body: one result or one error per item, in request order."""
    svc = services()
    request.max_content_length = svc.config.max_batch_body_bytes  # a batch may be larger than one request
    results = []
    for result in answer_batch(svc, json_body(request)):
        if isinstance(result, GatewayError):
            status, body = error_reply(result)
            svc.events.emit(event_kinds.ERROR, event_kinds.error_fields(  # one event per item, as for /predict
                svc.requests.new_id(), "POST", BATCH_PATH, status, body, event_fields_of(result)))
            result = {**body, "status": status}
        results.append(result)
    return {"results": results, "count": len(results),
            "errors": sum(1 for result in results if "error" in result)}
