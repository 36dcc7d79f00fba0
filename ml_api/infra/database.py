"""MySQL connections: a small pool per worker process, connections opened on first use.

Connections are opened lazily (never at import time, never before gunicorn forks), a
caller waits for a free one instead of failing, and a connection that failed is thrown
away, so a MySQL restart heals without restarting the gateway.
"""

import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import mysql.connector
from mysql.connector.abstracts import MySQLConnectionAbstract

from ml_api.config import PROJECT_ROOT, MySQLSettings
from ml_api.errors import DatabaseUnavailable
from ml_api.infra.native_threads import event_loop_active
from ml_api.telemetry.metrics import DEPENDENCY_ERRORS

SCHEMA_FILE = PROJECT_ROOT / "mysql" / "schema.sql"
CONNECT_TIMEOUT_SECONDS = 2
# An idle connection older than this is pinged before use (MySQL may have dropped it).
PING_AFTER_IDLE_SECONDS = 30
# After a failure, calls fail fast for this long instead of each waiting for a timeout.
RETRY_AFTER_SECONDS = 1.0
# Errors that mean "MySQL is not there (right now)", as opposed to a bug in a statement.
UNAVAILABLE = (mysql.connector.errors.OperationalError, mysql.connector.errors.InterfaceError)
# Deadlock and lock wait timeout: MySQL rolled the statement (or transaction) back and it may
# simply be run again. Neither says anything about MySQL being away.
CONFLICT_ERRNOS = frozenset({1213, 1205})
CONFLICT_ATTEMPTS = 4
CONFLICT_BACKOFF_SECONDS = 0.01  # the first pause; it doubles, with jitter, at each attempt

T = TypeVar("T")

# mysql-connector's C extension (used when installed) waits in libmysqlclient, out of gevent's
# sight: it would stop the worker's event loop for every round trip. The pure-Python protocol
# waits on a patched socket. (Asked for where no C extension is installed, use_pure=False fails.)
PURE_PROTOCOL_UNDER_GEVENT = {"use_pure": True}


class Database:
    def __init__(self, settings: MySQLSettings) -> None:
        self.settings = settings
        self._idle: queue.LifoQueue[tuple[MySQLConnectionAbstract, float]] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(settings.pool_size)
        self._down_until = 0.0

    def _connect(self) -> MySQLConnectionAbstract:
        s = self.settings
        return mysql.connector.connect(
            host=s.host, port=s.port, user=s.user, password=s.password, database=s.database,
            connection_timeout=CONNECT_TIMEOUT_SECONDS, autocommit=True,
            charset="utf8mb4", collation="utf8mb4_bin", time_zone="+00:00",
            **PURE_PROTOCOL_UNDER_GEVENT if event_loop_active() else {},
        )

    def _checkout(self) -> tuple[MySQLConnectionAbstract, bool]:
        """A connection, and whether it was reused from the pool (False: connected just now)."""
        try:
            conn, idle_since = self._idle.get_nowait()
        except queue.Empty:
            return self._connect(), False
        if time.monotonic() - idle_since > PING_AFTER_IDLE_SECONDS:
            conn.ping(reconnect=True, attempts=1)
        return conn, True

    @contextmanager
    def connection(self) -> Iterator[MySQLConnectionAbstract]:
        """A connection in autocommit mode; unavailability becomes DatabaseUnavailable.

        After a failure, calls fail at once for RETRY_AFTER_SECONDS (a circuit breaker), so
        an unreachable MySQL costs requests nothing while the spool takes their records. Only
        a failure of a connection made for this call trips it: a pooled connection that fails
        (MySQL restarted, or closed it) fails this call alone, and the pool is emptied so the
        next call connects afresh; a busy pool fails the call without tripping it either.
        """
        if time.monotonic() < self._down_until:
            raise DatabaseUnavailable("MySQL failed recently; retrying shortly")
        if not self._slots.acquire(timeout=CONNECT_TIMEOUT_SECONDS):
            raise DatabaseUnavailable(f"all {self.settings.pool_size} MySQL connections are busy")
        conn = None
        reused = healthy = False
        try:
            conn, reused = self._checkout()
            yield conn
            healthy = True
        except UNAVAILABLE as exc:
            DEPENDENCY_ERRORS.labels("mysql").inc()
            if reused:
                self.close()  # its idle siblings are likely as stale
            else:
                self._down_until = time.monotonic() + RETRY_AFTER_SECONDS
            raise DatabaseUnavailable(str(exc)) from exc
        except mysql.connector.Error:
            healthy = True  # a statement failed; the connection itself is fine
            raise
        finally:
            self._checkin(conn, healthy)
            self._slots.release()

    def _checkin(self, conn: MySQLConnectionAbstract | None, healthy: bool) -> None:
        if conn is None:
            return
        if healthy and not conn.in_transaction:
            self._idle.put((conn, time.monotonic()))
            return
        try:
            conn.close()
        except mysql.connector.Error:
            pass  # it was broken already; dropping it is all we wanted

    @contextmanager
    def transaction(self) -> Iterator[MySQLConnectionAbstract]:
        """A connection inside one transaction, committed on success, rolled back on error."""
        with self.connection() as conn, in_transaction(conn):
            yield conn

    def retrying(self, operation: Callable[[], T], attempts: int = CONFLICT_ATTEMPTS) -> T:
        """``operation()`` (which opens its own connection or transaction), run again after a deadlock
        or a lock wait timeout, with a short jittered backoff.

        When the conflict outlasts the attempts it is DatabaseUnavailable, the transient failure
        callers already handle (a record goes to the spool, an answer is a 503), never a 500.
        It does not trip the circuit breaker: MySQL is there, only busy."""
        for attempt in range(attempts):
            try:
                return operation()
            except mysql.connector.Error as exc:
                if exc.errno not in CONFLICT_ERRNOS:
                    raise
                DEPENDENCY_ERRORS.labels("mysql").inc()
                if attempt == attempts - 1:
                    raise DatabaseUnavailable(f"MySQL kept reporting a conflict: {exc}") from exc
                time.sleep(random.uniform(0.5, 1.5) * CONFLICT_BACKOFF_SECONDS * 2 ** attempt)
        raise AssertionError("unreachable")

    def ping(self) -> None:
        """Raise DatabaseUnavailable unless a trivial query succeeds."""
        with self.connection() as conn:
            cursor = conn.cursor()
            cursor.execute("SELECT 1")
            cursor.fetchall()

    def close(self) -> None:
        """Close the idle connections (tests, worker shutdown)."""
        while True:
            try:
                conn, _ = self._idle.get_nowait()
            except queue.Empty:
                return
            self._checkin(conn, healthy=False)


@contextmanager
def in_transaction(conn: MySQLConnectionAbstract, isolation_level: str | None = None) -> Iterator[None]:
    """One transaction on ``conn`` (already checked out, e.g. holding a named lock): committed on
    success, rolled back on error."""
    conn.start_transaction(isolation_level=isolation_level)
    try:
        yield
    except BaseException:
        try:
            conn.rollback()
        except mysql.connector.Error:
            pass  # the connection is gone; MySQL rolls the transaction back itself
        raise
    conn.commit()


def schema_statements(path: Path = SCHEMA_FILE) -> list[str]:
    """The statements of the schema file, comments removed."""
    lines = [line for line in path.read_text().splitlines() if not line.strip().startswith("--")]
    return [statement.strip() for statement in "\n".join(lines).split(";") if statement.strip()]


def apply_schema(conn: MySQLConnectionAbstract) -> None:
    """Apply the (idempotent) schema on an open connection."""
    cursor = conn.cursor()
    for statement in schema_statements():
        cursor.execute(statement)
    cursor.close()
