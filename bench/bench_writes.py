"""MySQL writes per new user and per outcome, counted by the server, and the bytes they keep.

    python bench/bench_writes.py [--users 2000] [--outcomes 2000] [--threads 1] [--fold-every 0]

Creates its own database (``<MYSQL_DATABASE>_bench_<random>``) and Redis key prefix,
builds the gateway in-process (its request path, without HTTP), sends ``--users``
``POST /predict`` for new users, then ``--users`` for the same users again (returning: no
write expected), then ``--outcomes`` ``POST /feedback``, and prints for each phase the rows
changed per table and per request, from MariaDB's table statistics
(``information_schema.TABLE_STATISTICS``; the ``userstat`` switch is turned on for the run
and restored after, so it needs MySQL's admin user), the commits of the gateway's
connections and the time per request (in process, no HTTP: the model and the writes).
``--threads`` sends the feedback from that many threads at once, ``--fold-every`` runs a
results fold of the experiment every that many seconds meanwhile (what the background
folder does), so the outcome path's waits for the folder's locks show in its time. Then
the bytes per exposure and per outcome the tables hold (data and indexes after ``ANALYZE
TABLE``; InnoDB pages, so an estimate at small sizes). Everything it created is removed at
the end. Needs the demo models (``make models``).
"""

import argparse
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import mysql.connector
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as `python bench/<script>.py`

from bench.bench_results import bench_database  # noqa: E402
from ml_api import create_app  # noqa: E402
from ml_api.config import Config, load_config  # noqa: E402
from ml_api.experiments.definitions import VariantSpec  # noqa: E402
from ml_api.experiments.repository import ExperimentRepository  # noqa: E402
from ml_api.infra.background import PeriodicTask  # noqa: E402
from ml_api.infra.database import Database  # noqa: E402
from ml_api.results.fold import fold_running  # noqa: E402

EXPERIMENT = "bench-writes"
FEATURES = [5.9, 3.0, 5.1, 1.8]
# The tables a new user and an outcome write: the raw rows and the per-user rows their triggers keep.
STORED_TABLES = ("assignments", "exposure_counts", "outcomes", "metric_users")
TABLES = (*STORED_TABLES, "request_ids")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000, help="new users, each sent twice")
    parser.add_argument("--outcomes", type=int, default=2000, help="outcomes, spread over those users")
    parser.add_argument("--threads", type=int, default=1, help="threads sending the feedback")
    parser.add_argument("--fold-every", type=float, default=0.0, metavar="SECONDS",
                        help="fold the experiment's results every SECONDS while the feedback is sent (0: never)")
    return parser.parse_args(argv)


class TableStatistics:
    """Rows changed per table of one database, from MariaDB's userstat counters."""

    def __init__(self, config: Config, database: str) -> None:
        self._admin = mysql.connector.connect(host=config.mysql.host, port=config.mysql.port,
                                              user=config.mysql.admin_user, password=config.mysql.admin_password,
                                              autocommit=True)
        self._database = database
        cursor = self._admin.cursor()
        cursor.execute("SELECT @@GLOBAL.userstat")
        (self._was_on,) = cursor.fetchone()
        cursor.execute("SET GLOBAL userstat = 1")

    def rows_changed(self) -> dict[str, int]:
        cursor = self._admin.cursor()
        cursor.execute("SELECT TABLE_NAME, ROWS_CHANGED FROM information_schema.TABLE_STATISTICS"
                       " WHERE TABLE_SCHEMA = %s", (self._database,))
        return {table: int(rows) for table, rows in cursor.fetchall()}

    def commits(self, user: str) -> int:
        """Commits by ``user`` (the gateway's MySQL user) since the switch was turned on."""
        cursor = self._admin.cursor()
        cursor.execute("SELECT COMMIT_TRANSACTIONS FROM information_schema.USER_STATISTICS WHERE USER = %s", (user,))
        row = cursor.fetchone()
        return int(row[0]) if row else 0

    def bytes_per_row(self, table: str) -> tuple[int, float]:
        cursor = self._admin.cursor()
        cursor.execute(f"ANALYZE TABLE `{self._database}`.`{table}`")
        cursor.fetchall()
        cursor.execute("SELECT TABLE_ROWS, DATA_LENGTH + INDEX_LENGTH FROM information_schema.TABLES"
                       " WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", (self._database, table))
        rows, size = cursor.fetchone()
        return int(rows), size / max(1, int(rows))

    def close(self) -> None:
        if not self._was_on:
            self._admin.cursor().execute("SET GLOBAL userstat = 0")
        self._admin.close()


def phase(stats: TableStatistics, user: str, label: str, requests: int, send) -> None:
    """Run ``send`` and print the rows changed per table, the commits and the time, per request."""
    before, commits = stats.rows_changed(), stats.commits(user)
    started = time.perf_counter()
    send()
    elapsed = time.perf_counter() - started
    after = stats.rows_changed()
    changed = {table: after.get(table, 0) - before.get(table, 0) for table in sorted(set(after) | set(before))}
    rows = ", ".join(f"{table} {count / requests:.2f}" for table, count in changed.items() if count) or "none"
    print(f"{label:<44} {elapsed / requests * 1000:6.2f} ms/request   commits/request"
          f" {(stats.commits(user) - commits) / requests:5.2f}   rows changed/request: {rows}")


@contextmanager
def folding(db: Database, every: float) -> Iterator[None]:
    """Fold the experiment every ``every`` seconds in a thread while the block runs (0: not at all)."""
    if not every:
        yield
        return
    task = PeriodicTask("bench-fold", partial(fold_running, db), every)
    task.ensure_started()
    try:
        yield
    finally:
        task.stop()


def run(config: Config, args: argparse.Namespace) -> None:
    prefix = f"abtest-bench-{secrets.token_hex(4)}"
    cache = redis.Redis.from_url(config.redis_url)
    with bench_database(config.mysql) as settings, tempfile.TemporaryDirectory(prefix="bench-writes-") as tmp:
        stats = TableStatistics(config, settings.database)
        try:
            model = "logreg" if "logreg" in config.model_files else sorted(config.model_files)[0]
            ExperimentRepository(Database(settings), config.model_files).create(
                EXPERIMENT, [VariantSpec("control", 50, model), VariantSpec("variation", 50, model)],
                actor="bench", status="running")
            app = create_app({"MYSQL_DATABASE": settings.database, "REDIS_KEY_PREFIX": prefix,
                              "EVENT_FILE": f"{tmp}/events.jsonl", "EVENT_BUFFER_PATH": f"{tmp}/buffer.db",
                              "SPOOL_PATH": f"{tmp}/spool.db", "DEFINITIONS_SNAPSHOT_PATH": f"{tmp}/defs.json",
                              "MODEL_STATE_PATH": f"{tmp}/models.json", "LOGSTASH_HOST": "",
                              "USER_HASH_KEY": secrets.token_hex(16)})
            client = app.test_client()
            users = [f"writer-{i}" for i in range(args.users)]

            def predict_all() -> None:
                for user in users:
                    response = client.post("/predict", json={"user_id": user, "experiment": EXPERIMENT,
                                                             "features": FEATURES})
                    assert response.status_code == 200, response.get_data(as_text=True)

            def feedback(first: int) -> None:
                sender = app.test_client()
                for n in range(first, args.outcomes, args.threads):
                    response = sender.post("/feedback", json={"user_id": users[n % len(users)],
                                                              "experiment": EXPERIMENT, "outcome": n % 3 == 0})
                    assert response.status_code == 202, response.get_data(as_text=True)

            def feedback_all() -> None:
                with folding(Database(settings), args.fold_every):
                    with ThreadPoolExecutor(args.threads) as pool:
                        list(pool.map(feedback, range(args.threads)))

            print(f"MariaDB table statistics, database {settings.database}; {args.users:,} users, "
                  f"{args.outcomes:,} outcomes\n")
            phase(stats, settings.user, "POST /predict, new user", args.users, predict_all)
            phase(stats, settings.user, "POST /predict, returning user", args.users, predict_all)
            label = f"POST /feedback, {args.threads} thread{'s' * (args.threads > 1)}"
            label += f", fold every {args.fold_every:g} s" if args.fold_every else ""
            phase(stats, settings.user, label, args.outcomes, feedback_all)
            print()
            for table in STORED_TABLES:
                rows, per_row = stats.bytes_per_row(table)
                print(f"{table:<16} {rows:>8,} rows  {per_row:8.0f} bytes/row (data + indexes)")
        finally:
            stats.close()
            keys = list(cache.scan_iter(match=f"{prefix}:*", count=1000))
            if keys:
                cache.delete(*keys)


def main(argv: Sequence[str] | None = None) -> int:
    run(load_config(os.environ), parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
