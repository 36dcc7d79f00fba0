"""One structured event per request, shipped to Logstash off the request path.

Delivery path and guarantees:

1. ``emit`` appends the event's nested fields (``event_kinds``) to an in-memory queue: no
   encoding, no lock, no network, no exception into the request.
2. A background thread per worker takes what was queued every ``BATCH_WINDOW_SECONDS``,
   drops the unknown (None) values and serialises it, and POSTs it as JSON lines to
   Logstash's http input (``logstash_http``), or appends it to the JSON-lines file
   ``EVENT_FILE`` when ``LOGSTASH_HOST`` is empty.
3. A batch the destination does not acknowledge goes to a SQLite buffer on local disk
   (``EVENT_BUFFER_PATH``, shared by every worker of the host), and so does everything
   for the next ``SHIP_INTERVAL_SECONDS``; the same thread drains the buffer to the
   destination once it answers again. A batch leaves the buffer only after the
   destination acknowledged it (Logstash answers 200 once every event of the request is
   in its persistent queue); the buffer lock is held while sending, so no two workers
   send the same batch. So the disk is written only while the destination is away.

Delivery is **at least once**: a batch that was not acknowledged (the receiver died
half-way, answered 429 or 5xx, or did not answer in time) is sent again whole. Each event
carries a unique ``event.id``, which the Logstash pipeline uses as the Elasticsearch
document id, so a resent event overwrites itself instead of counting twice.
"""

import logging
import socket
import sqlite3
import threading
import time
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import orjson

from ml_api.infra.background import current_pid
from ml_api.infra.random_hex import RandomHex
from ml_api.infra.spool import Record, Spool
from ml_api.telemetry.logstash_http import LogstashHttpDestination

log = logging.getLogger(__name__)

SERVICE_NAME = "ml-gateway"
DATASET = "abtest.events"
QUEUE_LIMIT = 100_000
SHIP_INTERVAL_SECONDS = 0.5
SHIP_BATCH = 1000
# Events gathered in memory before they are encoded and sent together (a crash loses
# this window): one send per window, not per event.
BATCH_WINDOW_SECONDS = 0.2
# The shipper offers the GIL to request threads after encoding this many events, so a
# window's batch never holds them up for more than about a millisecond.
ENCODE_CHUNK = 50


def without_none(group: dict[str, Any]) -> dict[str, Any]:
    """``group`` without its None values and the objects left empty, at any depth.

    Builds new objects; the caller's are never changed (the request path keeps none of them,
    but tests and callers may)."""
    kept: dict[str, Any] = {}
    for key, value in group.items():
        if type(value) is dict:
            value = without_none(value)
            if not value:
                continue
        elif value is None:
            continue
        kept[key] = value
    return kept


def timestamp(at: float | None = None) -> str:
    """``at`` (default now, Unix seconds) as ISO 8601 UTC with milliseconds, as Elasticsearch's date type parses."""
    global _second
    at = time.time() if at is None else at
    whole = int(at)
    micros = round((at - whole) * 1_000_000)  # as datetime rounds a float time
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    second, text = _second
    if whole != second:  # events come in time order: the date and time part changes once a second
        text = datetime.fromtimestamp(whole, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        _second = (whole, text)
    return f"{text}.{micros // 1000:03d}Z"


_second: tuple[int, str] = (-1, "")


class Destination(Protocol):
    def send(self, lines: list[bytes]) -> None:
        """Return only once every line is stored by the receiver; raise otherwise."""


class FileDestination:
    """Appends JSON lines to a local file (when no Logstash is configured)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def send(self, lines: list[bytes]) -> None:
        # Unbuffered: each write is one append system call, so batches of several workers
        # writing to the same file never interleave inside a line.
        data = memoryview(b"".join(lines))
        with open(self._path, "ab", buffering=0) as handle:
            while data:
                data = data[handle.write(data):]


class EventEmitter:
    """Builds and ships events; see the module docstring for the guarantees."""

    def __init__(self, buffer: Spool, destination: Destination, service_version: str) -> None:
        self._buffer = buffer
        self._destination = destination
        # (time, pid, action, fields) per event. A deque: appending takes no lock and wakes
        # no thread, so emit() costs the request next to nothing.
        self._queued: deque[tuple[float, int, str, dict[str, Any]]] = deque()
        # The same objects in every event (only read when encoding).
        self._host = {"name": socket.gethostname()}
        self._service = {"name": SERVICE_NAME, "version": service_version}
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._shipping = threading.Lock()  # the shipper thread, or flush(), one at a time
        self._stopping = threading.Event()
        self._direct_after = 0.0  # monotonic time before which batches go to the buffer
        self._unsent: list[bytes] = []  # encoded, but neither sent nor buffered yet
        self._event_ids = RandomHex(32)

    def emit(self, action: str, fields: dict[str, Any]) -> None:
        """Queue one event (``fields`` nested, as ``event_kinds`` builds them, not changed afterwards); never blocks or raises."""
        event = (time.time(), current_pid(), action, fields)
        if len(self._queued) < QUEUE_LIMIT:
            self._queued.append(event)
            return
        # The shipper thread is far behind: keep the event on disk rather than drop it.
        try:
            self._buffer.put("event", {"line": self._encode(event).decode("utf-8")})
        except sqlite3.OperationalError:
            log.error("events: queue full and buffer busy, event dropped: %s %s", action, fields)

    def start(self) -> None:
        """Start the shipper thread in this process, once (the services start it after gunicorn's fork).

        Until then events wait in the queue; ``flush`` delivers them without the thread."""
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stopping.clear()
                self._thread = threading.Thread(target=self._run, name="event-shipper", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        last_ship = 0.0
        while not self._stopping.wait(BATCH_WINDOW_SECONDS):
            with self._shipping:
                self._deliver_queued()
                if time.monotonic() - last_ship >= SHIP_INTERVAL_SECONDS:
                    last_ship = time.monotonic()
                    while self.ship() == SHIP_BATCH and not self._stopping.is_set():
                        pass  # more is waiting in the buffer

    def _deliver_queued(self) -> bool:
        """Everything queued to the destination, or, if that fails, to the disk buffer.

        False when the buffer was busy too: the batch is kept and tried again next time."""
        while self._unsent or self._queued:
            lines, self._unsent = self._unsent or self._encode_batch(), []
            if time.monotonic() >= self._direct_after:
                try:
                    self._destination.send(lines)
                    continue
                except Exception as exc:  # the destination is away: the buffer takes over for a while
                    log.debug("events: destination failed (%s), %d events buffered", exc, len(lines))
                    self._direct_after = time.monotonic() + SHIP_INTERVAL_SECONDS
            try:
                self._buffer.put_many([("event", {"line": line.decode("utf-8")}) for line in lines])
            except sqlite3.OperationalError as exc:  # another worker holds the buffer
                log.warning("events: buffer busy (%s), %d events wait", exc, len(lines))
                self._unsent = lines
                return False
        return True

    def _encode_batch(self) -> list[bytes]:
        """Up to SHIP_BATCH queued events, encoded (one request to Logstash per batch)."""
        lines: list[bytes] = []
        while self._queued and len(lines) < SHIP_BATCH:
            lines.append(self._encode(self._queued.popleft()))
            if len(lines) % ENCODE_CHUNK == 0:
                time.sleep(0)  # let waiting request threads have the GIL
        return lines

    def _encode(self, queued: tuple[float, int, str, dict[str, Any]]) -> bytes:
        at, pid, action, fields = queued
        event = {"@timestamp": timestamp(at), **without_none(fields)}
        event["event"] = {"id": self._event_ids.next(), "action": action, "dataset": DATASET, **event.get("event", {})}
        event["process"] = {"pid": pid}
        event["host"] = self._host
        event["service"] = self._service
        return orjson.dumps(event, default=str, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE)

    def ship(self) -> int:
        """Send one batch from the disk buffer; returns how many events left it."""
        try:
            return self._buffer.drain(self._send, batch_size=SHIP_BATCH, max_batches=1)
        except Exception as exc:  # the destination is away (or the buffer busy): events stay buffered
            log.debug("events: delivery deferred: %s", exc)
            return 0

    def _send(self, records: list[Record]) -> None:
        self._destination.send([payload["line"].encode("utf-8") for _, payload in records])

    def flush(self, timeout: float = 5.0) -> None:
        """Deliver or buffer every queued event, and try the buffer once (worker shutdown, tests)."""
        deadline = time.monotonic() + timeout
        with self._shipping:
            while not self._deliver_queued() and time.monotonic() < deadline:
                time.sleep(0.05)
            while self.ship() == SHIP_BATCH and time.monotonic() < deadline:
                pass
        if self._unsent:
            log.error("events: %d events could be neither sent nor buffered before shutdown", len(self._unsent))

    def close(self) -> None:
        """Stop the shipper thread, then deliver or buffer what is queued (worker exit)."""
        self._stopping.set()
        self.flush()


def create_emitter(
    logstash_host: str, logstash_port: int, event_file: Path, buffer_path: Path, service_version: str
) -> EventEmitter:
    """Logstash when a host is configured, else the JSON-lines file."""
    destination: Destination = (
        LogstashHttpDestination(logstash_host, logstash_port) if logstash_host else FileDestination(event_file)
    )
    return EventEmitter(Spool(buffer_path, synchronous="NORMAL"), destination, service_version)

