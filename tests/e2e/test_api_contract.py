"""The API contract: schemathesis drives every operation of the OpenAPI document through a real gunicorn.

Every answer must be no 5xx, have a documented status code and content type, and match
the documented schema. Generation is bounded (MAX_EXAMPLES per operation and generation
mode, a per-request deadline), so the file runs in about a minute.

The document is loaded from ``ml_api/web/openapi.json`` at collection, giving one test per
operation (tests/integration/ml_api/web/test_docs.py checks that the gateway serves exactly that
file). One gunicorn serves the whole module: the fixtures here are module-scoped versions
of the conftest ones, with a database of their own (the run creates experiments under
generated names, which must not collide with other tests'). The admin token is set and a
running experiment, also the default one, is seeded; generated experiment, variant and
model names are swapped for real ones half the time, so answers other than 404 and 422
are reached too.
"""

import os
import secrets
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from assigner import ExperimentStatus
from ml_api.config import Config, load_config
from ml_api.experiments.definitions import VariantSpec
from ml_api.experiments.repository import ExperimentRepository
from ml_api.infra.database import Database
from ml_api.web.docs import DOCUMENT_PATH
from tests.conftest import Gateway, isolated_settings, private_database, start_gateway

MAX_EXAMPLES = 30
DEADLINE = timedelta(seconds=5)
ADMIN_TOKEN = f"contract-{secrets.token_hex(8)}"
EXPERIMENT = f"contract-{secrets.token_hex(4)}"
VARIANTS = ("control", "variation")
MODELS = ("logreg", "forest")  # the models api.env names (and conftest trains)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

schema = schemathesis.openapi.from_path(DOCUMENT_PATH, config=schemathesis.Config.from_dict({
    "request-timeout": 10,
    "generation": {"database": "none"},  # no .hypothesis/ in the work tree; failures print their reproduction
    "phases": {"stateful": {"enabled": False}},
    "auth": {"openapi": {"AdminToken": {"bearer": ADMIN_TOKEN}}},
    "dictionaries": {
        "experiment": {"values": [EXPERIMENT]},
        "variant": {"values": list(VARIANTS)},
        "model": {"values": list(MODELS)},
    },
    "parameters": {
        "path.name": {"dictionary": "experiment", "probability": 0.5},
        "body.experiment": {"dictionary": "experiment", "probability": 0.5},
        "body.variant": {"dictionary": "variant", "probability": 0.5},
        "body.model": {"dictionary": "model", "probability": 0.5},
        "body.variants[*].model": {"dictionary": "model", "probability": 0.5},
    },
}))
# Calls per operation label ("POST /predict"), filled by the property run, read by the last test.
exercised: Counter[str] = Counter()


@pytest.fixture(scope="module")
def contract_database(base_config: Config) -> Iterator[str]:
    """A database of this module alone: the run creates experiments under names of its choosing."""
    with private_database(base_config, "contract") as name:
        yield name


@pytest.fixture(scope="module")
def contract_gateway(contract_database, model_dir, redis_client, tmp_path_factory) -> Iterator[Gateway]:
    """A gunicorn with ADMIN_TOKEN set and EXPERIMENT running as the default experiment."""
    tmp_path = tmp_path_factory.mktemp("contract")
    prefix = f"abtest-test-{secrets.token_hex(4)}"
    overrides = {
        **isolated_settings(contract_database, prefix, model_dir, tmp_path),
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "DEFAULT_EXPERIMENT": EXPERIMENT,
    }
    config = load_config({**os.environ, **overrides})
    db = Database(config.mysql)
    variants = [VariantSpec(variant, 50, model) for variant, model in zip(VARIANTS, MODELS)]
    ExperimentRepository(db, config.model_files).create(EXPERIMENT, variants, "test", status=ExperimentStatus.RUNNING)
    db.close()
    gateway = start_gateway(overrides, tmp_path, workers=2)
    yield gateway
    gateway.stop()
    keys = list(redis_client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=DEADLINE, suppress_health_check=list(HealthCheck))
def test_answers_conform_to_the_document(case, contract_gateway, session):
    exercised[case.operation.label] += 1
    try:
        case.call_and_validate(base_url=contract_gateway.url, session=session, checks=CHECKS)
    except FailureGroup as failure:
        failure.add_note(f"gunicorn's log, with the traceback of any 5xx: {contract_gateway.log_path}")
        raise


def test_every_documented_operation_was_exercised():
    """Runs after the property run above (same module): every operation was called."""
    documented = {
        f"{method.upper()} {path}"
        for path, item in schema.raw_schema["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert {result.ok().label for result in schema.get_all_operations()} == documented
    missing = sorted(documented - set(exercised))
    assert missing == [], f"operations the property run never called: {missing}"
    thin = {label: count for label, count in exercised.items() if count < 5}
    assert thin == {}, f"operations called fewer than 5 times: {thin}"
