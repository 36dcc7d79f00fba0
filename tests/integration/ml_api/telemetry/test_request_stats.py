"""Request counts and latency histograms: recorded in memory, added up in MySQL, never lost on a failed flush."""

import threading
from dataclasses import replace

import mysql.connector
import numpy as np
import pytest

from ml_api.errors import DatabaseUnavailable
from ml_api.infra.database import Database
from ml_api.telemetry import request_stats
from ml_api.telemetry.request_stats import (
    LATENCY_BOUNDS_MS,
    OVERFLOW_BUCKET,
    RequestStats,
    latency_bucket,
    latency_percentile,
)
from tests.conftest import free_port
from tests.waiting import wait_until

MINUTE = 28_500_000  # a fixed minute (Unix time DIV 60) in 2024


def fixed_clock(minute: int = MINUTE):
    return lambda: minute * 60 + 30.0


def experiment_id(db: Database, name: str) -> int:
    with db.connection() as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT id FROM experiments WHERE name = %s", (name,))
        return cursor.fetchone()[0]


def flusher_threads() -> int:
    return sum(thread.name == "request-stats-flusher" for thread in threading.enumerate())


def rows(db: Database, table: str, eid: int) -> list[tuple]:
    columns = "variant, minute, latency_bucket" if table == "request_stats" else "variant, latency_bucket"
    with db.connection() as conn:
        cursor = conn.cursor()
        cursor.execute(f"SELECT {columns}, requests, errors, fallbacks FROM {table} WHERE experiment_id = %s"
                       f" ORDER BY {columns}", (eid,))
        return [tuple(int(v) if not isinstance(v, str) else v for v in row) for row in cursor.fetchall()]


@pytest.mark.parametrize("latency,bucket", [
    (0.0, 0), (0.25, 0), (0.2501, 1), (LATENCY_BOUNDS_MS[10], 10), (LATENCY_BOUNDS_MS[10] * 1.0001, 11),
    (250.0, 40), (16384.0, 64), (16384.1, OVERFLOW_BUCKET), (1e9, OVERFLOW_BUCKET),
])
def test_latency_buckets_are_log_spaced_with_inclusive_upper_bounds(latency, bucket):
    assert latency_bucket(latency) == bucket


def test_percentiles_from_the_histogram_are_within_one_bucket_of_the_truth():
    latencies = np.random.default_rng(3).lognormal(mean=np.log(40), sigma=0.8, size=20_000)
    histogram: dict[int, int] = {}
    for value in latencies:
        histogram[latency_bucket(value)] = histogram.get(latency_bucket(value), 0) + 1
    for q in (0.5, 0.95, 0.99):
        assert latency_percentile(histogram, q) == pytest.approx(np.quantile(latencies, q), rel=0.19)
    assert latency_percentile({}, 0.95) is None
    assert latency_percentile({OVERFLOW_BUCKET: 5}, 0.95) == LATENCY_BOUNDS_MS[-1]


def test_flush_adds_counts_per_minute_and_in_total_across_workers(db, make_experiment):
    eid = experiment_id(db, make_experiment())
    worker_1, worker_2 = RequestStats(db, clock=fixed_clock()), RequestStats(db, clock=fixed_clock(MINUTE + 1))
    for _ in range(3):
        worker_1.record(eid, "control", 10.0)
    worker_1.record(eid, "variation", 10.0, fallback=True)
    worker_1.record(eid, "variation", 300.0, error=True)
    assert worker_1.flush() == 3
    worker_2.record(eid, "variation", 10.0)
    worker_2.flush()
    worker_1.record(eid, "control", 10.0)
    worker_1.flush()

    b10, b300 = latency_bucket(10.0), latency_bucket(300.0)
    assert rows(db, "request_stats", eid) == [
        ("control", MINUTE, b10, 4, 0, 0),
        ("variation", MINUTE, b10, 1, 0, 1),
        ("variation", MINUTE, b300, 1, 1, 0),
        ("variation", MINUTE + 1, b10, 1, 0, 0),
    ]
    assert rows(db, "request_totals", eid) == [
        ("control", b10, 4, 0, 0), ("variation", b10, 2, 0, 1), ("variation", b300, 1, 1, 0),
    ]
    assert worker_1.pending() == {} and worker_1.flush() == 0


def test_a_failed_flush_keeps_the_counts_for_the_next_one(db, make_experiment):
    eid = experiment_id(db, make_experiment())
    stats = RequestStats(db, clock=fixed_clock())
    stats.record(eid, "control", 10.0)
    stats.record(eid, "control", 10.0, error=True)
    with db.connection() as conn:
        conn.cursor().execute("RENAME TABLE request_totals TO request_totals_away")
    try:
        with pytest.raises(mysql.connector.Error, match="request_totals"):
            stats.flush()  # the minute rows were written, then the transaction failed and rolled back
    finally:
        with db.connection() as conn:
            conn.cursor().execute("RENAME TABLE request_totals_away TO request_totals")
    assert rows(db, "request_stats", eid) == []
    stats.record(eid, "control", 10.0, fallback=True)  # recorded while the failed batch was away
    assert stats.pending() == {(eid, "control", MINUTE, latency_bucket(10.0)): [3, 1, 1]}
    stats.flush()
    assert rows(db, "request_totals", eid) == [("control", latency_bucket(10.0), 3, 1, 1)]


def test_unreachable_mysql_keeps_the_counts(config):
    stats = RequestStats(Database(replace(config.mysql, port=free_port())), clock=fixed_clock())
    stats.record(1, "control", 10.0)
    with pytest.raises(DatabaseUnavailable):
        stats.flush()
    assert stats.pending() == {(1, "control", MINUTE, latency_bucket(10.0)): [1, 0, 0]}


def test_record_is_thread_safe(db):
    stats = RequestStats(db, clock=fixed_clock())

    def hammer() -> None:
        for i in range(2_000):
            stats.record(1, "control", 5.0, fallback=i % 2 == 0)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stats.pending() == {(1, "control", MINUTE, latency_bucket(5.0)): [16_000, 0, 8_000]}


def test_the_background_thread_flushes_on_its_own(db, make_experiment):
    eid = experiment_id(db, make_experiment())
    stats = RequestStats(db, interval=0.05, clock=fixed_clock())
    before = flusher_threads()
    stats.start()
    stats.start()
    assert flusher_threads() == before + 1
    stats.record(eid, "variation", 12.0)
    written = wait_until(lambda: rows(db, "request_totals", eid), interval=0.05, message="the flusher wrote the totals")
    assert written == [("variation", latency_bucket(12.0), 1, 0, 0)]


def test_old_minute_rows_are_pruned_once_an_hour_and_the_totals_kept(db, make_experiment, monkeypatch):
    monkeypatch.setattr(request_stats, "PRUNE_BATCH_ROWS", 2)  # several batches for one variant
    eid = experiment_id(db, make_experiment())
    for days_ago in (3, 2.5, 2, 1.5):  # four old minutes, past a one-day retention
        old = RequestStats(db, clock=fixed_clock(MINUTE - int(days_ago * 1440)))
        old.record(eid, "control", 5.0)
        old.flush()
    recent = RequestStats(db, clock=fixed_clock(MINUTE - 10))
    recent.record(eid, "variation", 5.0)
    recent.flush()

    now = [MINUTE * 60 + 30.0]
    pruner = RequestStats(db, clock=lambda: now[0], retention_minutes=1440)
    pruner.record(eid, "control", 7.0)
    pruner.tick()  # the flusher thread's first run prunes
    assert [row[:2] for row in rows(db, "request_stats", eid)] == [("control", MINUTE), ("variation", MINUTE - 10)]
    totals: dict[str, int] = {}
    for variant, _, requests, _, _ in rows(db, "request_totals", eid):
        totals[variant] = totals.get(variant, 0) + requests
    assert totals == {"control": 5, "variation": 1}  # what was pruned still counts in the totals

    late = RequestStats(db, clock=fixed_clock(MINUTE - 2 * 1440))  # another worker's old minute
    late.record(eid, "control", 5.0)
    late.flush()
    pruner.tick()  # within the hour: no prune
    assert len(rows(db, "request_stats", eid)) == 3
    now[0] += request_stats.PRUNE_INTERVAL_SECONDS
    pruner.tick()
    assert len(rows(db, "request_stats", eid)) == 2


def test_retention_zero_keeps_every_row(db, make_experiment):
    eid = experiment_id(db, make_experiment())
    old = RequestStats(db, clock=fixed_clock(MINUTE - 100 * 1440))
    old.record(eid, "control", 5.0)
    old.flush()
    keeper = RequestStats(db, clock=fixed_clock())
    keeper.record(eid, "control", 5.0)
    keeper.tick()
    assert len(rows(db, "request_stats", eid)) == 2
