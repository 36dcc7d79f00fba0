"""Acknowledged delivery: the emitter, its real SQLite buffer and the HTTP destination,
against a stand-in Logstash http input that acknowledges, refuses, and dies mid-batch."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ml_api.infra.spool import Spool
from ml_api.telemetry.events import EventEmitter
from ml_api.telemetry.logstash_http import DeliveryRefused, LogstashHttpDestination
from scripts.local_redis import free_port
from tests.logstash_standin import StandInLogstash
from tests.waiting import wait_until


@pytest.fixture
def logstash():
    standin = StandInLogstash(free_port())
    standin.start()
    yield standin
    standin.stop()


@pytest.fixture
def buffer(tmp_path):
    return Spool(tmp_path / "buffer.db", synchronous="NORMAL")


@pytest.fixture
def emitter(logstash, buffer):
    emitter = EventEmitter(buffer, LogstashHttpDestination("127.0.0.1", logstash.port, timeout=2.0), "9.9.9")
    yield emitter
    emitter.close()


def emit(emitter: EventEmitter, count: int, prefix: str = "r") -> set[str]:
    for n in range(count):
        emitter.emit("predict", {"http": {"request": {"id": f"{prefix}{n}"}}})
    return {f"{prefix}{n}" for n in range(count)}


def received_ids(logstash: StandInLogstash) -> set[str]:
    return {event["http"]["request"]["id"] for event in logstash.events()}


def test_acknowledged_batches_arrive_over_one_kept_alive_connection(emitter, logstash, buffer):
    sent = emit(emitter, 300)
    emitter.flush()
    sent |= emit(emitter, 300, prefix="s")
    emitter.flush()
    assert received_ids(logstash) == sent
    assert len(logstash.events()) == 600  # nothing twice when every batch was acknowledged
    assert buffer.size() == 0


def test_a_receiver_that_dies_mid_batch_loses_nothing(emitter, logstash, buffer):
    logstash.crash_during_next_batches(1)
    sent = emit(emitter, 500)
    emitter.flush()  # the batch was not acknowledged: it waits on disk
    assert logstash.crashes == 1
    wait_until(lambda: not logstash.running, message="the stand-in never finished dying")
    assert received_ids(logstash) == set()
    assert buffer.size() == 500

    logstash.start()  # Logstash restarts
    emitter.start()
    wait_until(lambda: received_ids(logstash) == sent,
               message=lambda: f"{len(sent - received_ids(logstash))} of 500 events never arrived")
    wait_until(lambda: buffer.size() == 0, message="the buffer kept events that were acknowledged")


def test_crashes_while_traffic_flows_lose_nothing(emitter, logstash, buffer):
    emitter.start()
    sent: set[str] = set()
    for round_ in range(4):  # crash in the middle of a batch, restart, go on
        sent |= emit(emitter, 200, prefix=f"round{round_}-")
        logstash.crash_during_next_batches(1)
        wait_until(lambda: not logstash.running, message="the stand-in never received a batch to die in")
        logstash.start()
    wait_until(lambda: received_ids(logstash) >= sent,
               message=lambda: f"{len(sent - received_ids(logstash))} of {len(sent)} events never arrived")
    assert logstash.crashes == 4


class Refusing(BaseHTTPRequestHandler):
    """Logstash's http input when its request queue is full: 429, nothing stored."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(429)
        self.send_header("Content-Length", "4")
        self.end_headers()
        self.wfile.write(b"busy")

    def log_message(self, *args: object) -> None:
        pass


def test_a_refusal_is_not_taken_as_delivery(buffer):
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        destination = LogstashHttpDestination("127.0.0.1", server.server_address[1], timeout=2.0)
        with pytest.raises(DeliveryRefused, match="429"):
            destination.send([b'{"a": 1}\n'])
        emitter = EventEmitter(buffer, destination, "9.9.9")
        emit(emitter, 10)
        emitter.flush()
        assert buffer.size() == 10
    finally:
        server.shutdown()
        server.server_close()


def test_nothing_listening_raises_at_once():
    with pytest.raises(OSError):
        LogstashHttpDestination("127.0.0.1", free_port(), timeout=2.0).send([b'{"a": 1}\n'])


def test_a_connection_the_server_closed_while_idle_is_replaced(logstash):
    destination = LogstashHttpDestination("127.0.0.1", logstash.port, timeout=2.0)
    destination.send([b'{"http": {"request": {"id": "before"}}}\n'])
    logstash.stop()
    logstash.start()  # the kept-alive connection is now dead
    destination.send([b'{"http": {"request": {"id": "after"}}}\n'])
    assert received_ids(logstash) == {"before", "after"}
