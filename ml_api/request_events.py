"""The ``error`` event: one per /predict or /feedback request that did not succeed."""

import uuid

from flask import Response, request

from ml_api.services import services

TRACKED_PATHS = {"/predict", "/feedback"}


def emit_error_events(response: Response) -> Response:
    """After-request hook: successful requests emit their own event in the view."""
    if response.status_code >= 400 and request.path in TRACKED_PATHS:
        body = response.get_json(silent=True) or {}
        services().events.emit("error", {
            "event.outcome": "failure",
            "http.request.id": uuid.uuid4().hex,
            "http.request.method": request.method,
            "url.path": request.path,
            "http.response.status_code": response.status_code,
            "error.type": body.get("error", "http_error"),
            "error.message": body.get("detail"),
        })
    return response
