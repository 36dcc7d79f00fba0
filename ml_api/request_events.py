"""The ``error`` event: one per /predict or /feedback request that did not succeed."""

from typing import Any

from flask import Response, g, request

from ml_api.services import Services, services

TRACKED_PATHS = {"/predict", "/feedback"}


def emit_error_events(response: Response) -> None:
    """The error event of a failed request served by Flask (successful ones emit their own event)."""
    if response.status_code >= 400 and request.path in TRACKED_PATHS:
        body = response.get_json(silent=True) or {}
        emit_error_event(services(), request.method, request.path, response.status_code, body,
                         g.get("error_event_fields", {}))


def emit_error_event(svc: Services, method: str, path: str, status: int, body: dict[str, Any],
                     known: dict[str, Any]) -> None:
    """One failed request's event; ``known`` is what the view knew (``ApiError.event_fields``)."""
    svc.events.emit("error", {
        "event.outcome": "failure",
        "http.request.id": svc.requests.new_id(),  # the same form as a served request's id
        "http.request.method": method,
        "url.path": path,
        "http.response.status_code": status,
        "error.type": body.get("error", "http_error"),
        "error.message": body.get("detail"),
        **known,  # so the dashboards can attribute a failure to its variant
    })
