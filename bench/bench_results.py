"""How long the results of a large experiment take: 1,000,000 exposures, 200,000 outcomes.

    python bench/bench_results.py [--users 1000000] [--outcomes 200000] [--days 7] [--repeat 5] [--load insert]
                                  [--metrics] [--covariates 200000] [--keep | --load-only | --reuse DATABASE]

``--metrics`` declares three feedback metrics (the ``outcome`` conversion as primary, a
``revenue`` mean capped at its 99th percentile with a CUPED covariate, ``revenue`` per
``orders`` as a ratio) and spreads the outcome rows over them; ``--covariates`` users get a
pre-experiment value of the covariate.

Creates its own database (``<MYSQL_DATABASE>_bench_<random>``), bulk-loads synthetic
exposures, outcomes and per-minute request statistics (LOAD DATA LOCAL INFILE when the
server allows it, multi-row INSERTs otherwise), times the catch-up fold of everything loaded
(``results.fold``: the first results read after a bulk load, or the background folder,
does it), then the SQL aggregation and the whole results document, the results page (GET
results.html through the app) and each SQL statement of the aggregation, prints the figures
and drops the database. Targets: the document under one second, the page under two.
Loading ten million exposures takes tens of minutes on a small machine: ``--keep`` keeps
the loaded database (``--load-only``: and times nothing), ``--reuse`` times it later (its
schema upgraded first, so a database loaded by an older version shows what its upgrade and
first fold cost).
"""

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import mysql.connector
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as `python bench/<script>.py`

from ml_api import create_app  # noqa: E402
from ml_api.config import Config, MySQLSettings, load_config  # noqa: E402
from ml_api.experiments.definitions import VariantSpec  # noqa: E402
from ml_api.experiments.repository import ExperimentRepository  # noqa: E402
from ml_api.infra.database import Database, apply_schema  # noqa: E402
from ml_api.results.document import (
    build_results,  # noqa: E402
    experiment_results,  # noqa: E402
)
from ml_api.results.fold import dirty_rows, fold  # noqa: E402
from ml_api.results.query import fetch_aggregates  # noqa: E402
from ml_api.telemetry.request_stats import latency_bucket  # noqa: E402

EXPERIMENT = "bench-results"
BENCH_METRICS = {
    "primary": {"name": "outcome", "type": "conversion"},
    "secondary": [{"name": "revenue", "type": "mean", "cap": {"quantile": 0.99}, "covariate": "revenue_before"},
                  {"name": "revenue_per_order", "type": "ratio", "numerator": "revenue", "denominator": "orders"}],
}
FEEDBACK_METRICS = ("outcome", "revenue", "orders")
START = datetime(2024, 1, 1)
INSERT_CHUNK = 10_000
TABLE_COLUMNS = {
    "assignments": ("experiment_id", "user_id", "variant", "assigned_at"),
    "outcomes": ("feedback_id", "experiment_id", "user_id", "variant", "value", "recorded_at", "metric"),
    "metric_covariates": ("experiment_id", "covariate", "user_id", "value", "recorded_at"),
    "request_stats": ("experiment_id", "variant", "minute", "latency_bucket", "requests", "errors", "fallbacks"),
    "request_totals": ("experiment_id", "variant", "latency_bucket", "requests", "errors", "fallbacks"),
}
Row = Sequence[object]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000, help="exposed users")
    parser.add_argument("--outcomes", type=int, default=200_000, help="outcome rows")
    parser.add_argument("--days", type=float, default=7.0, help="span of the exposures")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--metrics", action="store_true", help="declare three metrics and spread outcomes over them")
    parser.add_argument("--covariates", type=int, default=0, help="users with a CUPED covariate value (with --metrics)")
    parser.add_argument("--keep", action="store_true", help="keep the loaded database (its name is printed)")
    parser.add_argument("--load-only", action="store_true", help="load and keep the database, time nothing")
    parser.add_argument("--reuse", metavar="DATABASE",
                        help="time a database kept by --keep (its schema upgraded first) instead of loading one")
    parser.add_argument("--load", choices=("auto", "infile", "insert"), default="auto",
                        help="bulk load: LOAD DATA LOCAL INFILE when the server allows it (auto), or force one")
    return parser.parse_args(argv)


@contextmanager
def bench_database(settings: MySQLSettings, reuse: str | None = None, keep: bool = False) -> Iterator[MySQLSettings]:
    """A private database with the schema applied (``reuse``: an existing one, upgraded), dropped afterwards
    unless it is reused or ``keep``."""
    name = reuse or f"{settings.database}_bench_{secrets.token_hex(4)}"
    admin = mysql.connector.connect(host=settings.host, port=settings.port, user=settings.user,
                                    password=settings.password, autocommit=True)
    if not reuse:
        admin.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    try:
        private = MySQLSettings(**{**settings.__dict__, "database": name})
        with Database(private).connection() as conn:
            started = time.perf_counter()
            apply_schema(conn)
            print(f"schema applied to {name} in {time.perf_counter() - started:.1f} s")
        yield private
    finally:
        if not (reuse or keep):
            admin.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


def synthetic_rows(experiment_id: int, users: int, outcomes: int, days: float, seed: int,
                   metrics: Sequence[str] = ("outcome",), covariates: int = 0) -> dict[str, list[Row]]:
    """Exposures split 50/50 over ``days``; outcomes (the variation converts more often) spread over ``metrics``;
    ``covariates`` users with a pre-experiment value; request stats per minute."""
    rng = np.random.default_rng(seed)
    span = days * 86400
    variant_of = np.where(rng.random(users) < 0.5, "control", "variation")
    assigned = np.sort(rng.random(users) * span)
    variants, seconds = variant_of.tolist(), assigned.tolist()
    # In primary-key order (user ids sort as strings): InnoDB appends instead of splitting pages.
    assignments = [(experiment_id, f"u{i}", variants[i], START + timedelta(seconds=seconds[i]))
                   for i in sorted(range(users), key=lambda i: f"u{i}")]
    # Outcomes go to a fifth of the users (several to some); the variation converts a little more often.
    who = rng.integers(0, users, outcomes)
    rate = np.where(variant_of[who] == "variation", 0.55, 0.50)
    value = np.where(rng.random(outcomes) < rate, 1.0, 0.0) * rng.exponential(20.0, outcomes)
    delay = rng.exponential(3600.0, outcomes)
    metric = rng.integers(0, len(metrics), outcomes).tolist()
    outcome_rows = [
        (secrets.token_hex(16), experiment_id, f"u{u}", variants[u], v, START + timedelta(seconds=seconds[u] + d),
         metrics[m])
        for u, v, d, m in zip(who.tolist(), value.tolist(), delay.tolist(), metric)
    ]
    covariate_rows = [(experiment_id, "revenue_before", f"u{u}", round(float(x), 2), START)
                      for u, x in zip(sorted(rng.choice(users, covariates, replace=False).tolist()),
                                      rng.exponential(20.0, covariates))] if covariates else []
    request_rows, totals = [], {}
    buckets = sorted({latency_bucket(ms) for ms in (3, 5, 8, 12, 20, 35, 60, 120)})
    first_minute = int(START.replace(tzinfo=timezone.utc).timestamp()) // 60
    for minute in range(first_minute, first_minute + int(span // 60)):
        for variant in ("control", "variation"):
            for b in buckets:
                fallbacks = int(variant == "variation" and minute % 50 == 0)
                request_rows.append((experiment_id, variant, minute, b, 10, 0, fallbacks))
                summed = totals.setdefault((experiment_id, variant, b), [0, 0, 0])
                summed[0] += 10
                summed[2] += fallbacks
    # Covariates first: pre-experiment values, marked with the variant by the exposures' trigger.
    return {"metric_covariates": covariate_rows, "assignments": assignments, "outcomes": outcome_rows,
            "request_stats": request_rows, "request_totals": [(*key, *counts) for key, counts in totals.items()]}


def local_infile_enabled(db: Database) -> bool:
    with db.connection() as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT @@local_infile")
        (enabled,) = cursor.fetchone()
    return bool(enabled)


def load_local_infile(settings: MySQLSettings, table: str, rows: list[Row]) -> None:
    """One LOAD DATA LOCAL INFILE from a temporary tab-separated file."""
    with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False) as handle:
        handle.write("".join("\t".join(str(value) for value in row) + "\n" for row in rows))
    try:
        conn = mysql.connector.connect(host=settings.host, port=settings.port, user=settings.user,
                                       password=settings.password, database=settings.database,
                                       allow_local_infile=True, time_zone="+00:00")
        columns = ", ".join(TABLE_COLUMNS[table])
        conn.cursor().execute(f"LOAD DATA LOCAL INFILE %s INTO TABLE {table} ({columns})", (handle.name,))
        conn.commit()
        conn.close()
    finally:
        os.unlink(handle.name)


def load_multirow_inserts(db: Database, table: str, rows: list[Row]) -> None:
    """INSERTs of INSERT_CHUNK rows each (the connector turns executemany into multi-row VALUES)."""
    columns = TABLE_COLUMNS[table]
    statement = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
    with db.transaction() as conn:
        cursor = conn.cursor()
        for start in range(0, len(rows), INSERT_CHUNK):
            cursor.executemany(statement, rows[start:start + INSERT_CHUNK])


class TimingCursor:
    """A cursor that adds each statement's time (execute and fetch) to ``durations``, keyed by its SQL text."""

    def __init__(self, cursor, durations: dict[str, list[float]]) -> None:
        self._cursor, self._durations, self._statement = cursor, durations, ""

    def execute(self, statement: str, params: Sequence[object] = ()) -> None:
        self._statement = " ".join(statement.split())
        self._durations.setdefault(self._statement, []).append(0.0)
        self._timed(self._cursor.execute, statement, params)

    def fetchall(self) -> list[Row]:
        return self._timed(self._cursor.fetchall)

    def fetchone(self) -> Row | None:
        return self._timed(self._cursor.fetchone)

    def _timed(self, fn: Callable, *args: object):
        started = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self._durations[self._statement][-1] += time.perf_counter() - started

    def __getattr__(self, name: str):
        return getattr(self._cursor, name)


class TimingConnection:
    """A connection whose cursors time their statements."""

    def __init__(self, conn, durations: dict[str, list[float]]) -> None:
        self._conn, self._durations = conn, durations

    def cursor(self, *args: object, **kwargs: object) -> TimingCursor:
        return TimingCursor(self._conn.cursor(*args, **kwargs), self._durations)

    def __getattr__(self, name: str):
        return getattr(self._conn, name)


class TimingDatabase(Database):
    """The pool, handing out connections that time every statement (per SQL text, per call)."""

    def __init__(self, settings: MySQLSettings) -> None:
        super().__init__(settings)
        self.durations: dict[str, list[float]] = {}

    @contextmanager
    def connection(self) -> Iterator:
        with super().connection() as conn:
            yield TimingConnection(conn, self.durations)


def show_queries(durations: dict[str, list[float]], runs: int) -> None:
    """Each statement's median time per document (summed over its calls in one document), slowest first."""
    per_run = {sql: [sum(times[i::runs]) for i in range(runs)] for sql, times in durations.items()
               if len(times) % runs == 0}
    for sql, times in sorted(per_run.items(), key=lambda item: -statistics.median(item[1])):
        calls = len(durations[sql]) // runs
        print(f"  {statistics.median(times) * 1000:8.1f} ms  x{calls:<3} {sql[:110]}")


def results_page(settings: MySQLSettings) -> Callable[[], bytes]:
    """GET /experiments/<name>/results.html through the app (the document and the page drawn from it)."""
    # A throwaway pseudonym key: the page reads no user ids, but the app refuses to start without one.
    client = create_app({"MYSQL_DATABASE": settings.database, "USER_HASH_KEY": secrets.token_hex(16)}).test_client()

    def get() -> bytes:
        response = client.get(f"/experiments/{EXPERIMENT}/results.html")
        assert response.status_code == 200, response.status_code
        return response.data

    return get


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    durations = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        durations.append(time.perf_counter() - started)
    return durations


def show(label: str, durations: list[float]) -> None:
    print(f"{label:<37} min {min(durations) * 1000:7.0f} ms   median {statistics.median(durations) * 1000:7.0f} ms"
          f"   max {max(durations) * 1000:7.0f} ms")


def load(db: Database, settings: MySQLSettings, config: Config, args: argparse.Namespace) -> None:
    """The experiment and its synthetic record, bulk-loaded through the schema's triggers."""
    repo = ExperimentRepository(db, config.model_files)
    model = sorted(config.model_files)[0]
    experiment = repo.create(EXPERIMENT, [VariantSpec("control", 50, model), VariantSpec("variation", 50, model)],
                             actor="bench", status="running", metrics=BENCH_METRICS if args.metrics else None)
    started = time.perf_counter()
    metrics, covariates = (FEEDBACK_METRICS, args.covariates) if args.metrics else (("outcome",), 0)
    data = synthetic_rows(experiment.id, args.users, args.outcomes, args.days, args.seed, metrics, covariates)
    print(f"generated rows in {time.perf_counter() - started:.1f} s:",
          ", ".join(f"{table} {len(rows):,}" for table, rows in data.items()))
    infile = args.load == "infile" or (args.load == "auto" and local_infile_enabled(db))
    for table in list(data):
        rows = data.pop(table)
        if not rows:
            continue
        started = time.perf_counter()
        if infile:
            load_local_infile(settings, table, rows)
        else:
            load_multirow_inserts(db, table, rows)
        print(f"loaded {table} in {time.perf_counter() - started:.1f} s"
              f" ({'LOAD DATA LOCAL INFILE' if infile else 'multi-row INSERT'})")
    with db.connection() as conn:
        cursor = conn.cursor()
        cursor.execute("ANALYZE TABLE assignments, outcomes, exposure_counts, metric_users, metric_covariates,"
                       " request_totals")
        cursor.fetchall()


def catch_up(db: Database) -> None:
    """The first fold of everything loaded (every per-user row is dirty after a bulk load or an upgrade)."""
    with db.connection() as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT id FROM experiments WHERE name = %s", (EXPERIMENT,))
        (experiment_id,) = cursor.fetchone()
    waiting = dirty_rows(db, experiment_id)
    started = time.perf_counter()
    users = fold(db, experiment_id)
    elapsed = time.perf_counter() - started
    print(f"catch-up fold: {waiting:,} dirty rows, {users:,} users in {elapsed:.1f} s"
          f" ({users / max(elapsed, 1e-9):,.0f} users/s)")


def run(config: Config, args: argparse.Namespace) -> None:
    with bench_database(config.mysql, args.reuse, args.keep or args.load_only) as settings:
        db = Database(settings)
        if not args.reuse:
            load(db, settings, config, args)
        if args.load_only:
            return
        catch_up(db)
        timed(lambda: experiment_results(db, EXPERIMENT), 1)  # warm the buffer pool and the connection pool
        show("SQL aggregation (fetch_aggregates)", timed(lambda: fetch_aggregates(db, EXPERIMENT), args.repeat))
        show("statistics document (build_results)", timed(lambda: build_results(db, EXPERIMENT), args.repeat))
        durations = timed(lambda: experiment_results(db, EXPERIMENT), args.repeat)
        show("GET /results document", durations)
        timing = TimingDatabase(settings)
        timed(lambda: fetch_aggregates(timing, EXPERIMENT), 1)
        timing.durations.clear()
        timed(lambda: fetch_aggregates(timing, EXPERIMENT), args.repeat)
        print(f"SQL statements of fetch_aggregates, median of {args.repeat} runs:")
        show_queries(timing.durations, args.repeat)
        page = results_page(settings)
        page_durations = timed(page, args.repeat)
        show("GET /results.html page (server)", page_durations)
        results = experiment_results(db, EXPERIMENT)
        users = {v["variant"]: v["users"] for v in results["variants"]}
        print(f"users {users}, timeline points {len(results['timeline'])}, decision: {results['decision']['reason']}")
        median = statistics.median(durations)
        print(f"{'PASS' if median < 1.0 else 'FAIL'}: median {median * 1000:.0f} ms (target < 1000 ms)")
        page_median = statistics.median(page_durations)
        print(f"{'PASS' if page_median < 2.0 else 'FAIL'}: page median {page_median * 1000:.0f} ms"
              f" ({len(page()):,} bytes; target < 2000 ms)")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    run(load_config(os.environ), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
