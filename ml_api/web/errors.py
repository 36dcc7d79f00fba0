"""The one table from an error to what a client is told: a status, a code and ``{"error", "detail"}``.

The Flask error handlers, the predict lane, the admin API, the CLI and the report command all
answer through :func:`describe_error`, so a domain error (``ml_api.errors``) reads the same
everywhere. Three errors exist only at the HTTP surface (authentication and media type); they
are in the table too. This module imports no Flask: the CLI uses it.
"""

import logging
from typing import Any

from ml_api import errors

log = logging.getLogger(__name__)


class Unauthorized(errors.GatewayError):
    """An admin call without ``Authorization: Bearer …``."""


class Forbidden(errors.GatewayError):
    """An admin call with a wrong token, or while the admin API is disabled."""


class UnsupportedMediaType(errors.GatewayError):
    """A body that is not declared as JSON."""


# Error class -> (status, code, fixed detail or None for the error's own message). The most
# specific class that matches wins (an InvalidJson is an InvalidRequest, but reads invalid_json).
TABLE: dict[type[Exception], tuple[int, str, str | None]] = {
    errors.InvalidRequest: (400, "invalid_request", None),
    errors.InvalidJson: (400, "invalid_json", None),
    Unauthorized: (401, "unauthorized", None),
    Forbidden: (403, "forbidden", None),
    errors.UnknownExperiment: (404, "unknown_experiment", None),
    errors.NotAssigned: (404, "not_assigned", None),
    errors.UnknownRequest: (404, "unknown_request", None),
    UnsupportedMediaType: (415, "unsupported_media_type", None),
    errors.InvalidDefinition: (422, "invalid_definition", None),
    # The connector's own message names hosts and ports: logged, not told to clients.
    errors.DatabaseUnavailable: (503, "database_unavailable",
                                 "MySQL, which holds the experiments, cannot answer right now; retry shortly"),
    errors.SpoolUnavailable: (503, "records_unavailable",
                              "MySQL is away and this host's spool could not take the record either; "
                              "nothing was stored, retry shortly"),
    errors.DefinitionsUnavailable: (503, "definitions_unavailable", None),
    errors.ModelUnavailable: (503, "model_unavailable", None),
    errors.RequestIdsUnavailable: (503, "cache_unavailable", None),
    errors.AssignmentUnknowable: (503, "dependencies_unavailable", None),
}
INTERNAL_ERROR = 500, "internal_error", "the gateway failed to handle this request; it was logged"
# What a 503 tells clients to wait: about the circuit breaker's pause and a spool delivery.
RETRY_AFTER_SECONDS = 1


def error_body(error: str, detail: str) -> dict[str, str]:
    """The envelope of every error answer."""
    return {"error": error, "detail": detail}


def describe_error(exc: BaseException) -> tuple[int, str, str]:
    """``(status, code, detail)`` for ``exc``; an error outside the table is a 500 (and logged)."""
    for cls in type(exc).__mro__:
        if cls in TABLE:
            status, code, detail = TABLE[cls]
            return status, code, detail if detail is not None else str(exc)
    log.error("unhandled error", exc_info=exc)
    return INTERNAL_ERROR


def error_reply(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """The status and the body that answer ``exc``."""
    status, code, detail = describe_error(exc)
    return status, error_body(code, detail)


def error_headers(status: int) -> list[tuple[str, str]]:
    """Headers of an error answer: a 503 says when to try again."""
    return [("Retry-After", str(RETRY_AFTER_SECONDS))] if status == 503 else []


def event_fields_of(exc: BaseException) -> dict[str, Any]:
    """What the failing code knew (experiment, variant), for the request's error event."""
    return getattr(exc, "event_fields", None) or {}
