"""One JSON error envelope, ``{"error": ..., "detail": ...}``, for every failure."""

import logging

from flask import Blueprint, Flask
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)
bp = Blueprint("errors", __name__)


class ApiError(Exception):
    """An error answer: an HTTP status, a short machine-readable code, a human detail."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail


def error_body(error: str, detail: str) -> dict[str, str]:
    return {"error": error, "detail": detail}


@bp.app_errorhandler(ApiError)
def handle_api_error(exc: ApiError):
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
    return error_body("internal_error", "the gateway failed to handle this request; it was logged"), 500


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
