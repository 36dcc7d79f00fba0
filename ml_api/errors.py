"""What can go wrong, in the domain's words: the errors the request core, the repositories and the
CLI raise. None of them knows HTTP; ``ml_api.web.errors`` maps each to a status and an error code
in one table, which the HTTP surface, the CLI and the report command all use.
"""

from typing import Any


class GatewayError(Exception):
    """An error a caller can be told about; the message says what was wrong.

    ``event_fields`` holds what the failing code knew (the experiment and the variant), for
    the request's error event; None when it knew nothing worth adding."""

    event_fields: dict[str, Any] | None = None


class InvalidRequest(GatewayError):
    """A request body or field was refused (missing, wrong type, out of range)."""


class InvalidJson(InvalidRequest):
    """A body that is not JSON at all."""


class InvalidDefinition(GatewayError, ValueError):
    """An experiment definition or change was refused; the message says why."""


class UnknownExperiment(GatewayError, LookupError):
    """No experiment has that name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no experiment named {name!r}")
        self.name = name


class NotAssigned(GatewayError, LookupError):
    """An outcome for a user who was never exposed in the experiment."""


class UnknownRequest(GatewayError, LookupError):
    """A request id that was never issued, or has expired."""


class DependencyUnavailable(GatewayError):
    """Something the answer needs is away right now; retrying later may succeed."""


class DatabaseUnavailable(DependencyUnavailable):
    """MySQL could not be reached or failed mid-statement."""


class SpoolUnavailable(DependencyUnavailable):
    """The host's spool could not take a record (its file stayed locked, or the disk failed):
    with MySQL away too, the record is stored nowhere, so the request is not acknowledged."""


class DefinitionsUnavailable(DependencyUnavailable):
    """No experiment definitions were ever loaded and MySQL cannot be reached."""


class ModelUnavailable(DependencyUnavailable):
    """No model could answer: the variant's failed and so did the control's fallback."""


class RequestIdsUnavailable(DependencyUnavailable):
    """Request ids live in Redis, which is away."""


class AssignmentUnknowable(DependencyUnavailable):
    """Neither MySQL nor Redis can tell a user's variant right now."""
