"""Request bodies as JSON objects: declared as JSON (else 415), parsed (else 400), bounded in size.

The size bound is Flask's MAX_CONTENT_LENGTH (413 beyond it), or the predict lane's own check.
"""

import json
from typing import Any

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge

from ml_api.errors import InvalidJson, InvalidRequest
from ml_api.web.errors import UnsupportedMediaType


def json_body(request: Request) -> dict[str, Any]:
    """The body as a JSON object, or an error naming the problem."""
    if not request.is_json:
        raise UnsupportedMediaType("send the body as JSON with Content-Type: application/json")
    return json_object(body_bytes(request))


def body_bytes(request: Request) -> bytes:
    """The body, at most MAX_CONTENT_LENGTH bytes (413 beyond it), whether its length was declared or not.

    For a declared length werkzeug answers 413 itself. A chunked body has none, and werkzeug
    would cut it at the limit without a word (the cut JSON then reads as invalid): it is
    read here, one byte past the limit, to tell "too large" from "just fits"."""
    limit = request.max_content_length
    if request.content_length is not None or limit is None or not request.environ.get("wsgi.input_terminated"):
        return request.get_data(cache=True)
    raw = request.environ["wsgi.input"].read(limit + 1)
    if len(raw) > limit:
        raise RequestEntityTooLarge()
    return raw


def json_object(raw: bytes) -> dict[str, Any]:
    """``raw`` parsed as a JSON object, or an error naming the problem."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidJson(f"the body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body
