"""One structured event per request, shipped to Logstash off the request path.

Delivery path and guarantees:

1. ``emit`` nests the flat dotted event, serialises it, and puts it on an in-memory
   queue. It never blocks on the network and never raises into the request.
2. A background thread per worker moves queued events into a SQLite buffer on local
   disk (``EVENT_BUFFER_PATH``), shared by every worker of the host.
3. The same thread drains the buffer to Logstash over TCP as JSON lines (through
   python-logstash-async's TCP transport), or to the JSON-lines file ``EVENT_FILE``
   when ``LOGSTASH_HOST`` is empty. A batch leaves the buffer only after it was sent; the
   buffer lock is held while sending, so no two workers send the same batch.

Delivery is **at least once**: a send that fails half-way is retried whole. Each event
carries a unique ``event.id``, which the Logstash pipeline uses as the Elasticsearch
document id, so a retried event overwrites itself instead of counting twice.
"""

import functools
import json
import logging
import os
import queue
import socket
import sqlite3
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from logstash_async.transport import TcpTransport

from ml_api.spool import Record, Spool

log = logging.getLogger(__name__)

SERVICE_NAME = "ml-gateway"
DATASET = "abtest.events"
QUEUE_LIMIT = 100_000
SHIP_INTERVAL_SECONDS = 0.5
SHIP_BATCH = 1000
# Events gathered in memory before one disk write: one SQLite transaction per window, not
# per event, which cost more CPU than the rest of a request (a crash loses this window).
BUFFER_WINDOW_SECONDS = 0.2


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}``; ``@timestamp`` and other undotted keys stay."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        if value is None:
            continue
        target = nested
        parents, leaf = _split(key)
        for part in parents:
            target = target.get(part) or target.setdefault(part, {})  # no throwaway dict per field
        target[leaf] = value
    return nested


@functools.lru_cache(maxsize=1024)
def _split(key: str) -> tuple[tuple[str, ...], str]:
    # Event field names are a small fixed set: split each once, not once per event (hot path).
    *parents, leaf = key.split(".")
    return tuple(parents), leaf


def timestamp() -> str:
    """Now, as ISO 8601 UTC with milliseconds (what Elasticsearch's date type parses)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Destination(Protocol):
    def send(self, lines: list[bytes]) -> None:
        """Deliver every line or raise."""


class LogstashDestination:
    """Logstash's tcp input with the json_lines codec."""

    def __init__(self, host: str, port: int, timeout: float = 2.0) -> None:
        self._transport = TcpTransport(
            host, port, ssl_enable=False, ssl_verify=False, ssl_verify_flags=None,
            keyfile=None, certfile=None, ca_certs=None, timeout=timeout,
        )

    def send(self, lines: list[bytes]) -> None:
        self._transport.send(lines)


class FileDestination:
    """Appends JSON lines to a local file (when no Logstash is configured)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def send(self, lines: list[bytes]) -> None:
        with open(self._path, "ab") as handle:
            handle.write(b"".join(lines))


class EventEmitter:
    """Builds and ships events; see the module docstring for the guarantees."""

    def __init__(self, buffer: Spool, destination: Destination, service_version: str) -> None:
        self._buffer = buffer
        self._destination = destination
        self._queue: queue.Queue[bytes] = queue.Queue(maxsize=QUEUE_LIMIT)
        self._common = {
            "event.dataset": DATASET,
            "host.name": socket.gethostname(),
            "service.name": SERVICE_NAME,
            "service.version": service_version,
        }
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def emit(self, action: str, fields: dict[str, Any]) -> None:
        """Queue one event (flat dotted ``fields``) for shipping; never blocks or raises."""
        event = {
            "@timestamp": timestamp(),
            "event.id": uuid.uuid4().hex,
            "event.action": action,
            "process.pid": os.getpid(),
            **self._common,
            **fields,
        }
        line = json.dumps(nest(event), separators=(",", ":"), default=str).encode("utf-8") + b"\n"
        self._ensure_started()
        try:
            self._queue.put_nowait(line)
        except queue.Full:
            # The shipper thread is far behind: keep the event on disk rather than drop it.
            try:
                self._buffer.put("event", {"line": line.decode("utf-8")})
            except sqlite3.OperationalError:
                log.error("events: queue full and buffer busy, event dropped: %s", line[:200])

    def _ensure_started(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:  # started lazily, in the worker process (after gunicorn's fork)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="event-shipper", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        pending: list[bytes] = []
        last_ship = 0.0
        while not self._stopping.is_set():
            pending += self._take(timeout=0.05 if pending else SHIP_INTERVAL_SECONDS, window=BUFFER_WINDOW_SECONDS)
            pending = self._store(pending)
            if time.monotonic() - last_ship >= SHIP_INTERVAL_SECONDS:
                last_ship = time.monotonic()
                if self.ship() == SHIP_BATCH:
                    last_ship = 0.0  # more is waiting: ship again right after the next move

    def _take(self, timeout: float, window: float = 0.0) -> list[bytes]:
        """Wait up to ``timeout`` for an event, then gather more for ``window`` seconds (or a batch)."""
        lines = []
        try:
            lines.append(self._queue.get(timeout=timeout))
            if window:
                # Sleep rather than wait on the queue: a waiting thread is woken (and takes the
                # GIL) by every put, which made emit() on the request path twice as slow.
                self._stopping.wait(window)
            while len(lines) < SHIP_BATCH:
                lines.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        return lines

    def _store(self, lines: list[bytes]) -> list[bytes]:
        """Write lines to the disk buffer; what could not be written is returned for a retry."""
        if not lines:
            return lines
        try:
            self._buffer.put_many([("event", {"line": line.decode("utf-8")}) for line in lines])
        except sqlite3.OperationalError as exc:  # another worker holds the buffer: retry soon
            log.debug("events: buffer busy (%s), %d events retried", exc, len(lines))
            return lines
        for _ in lines:
            self._queue.task_done()  # on disk now: flush() waits for exactly this
        return []

    def ship(self) -> int:
        """Send one batch from the buffer; returns how many events left it."""
        try:
            return self._buffer.drain(self._send, batch_size=SHIP_BATCH, max_batches=1)
        except Exception as exc:  # the destination is away (or the buffer busy): events stay buffered
            log.debug("events: delivery deferred: %s", exc)
            return 0

    def _send(self, records: list[Record]) -> None:
        self._destination.send([payload["line"].encode("utf-8") for _, payload in records])

    def flush(self, timeout: float = 5.0) -> None:
        """Move every queued event to disk and try to deliver (worker shutdown, tests)."""
        deadline = time.monotonic() + timeout
        pending: list[bytes] = []
        # unfinished_tasks counts events not yet on disk, including those the shipper
        # thread has taken from the queue and is about to store.
        while (pending or self._queue.unfinished_tasks) and time.monotonic() < deadline:
            pending = self._store(pending + self._take(timeout=0.01))
        while self.ship() == SHIP_BATCH and time.monotonic() < deadline:
            pass

    def close(self) -> None:
        self._stopping.set()
        self.flush()


def create_emitter(
    logstash_host: str, logstash_port: int, event_file: Path, buffer_path: Path, service_version: str
) -> EventEmitter:
    """Logstash when a host is configured, else the JSON-lines file."""
    destination: Destination = (
        LogstashDestination(logstash_host, logstash_port) if logstash_host else FileDestination(event_file)
    )
    return EventEmitter(Spool(buffer_path, synchronous="NORMAL"), destination, service_version)

