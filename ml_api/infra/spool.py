"""A durable local queue on SQLite, shared by the workers of a host.

It holds the records MySQL could not take right now: when MySQL is unreachable, exposures
and outcomes are appended to ``SPOOL_PATH`` before the request is acknowledged, and a
background thread in every worker drains it into MySQL when MySQL answers again (the
event shipper uses another file of the same kind as its disk buffer, ``telemetry.events``). Writes to MySQL are idempotent
(assignments by primary key, outcomes by ``feedback_id``), so a batch replayed after a
crash is neither lost nor doubled.

One worker of the host drains at a time (an advisory lock on a file beside the spool, which
the OS releases when its holder dies), and SQLite's write lock is taken only for an append or
for deleting a delivered batch, never while a batch travels to MySQL: a request that must
spool its record waits for a few milliseconds of someone else's transaction at most, not for
a delivery (a drain that held the lock across its batches starved appends past SQLite's busy
timeout, and those requests failed).

Every SQLite call runs through ``offload``: under the gevent worker a commit that fsyncs, or
that waits for another worker's lock, runs on a native thread instead of stopping the loop.
"""

import fcntl
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ml_api.errors import SpoolUnavailable
from ml_api.infra.native_threads import offload

log = logging.getLogger(__name__)

Record = tuple[str, dict[str, Any]]
BUSY_TIMEOUT_SECONDS = 5.0


class Spool:
    """A SQLite-backed queue shared by every worker of a host.

    ``synchronous="FULL"`` fsyncs each append (records acknowledged to a client);
    ``"NORMAL"`` survives a crash of the process but not of the machine (events).
    """

    def __init__(self, path: Path, synchronous: str = "FULL") -> None:
        self.path = path
        self._synchronous = synchronous
        path.parent.mkdir(parents=True, exist_ok=True)
        self._initialise()

    def _initialise(self, attempts: int = 50) -> None:
        # Every worker opens the file at boot; switching to WAL needs a moment alone with
        # it, which SQLite's busy timeout does not wait for. Retry instead of failing boot.
        for attempt in range(attempts):
            try:
                with self._open() as conn:
                    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                        conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute("CREATE TABLE IF NOT EXISTS pending (id INTEGER PRIMARY KEY, kind TEXT, payload TEXT)")
                return
            except sqlite3.OperationalError:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.1)

    @contextmanager
    def _open(self, across_threads: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection; ``across_threads`` when its calls are offloaded one by one (any native thread)."""
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None,
                               check_same_thread=not across_threads)
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        try:
            yield conn
        finally:
            conn.close()

    def put(self, kind: str, payload: dict[str, Any]) -> None:
        """Append one record; on disk when this returns."""
        self.put_many([(kind, payload)])

    def put_many(self, records: list[Record]) -> None:
        """Append records in one transaction; SpoolUnavailable if SQLite refused them (nothing was stored)."""
        try:
            offload(self._append, records)
        except sqlite3.Error as exc:
            raise SpoolUnavailable(f"the spool {self.path.name} could not take {len(records)} records: {exc}") from exc

    def _append(self, records: list[Record]) -> None:
        with self._open() as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO pending (kind, payload) VALUES (?, ?)",
                [(kind, json.dumps(payload)) for kind, payload in records],
            )
            conn.execute("COMMIT")

    def find(self, kind: str, **fields: Any) -> dict[str, Any] | None:
        """The oldest pending record of ``kind`` whose payload has these field values, or None.

        A scan of what waits (an outage's worth at most); used off the hot path."""
        conditions = " AND ".join(f"json_extract(payload, '$.{name}') = ?" for name in fields)
        query = f"SELECT payload FROM pending WHERE kind = ? AND {conditions} ORDER BY id LIMIT 1"
        row = offload(self._fetch_one, query, (kind, *fields.values()))
        return json.loads(row[0]) if row else None

    def size(self) -> int:
        return offload(self._fetch_one, "SELECT COUNT(*) FROM pending", ())[0]

    def _fetch_one(self, query: str, parameters: tuple) -> tuple | None:
        with self._open() as conn:
            return conn.execute(query, parameters).fetchone()

    def drain(self, write: Callable[[list[Record]], None], batch_size: int = 500, max_batches: int | None = None) -> int:
        """Hand pending records to ``write`` in batches, oldest first; delete each batch only after it succeeded.

        Returns how many were delivered: 0 as well when another worker of the host is draining
        (it delivers them). A failed ``write`` leaves its batch in place; a worker that dies
        during ``write`` leaves it too, for the next drain (the writes are idempotent)."""
        with self._drain_turn() as mine:
            if not mine:
                return 0
            delivered = 0
            batches = 0
            with self._open(across_threads=True) as conn:  # ``write`` runs on this thread, SQLite on native ones
                while max_batches is None or batches < max_batches:
                    batches += 1
                    rows = offload(_oldest, conn, batch_size)
                    if not rows:
                        break
                    write([(kind, json.loads(payload)) for _, kind, payload in rows])
                    offload(_delete_batch, conn, [row_id for row_id, _, _ in rows])
                    delivered += len(rows)
            return delivered

    @contextmanager
    def _drain_turn(self) -> Iterator[bool]:
        """Whether this caller may drain now: an exclusive, non-blocking lock on ``<spool>.drain``."""
        with open(self.path.with_name(self.path.name + ".drain"), "a") as lock_file:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)


def _oldest(conn: sqlite3.Connection, batch_size: int) -> list[tuple[int, str, str]]:
    """The oldest pending rows (a read: in WAL mode it waits for no writer)."""
    return conn.execute("SELECT id, kind, payload FROM pending ORDER BY id LIMIT ?", (batch_size,)).fetchall()


def _delete_batch(conn: sqlite3.Connection, row_ids: list[int]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("DELETE FROM pending WHERE id = ?", [(row_id,) for row_id in row_ids])
    conn.execute("COMMIT")


def deliver_spool(spool: Spool, write: Callable[[list[Record]], None], ready: Callable[[], bool]) -> int:
    """Drain the spool into MySQL when there is something to drain and MySQL answers."""
    if not spool.size() or not ready():
        return 0
    delivered = spool.drain(write)
    if delivered:
        log.info("spool: delivered %d records to MySQL", delivered)
    return delivered
