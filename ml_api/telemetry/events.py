"""One structured event per request, shipped to Logstash off the request path.

Delivery path and guarantees:

1. ``emit`` encodes the event's nested fields (``event_kinds``), appends the line to this
   worker's journal file (``journal``: one write into the page cache, which outlives a
   killed worker) and to an in-memory queue: no network, no exception into the request.
2. A background thread per worker takes what was queued every ``BATCH_WINDOW_SECONDS`` and
   POSTs it as JSON lines to Logstash's http input (``logstash_http``), or appends it to
   the JSON-lines file ``EVENT_FILE`` when ``LOGSTASH_HOST`` is empty; the journal file of
   those events is deleted once they were delivered or buffered (3.), and journals of
   workers that were killed are moved into the buffer by the workers that remain.
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
import threading
import time
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import orjson

from ml_api.errors import SpoolUnavailable
from ml_api.infra.background import current_pid
from ml_api.infra.random_hex import RandomHex
from ml_api.infra.spool import Record, Spool
from ml_api.telemetry.journal import EventJournal, read_lines
from ml_api.telemetry.logstash_http import LogstashHttpDestination

log = logging.getLogger(__name__)

SERVICE_NAME = "ml-gateway"
DATASET = "abtest.events"
# The ECS version whose field definitions the events follow (ecs.version in every event).
ECS = {"version": "8.11.0"}
QUEUE_LIMIT = 100_000
SHIP_INTERVAL_SECONDS = 0.5
SHIP_BATCH = 1000
# Events gathered in memory (and in the journal) before they are sent together: one send
# per window, not per event.
BATCH_WINDOW_SECONDS = 0.2


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

    def __init__(self, buffer: Spool, destination: Destination, service_version: str,
                 journal: EventJournal | None = None) -> None:
        self._buffer = buffer
        self._destination = destination
        self._journal = journal
        # Encoded events, in the order they were journaled. Appended and taken under _queue_lock,
        # so each journal file holds exactly the events of one take.
        self._queued: deque[bytes] = deque()
        self._queue_lock = threading.Lock()
        # The same objects in every event (only read when encoding).
        self._host = {"name": socket.gethostname()}
        self._service = {"name": SERVICE_NAME, "version": service_version}
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._shipping = threading.Lock()  # the shipper thread, or flush(), one at a time
        self._stopping = threading.Event()
        self._direct_after = 0.0  # monotonic time before which batches go to the buffer
        self._unsent: list[bytes] = []  # taken from the queue, but neither sent nor buffered yet
        self._settling: list[Path] = []  # journal files of events taken but not yet sent or buffered
        self._event_ids = RandomHex(32)

    def emit(self, action: str, fields: dict[str, Any]) -> None:
        """Encode and queue one event (``fields`` nested, as ``event_kinds`` builds them); never raises.

        Once this returns, the event is in this worker's journal file (when the shipper runs):
        the request may be answered, and a worker killed now does not lose the event."""
        line = self._encode(time.time(), current_pid(), action, fields)
        with self._queue_lock:
            if self._journal is not None:
                try:
                    self._journal.append(line)
                except OSError as exc:  # disk full: the event still travels, from memory only
                    log.error("events: journal write failed (%s)", exc)
            if len(self._queued) < QUEUE_LIMIT:
                self._queued.append(line)
                return
        # The shipper thread is far behind: keep the event on disk rather than drop it.
        try:
            self._buffer.put("event", {"line": line.decode("utf-8")})
        except SpoolUnavailable:
            log.error("events: queue full and buffer busy, event dropped: %s %s", action, fields)

    def start(self) -> None:
        """Open this worker's journal and start the shipper thread, once (the services start it after
        gunicorn's fork, so the journal is named after the worker).

        Until then events wait in the queue only; ``flush`` delivers them without the thread."""
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                if self._journal is not None and not self._journal.is_open:
                    with self._queue_lock:
                        self._journal.open()
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
                    self.recover_orphans()
                    while self.ship() == SHIP_BATCH and not self._stopping.is_set():
                        pass  # more is waiting in the buffer

    def _take_queued(self) -> list[bytes]:
        """Everything queued, and the journal moved on to a new file (the old one holds exactly these)."""
        with self._queue_lock:
            lines = list(self._queued)
            self._queued.clear()
            if lines and self._journal is not None and (old := self._journal.rotate()) is not None:
                self._settling.append(old)
        return lines

    def _deliver_queued(self) -> bool:
        """Everything queued to the destination, or, if that fails, to the disk buffer; then the
        journal files of those events are deleted.

        False when the buffer was busy too: the rest is kept and tried again next time."""
        if not self._unsent:
            self._unsent = self._take_queued()
        while self._unsent:
            lines = self._unsent[:SHIP_BATCH]
            if time.monotonic() >= self._direct_after:
                try:
                    self._destination.send(lines)
                    del self._unsent[:len(lines)]
                    continue
                except Exception as exc:  # the destination is away: the buffer takes over for a while
                    log.debug("events: destination failed (%s), %d events buffered", exc, len(lines))
                    self._direct_after = time.monotonic() + SHIP_INTERVAL_SECONDS
            try:
                self._buffer.put_many([("event", {"line": line.decode("utf-8")}) for line in lines])
                del self._unsent[:len(lines)]
            except SpoolUnavailable as exc:  # another worker holds the buffer
                log.warning("events: buffer busy (%s), %d events wait", exc, len(self._unsent))
                return False
        EventJournal.discard(self._settling)
        self._settling = []
        return True

    def recover_orphans(self) -> int:
        """Move the journal files of workers that no longer run into the disk buffer; how many events."""
        if self._journal is None or not self._journal.is_open:
            return 0
        recovered = 0
        for path in self._journal.orphans():
            lines = read_lines(path)
            try:
                for start in range(0, len(lines), SHIP_BATCH):
                    chunk = lines[start:start + SHIP_BATCH]
                    self._buffer.put_many([("event", {"line": line.decode("utf-8")}) for line in chunk])
            except SpoolUnavailable as exc:  # busy: the claimed file is taken up again later
                log.warning("events: buffer busy (%s), journal %s waits", exc, path.name)
                continue
            path.unlink(missing_ok=True)
            recovered += len(lines)
        if recovered:
            log.warning("events: %d events of stopped workers recovered from their journals", recovered)
        return recovered

    def _encode(self, at: float, pid: int, action: str, fields: dict[str, Any]) -> bytes:
        event = {"@timestamp": timestamp(at), **without_none(fields)}
        event["event"] = {"id": self._event_ids.next(), "action": action, "dataset": DATASET, **event.get("event", {})}
        event["ecs"] = ECS
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
            while not (self._deliver_queued() and not self._queued) and time.monotonic() < deadline:
                time.sleep(0.05)
            while self.ship() == SHIP_BATCH and time.monotonic() < deadline:
                pass
        if self._unsent:
            log.error("events: %d events could be neither sent nor buffered before shutdown; "
                      "they stay in this worker's journal for another worker to recover", len(self._unsent))

    def close(self) -> None:
        """Stop the shipper thread, then deliver or buffer what is queued (worker exit)."""
        self._stopping.set()
        self.flush()
        if self._journal is not None and not self._unsent and not self._queued:
            with self._queue_lock:
                self._journal.close()


def create_emitter(
    logstash_host: str, logstash_port: int, event_file: Path, buffer_path: Path, service_version: str
) -> EventEmitter:
    """Logstash when a host is configured, else the JSON-lines file."""
    destination: Destination = (
        LogstashHttpDestination(logstash_host, logstash_port) if logstash_host else FileDestination(event_file)
    )
    journal = EventJournal(buffer_path.with_name(buffer_path.name + ".journal"))
    return EventEmitter(Spool(buffer_path, synchronous="NORMAL"), destination, service_version, journal)

