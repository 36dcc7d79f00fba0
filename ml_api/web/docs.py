"""GET /openapi.json: the OpenAPI 3.1 document of every endpoint (``ml_api/web/openapi.json``).

The document is kept as JSON next to the code, so serving it needs no YAML parser at run
time; ``tests/integration/ml_api/web/test_docs.py`` keeps it in step with the app's routes and
``tests/e2e/test_api_contract.py`` checks real answers against it.
"""

import json
from functools import cache
from pathlib import Path
from typing import Any

from flask import Blueprint

DOCUMENT_PATH = Path(__file__).resolve().parent / "openapi.json"

bp = Blueprint("docs", __name__)


@cache
def document() -> dict[str, Any]:
    """The OpenAPI document, read once per worker, on first use."""
    return json.loads(DOCUMENT_PATH.read_text(encoding="utf-8"))


@bp.get("/openapi.json")
def openapi() -> dict[str, Any]:
    """This API's OpenAPI document."""
    return document()
