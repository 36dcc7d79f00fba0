"""The spool on a real SQLite file: a delivery never holds up an append, one worker drains at a
time, and an append SQLite refuses is an error the request can answer (503), not a 500."""

import sqlite3

import pytest

from ml_api.errors import SpoolUnavailable
from ml_api.infra import spool as spool_module
from ml_api.infra.spool import Spool


def exposure(user: str) -> dict:
    return {"experiment_id": 1, "user_id": user, "variant": "control", "at": "2026-01-01T00:00:00"}


def test_an_append_during_a_delivery_goes_in_at_once_and_is_delivered_next(tmp_path):
    spool = Spool(tmp_path / "spool.db")
    spool.put_many([("exposure", exposure(f"early-{n}")) for n in range(3)])
    batches: list[list[str]] = []

    def write(records):
        batches.append([payload["user_id"] for _, payload in records])
        if len(batches) == 1:  # a request spooling its record while this batch travels to MySQL
            Spool(spool.path).put("exposure", exposure("meanwhile"))

    assert spool.drain(write) == 4
    assert batches == [["early-0", "early-1", "early-2"], ["meanwhile"]]
    assert spool.size() == 0


def test_one_worker_of_the_host_drains_at_a_time(tmp_path):
    spool = Spool(tmp_path / "spool.db")
    spool.put("exposure", exposure("one"))
    other_worker = Spool(spool.path)
    seen_by_other: list = []
    turns: list[int] = []

    def write(records):
        turns.append(other_worker.drain(seen_by_other.extend))

    assert spool.drain(write) == 1
    assert turns == [0] and seen_by_other == []
    assert spool.size() == 0
    spool.put("exposure", exposure("two"))
    assert other_worker.drain(seen_by_other.extend) == 1  # the turn was given back


def test_a_failed_delivery_keeps_the_batch_and_gives_the_turn_back(tmp_path):
    spool = Spool(tmp_path / "spool.db")
    spool.put("outcome", {"feedback_id": "f1"})

    def failing(records):
        raise ConnectionError("MySQL went away")

    with pytest.raises(ConnectionError):
        spool.drain(failing)
    delivered: list = []
    assert spool.drain(delivered.extend) == 1
    assert delivered == [("outcome", {"feedback_id": "f1"})]


def test_an_append_sqlite_refuses_is_spool_unavailable_and_stores_nothing(tmp_path, monkeypatch):
    spool = Spool(tmp_path / "spool.db")
    monkeypatch.setattr(spool_module, "BUSY_TIMEOUT_SECONDS", 0.05)
    holder = sqlite3.connect(spool.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holding the write lock past the busy timeout
    try:
        with pytest.raises(SpoolUnavailable, match="could not take 1 records"):
            spool.put("exposure", exposure("refused"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert spool.size() == 0
