"""POST /predict answered ahead of Flask: the hot path without a framework's per-request work.

Under gunicorn, Flask's request and app contexts, URL matching, hooks and Response object
cost about as much CPU per request as everything the experiment adds (README,
"Performance"). This WSGI middleware takes only the requests that can go one way, a POST
to /predict with a JSON body of declared length within MAX_BODY_BYTES, and answers them
with ``serving.predict.answer``, the function the Flask view calls too. Everything else goes
on to Flask untouched, /predict included when its body is chunked, too large or not JSON
(413, 415 as before). Both paths answer errors through the one error table and end through
``finish.finish_request``, so they write the same bytes, request sample and error event
(``tests/integration/ml_api/web/test_predict_lane.py``).
"""

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from ml_api.services import Services
from ml_api.serving.predict import answer
from ml_api.web.bodies import json_object
from ml_api.web.errors import error_headers, error_reply, event_fields_of
from ml_api.web.finish import finish_request

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}
PATH, METHOD = "/predict", "POST"


def is_json(content_type: str) -> bool:
    """Werkzeug's ``Request.is_json`` on a raw Content-Type header."""
    mimetype = content_type.partition(";")[0].strip().lower()
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


class PredictLane:
    """WSGI middleware: POST /predict straight to ``serving.predict.answer``, anything else to ``app``."""

    def __init__(self, app: WsgiApp, svc: Services, encode: Callable[[Any], bytes]) -> None:
        self.app = app
        self.svc = svc
        self.encode = encode  # the Flask app's own JSON encoding (json_provider.OrjsonProvider.encode_body)
        self.max_body_bytes = svc.config.max_body_bytes

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = self.body_length(environ)
        if length is None:
            return self.app(environ, start_response)
        status, reply = self.respond(environ["wsgi.input"].read(length))
        payload = self.encode(reply)
        start_response(STATUS_LINES[status], [("Content-Type", "application/json"),
                                              ("Content-Length", str(len(payload))), *error_headers(status)])
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
        """Status and body for one request; a failure is answered through the error table, as Flask's are."""
        known: dict[str, Any] = {}
        try:
            status, reply = 200, answer(self.svc, json_object(raw))
        except Exception as exc:  # what Flask's error handler does (web.finish)
            (status, reply), known = error_reply(exc), event_fields_of(exc)
        finish_request(self.svc, METHOD, PATH, PATH, status, reply, known)
        return status, reply
