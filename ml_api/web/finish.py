"""How every request ends, on both paths (Flask and the predict lane): one request sample, and the
``error`` event of a failed /predict or /feedback. Also Flask's error handlers, which answer
through the one error table (``web.errors``).
"""

from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from ml_api.services import Services
from ml_api.telemetry import event_kinds, metrics
from ml_api.web.errors import error_body, error_headers, error_reply, event_fields_of

# Failures of these paths emit an ``error`` event (successes emit their own event).
TRACKED_PATHS = frozenset({"/predict", "/predict/batch", "/feedback"})
UNMATCHED = "unmatched"  # the route label of a request no rule matched


def finish_request(svc: Services, method: str, route: str, path: str, status: int,
                   body: dict[str, Any] | None, known: dict[str, Any]) -> None:
    """Count the request under its route rule; emit the error event of a failed tracked request.

    ``known`` is what the failing code knew (experiment, variant), so dashboards can
    attribute a failure to its variant."""
    metrics.count_routed(route, method, status)
    if status >= 400 and path in TRACKED_PATHS:
        svc.events.emit(event_kinds.ERROR, event_kinds.error_fields(
            svc.requests.new_id(), method, path, status, body or {}, known))


def install(app: Flask, svc: Services) -> None:
    """The error handlers and the after-request hook of the Flask path."""

    @app.errorhandler(Exception)
    def handle_error(exc: Exception) -> tuple[dict[str, Any], int, list[tuple[str, str]]]:
        if isinstance(exc, HTTPException):  # werkzeug's own: 404 route, 405, 413
            status, body = exc.code or 500, http_exception_body(exc)
        else:
            status, body = error_reply(exc)
            g.error_event_fields = event_fields_of(exc)
        g.error_body = body  # for the error event: not parsed back from the response
        return body, status, error_headers(status)

    @app.after_request
    def after_request(response: Response) -> Response:  # one hook: Flask pays for each hook on every request
        status = response.status_code
        rule = request.url_rule
        finish_request(svc, request.method, rule.rule if rule is not None else UNMATCHED, request.path, status,
                       g.get("error_body"), g.get("error_event_fields", {}))
        return response


def http_exception_body(exc: HTTPException) -> dict[str, str]:
    """werkzeug's errors in our envelope: the code from its name (``method_not_allowed``)."""
    code = (exc.name or "error").lower().replace(" ", "_")
    detail = exc.description or exc.name
    if exc.code == 413:
        detail = "request body is larger than the limit (MAX_BODY_BYTES)"
    return error_body(code, detail)
