"""One JSON error envelope, ``{"error": ..., "detail": ...}``, for every failure."""

import logging
from typing import Any

from flask import Blueprint, Flask, g
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)
bp = Blueprint("errors", __name__)
INTERNAL_ERROR = "internal_error", "the gateway failed to handle this request; it was logged"


class ApiError(Exception):
    """An error answer: an HTTP status, a short machine-readable code, a human detail.

    ``event_fields`` holds what the view knew when it failed (experiment, variant), for the
    request's error event (``request_events``)."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.event_fields: dict[str, Any] = {}


def error_body(error: str, detail: str) -> dict[str, str]:
    return {"error": error, "detail": detail}


@bp.app_errorhandler(ApiError)
def handle_api_error(exc: ApiError):
    g.error_event_fields = exc.event_fields
    return error_body(exc.error, exc.detail), exc.status


@bp.app_errorhandler(HTTPException)
def handle_http_exception(exc: HTTPException):
    code = (exc.name or "error").lower().replace(" ", "_")
    detail = exc.description or exc.name
    if exc.code == 413:
        detail = "request body is larger than the limit (MAX_BODY_BYTES)"
    return error_body(code, detail), exc.code


@bp.app_errorhandler(Exception)
def handle_unexpected(exc: Exception):
    log.exception("unhandled error")
    return error_body(*INTERNAL_ERROR), 500


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
