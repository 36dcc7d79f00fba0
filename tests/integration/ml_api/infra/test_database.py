"""A real InnoDB deadlock: both transactions complete, one of them after being run again."""

import threading

import mysql.connector
import pytest

from ml_api.errors import DatabaseUnavailable
from ml_api.infra.database import Database


def test_two_transactions_locking_rows_in_opposite_order_both_complete(db: Database):
    with db.connection() as conn:
        cursor = conn.cursor()
        cursor.execute("CREATE TABLE deadlock_probe (id INT PRIMARY KEY, hits INT NOT NULL) ENGINE = InnoDB")
        cursor.execute("INSERT INTO deadlock_probe VALUES (1, 0), (2, 0)")
    both_hold_one = threading.Barrier(2, timeout=10)
    attempts = {1: 0, 2: 0}

    def cross(first: int, second: int) -> None:
        attempts[first] += 1
        with db.transaction() as conn:
            cursor = conn.cursor()
            cursor.execute("UPDATE deadlock_probe SET hits = hits + 1 WHERE id = %s", (first,))
            if attempts[first] == 1:
                both_hold_one.wait()  # each holds its first row: the second updates close the cycle
            cursor.execute("UPDATE deadlock_probe SET hits = hits + 1 WHERE id = %s", (second,))

    errors: list[BaseException] = []

    def run(first: int, second: int) -> None:
        try:
            db.retrying(lambda: cross(first, second))
        except BaseException as exc:  # reported below, with the thread's own error
            errors.append(exc)

    threads = [threading.Thread(target=run, args=pair) for pair in ((1, 2), (2, 1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    try:
        assert not errors, errors
        assert sorted(attempts.values()) == [1, 2], "InnoDB chose one victim, which ran again"
        with db.connection() as conn:
            cursor = conn.cursor()
            cursor.execute("SELECT id, hits FROM deadlock_probe ORDER BY id")
            assert cursor.fetchall() == [(1, 2), (2, 2)], "each transaction counted once"
    finally:
        with db.connection() as conn:
            conn.cursor().execute("DROP TABLE deadlock_probe")


def test_one_stale_pooled_connection_fails_one_call_not_the_next_second(db: Database, base_config):
    """MySQL closed a pooled connection (a restart, wait_timeout, a killed session): only the call
    that met it fails; the next call connects afresh instead of meeting the circuit breaker."""
    with db.connection() as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT CONNECTION_ID()")
        (session,) = cursor.fetchone()
    s = base_config.mysql
    admin = mysql.connector.connect(host=s.host, port=s.port, user=s.user, password=s.password, autocommit=True)
    try:
        admin.cursor().execute(f"KILL CONNECTION {int(session)}")
    finally:
        admin.close()
    with pytest.raises(DatabaseUnavailable):
        db.ping()  # the pooled connection is gone
    db.ping()  # at once: a fresh connection, no "MySQL failed recently"
