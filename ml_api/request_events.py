"""The ``error`` event: one per /predict or /feedback request that did not succeed."""

from typing import Any

from flask import Response, g, request

from ml_api.services import services

TRACKED_PATHS = {"/predict", "/feedback"}


def note_for_error_event(**fields: Any) -> None:
    """What a view knows so far (experiment, variant), for the error event if it then fails."""
    g.setdefault("error_event_fields", {}).update(fields)


def emit_error_events(response: Response) -> None:
    """The error event of a failed request (successful ones emit their own event in the view)."""
    if response.status_code >= 400 and request.path in TRACKED_PATHS:
        body = response.get_json(silent=True) or {}
        svc = services()
        svc.events.emit("error", {
            "event.outcome": "failure",
            "http.request.id": svc.requests.new_id(),  # the same form as a served request's id
            "http.request.method": request.method,
            "url.path": request.path,
            "http.response.status_code": response.status_code,
            "error.type": body.get("error", "http_error"),
            "error.message": body.get("detail"),
            # so the dashboards can attribute a failure to its variant
            **g.get("error_event_fields", {}),
        })
