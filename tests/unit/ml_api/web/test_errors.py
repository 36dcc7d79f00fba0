"""The one table from an error to its answer: every domain error is in it, and it reads the same everywhere."""

import inspect

import pytest

from ml_api import errors
from ml_api.web.errors import INTERNAL_ERROR, TABLE, describe_error, error_reply

FAMILIES = {errors.GatewayError, errors.DependencyUnavailable}  # never raised themselves
DOMAIN_ERRORS = [cls for _, cls in inspect.getmembers(errors, inspect.isclass)
                 if issubclass(cls, errors.GatewayError) and cls not in FAMILIES]


@pytest.mark.parametrize("cls", DOMAIN_ERRORS, ids=lambda cls: cls.__name__)
def test_every_concrete_domain_error_has_a_row_of_its_own(cls):
    assert cls in TABLE, f"{cls.__name__} can be raised but is not mapped to a status"


def test_the_most_specific_row_wins():
    assert describe_error(errors.InvalidJson("the body is not valid JSON: x"))[:2] == (400, "invalid_json")
    assert describe_error(errors.InvalidRequest("features is required"))[:2] == (400, "invalid_request")


def test_an_unknown_experiment_names_it_the_same_way_everywhere():
    assert error_reply(errors.UnknownExperiment("checkout")) == (
        404, {"error": "unknown_experiment", "detail": "no experiment named 'checkout'"})


def test_mysql_details_stay_in_the_logs():
    status, code, detail = describe_error(errors.DatabaseUnavailable("2003: Can't connect to MySQL on 10.0.0.7:3306"))
    assert (status, code) == (503, "database_unavailable") and "10.0.0.7" not in detail


def test_anything_else_is_a_logged_500_that_reveals_nothing(caplog):
    assert describe_error(RuntimeError("secret internals")) == INTERNAL_ERROR
    assert "secret internals" not in INTERNAL_ERROR[2]
    assert "unhandled error" in caplog.text


@pytest.mark.parametrize("cls", [cls for cls in TABLE], ids=lambda cls: cls.__name__)
def test_statuses_are_client_errors_or_unavailability(cls):
    status, code, _ = TABLE[cls]
    assert 400 <= status < 500 or status == 503, code
