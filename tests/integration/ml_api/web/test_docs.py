"""The OpenAPI document: valid, in step with the app's routes and views, served at /openapi.json."""

import itertools
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from jsonschema import Draft202012Validator
from werkzeug.routing import Rule

from ml_api.web.docs import DOCUMENT_PATH, document

METHODS = {"get", "post", "put", "patch", "delete"}
# <converter(arguments):name> or <name>, as in werkzeug rules.
RULE_ARGUMENT = re.compile(r"<(?:(\w+)(?:\(([^)]*)\))?:)?(\w+)>")


def openapi_paths(rule: Rule) -> list[str]:
    """The OpenAPI paths a werkzeug rule stands for: ``<any(a, b):x>`` becomes one path per choice."""
    pieces: list[list[str]] = []
    position = 0
    for match in RULE_ARGUMENT.finditer(rule.rule):
        pieces.append([rule.rule[position:match.start()]])
        converter, arguments, name = match.groups()
        if converter == "any":
            pieces.append([choice.strip().strip("'\"") for choice in arguments.split(",")])
        else:
            pieces.append([f"{{{name}}}"])
        position = match.end()
    pieces.append([rule.rule[position:]])
    return ["".join(combination) for combination in itertools.product(*pieces)]


def app_operations(app) -> dict[tuple[str, str], str]:
    """``(path, method) -> endpoint`` for every route of the app but static files."""
    operations = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for path in openapi_paths(rule):
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                operations[(path, method.lower())] = rule.endpoint
    return operations


def document_operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (path, method): operation
        for path, item in doc["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def schemas_in(node: Any) -> Iterator[dict[str, Any]]:
    """Every JSON Schema the document holds (component schemas, parameters, bodies, responses)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "schema" and isinstance(value, dict):
                yield value
            elif key == "schemas" and isinstance(value, dict):
                yield from value.values()
            else:
                yield from schemas_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from schemas_in(item)


def references_in(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from references_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from references_in(item)


def resolve(doc: dict[str, Any], reference: str) -> Any:
    assert reference.startswith("#/"), f"only local references are used, got {reference}"
    node: Any = doc
    for part in reference[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_document_is_valid_openapi_3_1():
    doc = document()
    assert doc["openapi"].startswith("3.1.")
    schemathesis.openapi.from_dict(doc).validate()  # the official OpenAPI 3.1 meta-schema
    for schema in schemas_in(doc):
        Draft202012Validator.check_schema(schema)  # 3.1 schemas are JSON Schema 2020-12
    for reference in set(references_in(doc)):
        resolve(doc, reference)


def test_every_route_is_documented_and_every_documented_operation_exists(app):
    routes = app_operations(app)
    documented = document_operations(document())
    assert sorted(set(routes) - set(documented)) == [], "routes missing from the OpenAPI document"
    assert sorted(set(documented) - set(routes)) == [], "documented operations the app does not serve"


def test_summaries_are_the_views_docstrings(app):
    """Each view's one-line docstring doubles as its operation's summary."""
    documented = document_operations(document())
    for (path, method), endpoint in app_operations(app).items():
        docstring = (app.view_functions[endpoint].__doc__ or "").strip().splitlines()
        assert documented[(path, method)]["summary"] == (docstring[0] if docstring else None), f"{method} {path}"


def test_every_error_answer_is_the_json_envelope():
    error = {"$ref": "#/components/schemas/Error"}
    doc = document()
    for (path, method), operation in document_operations(doc).items():
        for status, response in operation["responses"].items():
            if int(status) < 400 or (path, status) == ("/ready", "503"):  # /ready's 503 is the readiness body
                continue
            if "$ref" in response:
                response = resolve(doc, response["$ref"])
            assert response["content"]["application/json"]["schema"] == error, f"{method} {path} {status}"


@pytest.mark.parametrize("path", ["/predict", "/feedback", "/admin/experiments"])
def test_json_bodies_document_413_and_415(path):
    responses = document()["paths"][path]["post"]["responses"]
    assert {"400", "413", "415"} <= set(responses)


def test_admin_operations_require_the_bearer_token():
    doc = document()
    scheme = doc["components"]["securitySchemes"]["AdminToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for (path, method), operation in document_operations(doc).items():
        guarded = path.startswith("/admin/")
        assert (operation.get("security") == [{"AdminToken": []}]) is guarded, f"{method} {path}"
        if guarded:
            assert {"401", "403"} <= set(operation["responses"]), f"{method} {path}"


def test_gateway_serves_the_document(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == json.loads(DOCUMENT_PATH.read_text(encoding="utf-8"))
