"""Database.retrying: conflicts are run again, then reported as unavailability; anything else at once."""

import mysql.connector
import pytest

from ml_api.config import MySQLSettings
from ml_api.errors import DatabaseUnavailable
from ml_api.infra import database
from ml_api.infra.database import Database

SETTINGS = MySQLSettings("127.0.0.1", 1, "none", "none", "", 1, "none", "")  # never connected to here


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(database.time, "sleep", lambda seconds: None)


def failing(errno: int, times: int):
    """An operation that fails with MySQL error ``errno`` ``times`` times, then answers."""
    calls = []

    def operation() -> str:
        calls.append(errno)
        if len(calls) <= times:
            raise mysql.connector.errors.InternalError(msg="conflict", errno=errno)
        return "done"

    return operation, calls


@pytest.mark.parametrize("errno", [1213, 1205])
def test_a_deadlock_or_lock_wait_timeout_is_run_again(errno):
    operation, calls = failing(errno, times=2)
    assert Database(SETTINGS).retrying(operation) == "done" and len(calls) == 3


def test_a_conflict_that_outlasts_the_attempts_is_unavailability_not_a_bug():
    operation, calls = failing(1213, times=99)
    with pytest.raises(DatabaseUnavailable, match="kept reporting a conflict"):
        Database(SETTINGS).retrying(operation, attempts=3)
    assert len(calls) == 3


def test_any_other_error_is_raised_at_once():
    operation, calls = failing(1064, times=1)  # a syntax error: a bug, not a conflict
    with pytest.raises(mysql.connector.Error):
        Database(SETTINGS).retrying(operation)
    assert len(calls) == 1
