"""POST /predict answered ahead of Flask: the hot path without a framework's per-request work.

Under gunicorn, Flask's request and app contexts, URL matching, hooks and Response object
cost about as much CPU per request as everything the experiment adds (README,
"Performance"). This WSGI middleware takes only the requests that can go one way, a POST
to /predict with a JSON body of declared length within MAX_BODY_BYTES, and answers them
with ``predict.answer``, the function the Flask view calls too. Everything else goes on to
Flask untouched, /predict included when its body is chunked, too large or not JSON (413,
415 as before). Both paths write the same bytes, the same error envelope, the same request
sample and the same error event (``tests/integration/test_predict_lane.py``).
"""

import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from ml_api import metrics
from ml_api.errors import INTERNAL_ERROR, ApiError, error_body
from ml_api.predict import answer
from ml_api.request_events import emit_error_event
from ml_api.rollout import Rollout
from ml_api.services import Services, start_background
from ml_api.validation import json_object

log = logging.getLogger(__name__)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}
PATH, METHOD = "/predict", "POST"


def is_json(content_type: str) -> bool:
    """Werkzeug's ``Request.is_json`` on a raw Content-Type header."""
    mimetype = content_type.partition(";")[0].strip().lower()
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


class PredictLane:
    """WSGI middleware: POST /predict straight to ``predict.answer``, anything else to ``app``."""

    def __init__(self, app: WsgiApp, svc: Services, mirror: Rollout, encode: Callable[[Any], bytes]) -> None:
        self.app = app
        self.svc = svc
        self.mirror = mirror
        self.encode = encode  # the Flask app's own JSON encoding (json_provider.OrjsonProvider.encode_body)
        self.max_body_bytes = svc.config.max_body_bytes

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = self.body_length(environ)
        if length is None:
            return self.app(environ, start_response)
        start_background(self.svc)
        status, reply = self.respond(environ["wsgi.input"].read(length))
        payload = self.encode(reply)
        start_response(STATUS_LINES[status], [("Content-Type", "application/json"),
                                              ("Content-Length", str(len(payload)))])
        return [payload]

    def body_length(self, environ: dict[str, Any]) -> int | None:
        """The declared body length when this lane takes the request; None sends it to Flask."""
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != METHOD:
            return None
        declared = environ.get("CONTENT_LENGTH") or ""
        if not (declared.isascii() and declared.isdigit()) or not is_json(environ.get("CONTENT_TYPE") or ""):
            return None
        if len(declared) > len(str(self.max_body_bytes)):
            return None  # over the limit, and maybe past int()'s 4,300-digit cap
        length = int(declared)
        return length if length <= self.max_body_bytes else None

    def respond(self, raw: bytes) -> tuple[int, dict[str, Any]]:
        """Status and body for one request; a failure is answered, counted and emitted like Flask's."""
        try:
            status, reply = 200, answer(self.svc, self.mirror, json_object(raw))
        except ApiError as exc:
            status, reply = exc.status, error_body(exc.error, exc.detail)
            emit_error_event(self.svc, METHOD, PATH, status, reply, exc.event_fields)
        except Exception:  # what errors.handle_unexpected does for Flask's routes
            log.exception("unhandled error")
            status, reply = 500, error_body(*INTERNAL_ERROR)
            emit_error_event(self.svc, METHOD, PATH, status, reply, {})
        metrics.count_routed(PATH, METHOD, status)
        return status, reply
