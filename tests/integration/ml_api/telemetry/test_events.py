"""The event emitter with its real SQLite buffer and its JSON-lines file destination.

The destination is made to fail the way a file does (its directory disappears), and to
recover; acknowledged delivery to Logstash's http input is covered in ``test_logstash_http.py`` and end
to end in ``tests/e2e/test_event_shipping.py``.
"""

import json
import shutil
import threading

import numpy as np
import pytest

from ml_api.infra.spool import Spool
from ml_api.telemetry import events
from ml_api.telemetry.events import EventEmitter, FileDestination
from tests.waiting import wait_until


@pytest.fixture
def out_dir(tmp_path):
    return tmp_path / "out"


@pytest.fixture
def buffer(tmp_path):
    return Spool(tmp_path / "buffer.db", synchronous="NORMAL")


@pytest.fixture
def emitter(out_dir, buffer):
    emitter = EventEmitter(buffer, FileDestination(out_dir / "events.jsonl"), "9.9.9")
    yield emitter
    emitter.close()


def written(out_dir) -> list[dict]:
    path = out_dir / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_events_go_straight_to_the_destination_without_touching_the_buffer(emitter, out_dir, buffer):
    for n in range(300):
        emitter.emit("predict", {"experiment": {"name": "exp"}, "http": {"request": {"id": f"r{n}"}},
                                 "user": {"id": None}})
    emitter.flush()
    lines = written(out_dir)
    assert [e["http"]["request"]["id"] for e in lines] == [f"r{n}" for n in range(300)]
    assert len({e["event"]["id"] for e in lines}) == 300
    assert buffer.size() == 0
    first = lines[0]
    assert first["event"]["action"] == "predict" and first["service"]["version"] == "9.9.9"
    assert "user" not in first  # None fields are left out
    assert first["@timestamp"].endswith("Z")


def test_numpy_values_are_written_as_json_numbers(emitter, out_dir):
    emitter.emit("predict", {"prediction": {"probability": np.float64(0.25), "count": np.int64(3)},
                             "experiment": {"fallback": np.bool_(False)}})
    emitter.flush()
    (event,) = written(out_dir)
    assert event["prediction"] == {"probability": 0.25, "count": 3}
    assert event["experiment"]["fallback"] is False


def test_a_failing_destination_fills_the_buffer_and_everything_arrives_once_after(emitter, out_dir, buffer):
    shutil.rmtree(out_dir)  # the destination fails from now on
    for n in range(50):
        emitter.emit("predict", {"http": {"request": {"id": f"down-{n}"}}})
    emitter.flush()
    assert buffer.size() == 50 and written(out_dir) == []
    out_dir.mkdir()  # back: new events wait behind the buffer for a moment, then all go
    for n in range(10):
        emitter.emit("predict", {"http": {"request": {"id": f"up-{n}"}}})
    emitter.flush()
    ids = [e["http"]["request"]["id"] for e in written(out_dir)]
    assert sorted(ids) == sorted([f"down-{n}" for n in range(50)] + [f"up-{n}" for n in range(10)])
    assert buffer.size() == 0


def test_a_full_queue_keeps_events_on_disk(emitter, out_dir, buffer, monkeypatch):
    monkeypatch.setattr(events, "QUEUE_LIMIT", 5)
    for n in range(8):
        emitter.emit("predict", {"http": {"request": {"id": f"r{n}"}}})
    assert buffer.size() == 3
    emitter.flush()
    assert sorted(e["http"]["request"]["id"] for e in written(out_dir)) == [f"r{n}" for n in range(8)]


def test_the_shipper_thread_sends_without_being_asked(emitter, out_dir):
    emitter.start()
    emitter.emit("predict", {"http": {"request": {"id": "by-thread"}}})
    wait_until(lambda: written(out_dir), interval=0.05, message="the shipper thread wrote the event")
    assert [e["http"]["request"]["id"] for e in written(out_dir)] == ["by-thread"]


def test_workers_appending_to_one_file_never_interleave_lines(out_dir, tmp_path):
    workers = [EventEmitter(Spool(tmp_path / "shared.db", synchronous="NORMAL"),
                            FileDestination(out_dir / "events.jsonl"), "1") for _ in range(4)]
    long_text = "x" * 3000  # several kB per batch, well past any write buffer

    def work(worker: EventEmitter, number: int) -> None:
        for n in range(200):
            worker.emit("predict", {"error": {"message": long_text},
                                    "http": {"request": {"id": f"w{number}-{n}"}}})
            if n % 50 == 49:
                worker.flush()

    threads = [threading.Thread(target=work, args=(w, i)) for i, w in enumerate(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for worker in workers:
        worker.close()
    ids = [e["http"]["request"]["id"] for e in written(out_dir)]  # every line parses
    assert sorted(ids) == sorted(f"w{i}-{n}" for i in range(4) for n in range(200))
