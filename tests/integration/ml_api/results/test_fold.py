"""The folded summaries equal the same sums computed in Python from the raw rows, however writes and folds
interleave: several metrics per user, covariates before and after outcomes, replays (same feedback_id),
conversions that move to an earlier hour, a fold rolled back halfway, outcomes written while a fold runs,
a database upgraded from before the folds; and the results document equals the one the per-user sums gave."""

import math
import random
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import mysql.connector
import pytest

from ml_api.errors import DatabaseUnavailable
from ml_api.experiments.covariates import record_covariates
from ml_api.experiments.definitions import VariantSpec
from ml_api.experiments.records import Recorder
from ml_api.experiments.repository import ExperimentRepository
from ml_api.infra.database import Database, apply_schema
from ml_api.infra.spool import Spool
from ml_api.results import fold as folding
from ml_api.results.document import evaluate
from ml_api.results.fold import dirty_rows, fold
from ml_api.results.query import fetch_aggregates
from tests.conftest import private_database
from tests.integration.ml_api.results import per_user_sums
from tests.waiting import wait_until

T0 = datetime(2024, 5, 1, 12, 0)
VARIANTS = ("control", "variation")
SUMMARY_TABLES = ("metric_totals", "metric_conversions", "metric_pair_totals", "metric_covariate_totals",
                  "metric_covariate_cross")
WIDTH = {"metric_totals": 5, "metric_conversions": 1, "metric_pair_totals": 1, "metric_covariate_totals": 3,
         "metric_covariate_cross": 4}
DECLARATION = {
    "primary": {"name": "clicked", "type": "conversion", "source": "click", "covariate": "before"},
    "secondary": [
        {"name": "revenue_p90", "type": "mean", "source": "revenue", "cap": {"quantile": 0.9},
         "covariate": "before"},
        {"name": "refund_p80", "type": "mean", "source": "refund", "cap": {"quantile": 0.8}},
        {"name": "revenue_per_order", "type": "ratio", "numerator": "revenue", "denominator": "orders"},
    ],
}




def rows(db, sql: str, *args) -> list[tuple]:
    with db.connection() as conn:
        cursor = conn.cursor()
        cursor.execute(sql, args)
        return cursor.fetchall()


def outcome(experiment, user: str, variant: str, metric: str, value: float, at: datetime,
            feedback_id: str | None = None) -> dict:
    return {"feedback_id": feedback_id or uuid.uuid4().hex, "experiment_id": experiment.id, "user_id": user,
            "variant": variant, "request_id": None, "value": value, "metric": metric, "at": at.isoformat()}


def expected_sums(db, experiment_id: int) -> dict[str, dict[tuple, tuple]]:
    """Every summary, computed in Python from the raw outcomes, exposures and covariate values."""
    per_user: dict[tuple, list] = {}  # (metric, variant, user) -> [total, first positive time]
    for metric, variant, user, value, at in rows(db, "SELECT metric, variant, user_id, value, recorded_at"
                                                     " FROM outcomes WHERE experiment_id = %s", experiment_id):
        entry = per_user.setdefault((metric, variant, user), [0.0, None])
        entry[0] += value
        if value > 0 and (entry[1] is None or at < entry[1]):
            entry[1] = at
    exposed = dict(rows(db, "SELECT user_id, variant FROM assignments WHERE experiment_id = %s", experiment_id))
    covariates = rows(db, "SELECT covariate, user_id, value FROM metric_covariates WHERE experiment_id = %s",
                      experiment_id)
    sums: dict[str, dict[tuple, list]] = {table: defaultdict(lambda: [0, 0, 0, 0.0, 0.0]) for table in SUMMARY_TABLES}
    for (metric, variant, user), (total, converted_at) in per_user.items():
        add(sums["metric_totals"][metric, variant], 1, total > 0, total < 0, total, total * total)
        if converted_at is not None:
            hour = int(converted_at.replace(tzinfo=timezone.utc).timestamp()) // 3600
            add(sums["metric_conversions"][metric, variant, hour], 1)
        for (other, other_variant, other_user), (other_total, _) in per_user.items():
            if (other_variant, other_user) == (variant, user) and metric < other:
                add(sums["metric_pair_totals"][metric, other, variant], total * other_total)
        for covariate, covariate_user, x in covariates:
            if covariate_user == user:
                add(sums["metric_covariate_cross"][metric, covariate, variant], 1, x, x * total, x * (total > 0))
    for covariate, user, x in covariates:
        if user in exposed:
            add(sums["metric_covariate_totals"][covariate, exposed[user]], 1, x, x * x)
    return {table: {key: tuple(values[:WIDTH[table]]) for key, values in found.items()}
            for table, found in sums.items()}


def add(values: list, *terms: float) -> None:
    for i, term in enumerate(terms):
        values[i] += term


def expected_pairs(db, experiment_id: int) -> dict[tuple, tuple[float, float]]:
    """Each user's total on a metric next to each covariate value of theirs, from the raw rows."""
    totals = rows(db, "SELECT metric, variant, user_id, SUM(value) FROM outcomes WHERE experiment_id = %s"
                      " GROUP BY metric, variant, user_id", experiment_id)
    values = rows(db, "SELECT covariate, user_id, value FROM metric_covariates WHERE experiment_id = %s", experiment_id)
    return {(metric, covariate, variant, user): (total, x) for metric, variant, user, total in totals
            for covariate, covariate_user, x in values if covariate_user == user}


def folded_sums(db, experiment_id: int) -> dict[str, dict[tuple, tuple]]:
    """Every summary as the folds left it (conversion hours that fell to 0 users left out)."""
    found = {}
    for table in SUMMARY_TABLES:
        keys, values = folding.SUMMARIES[table]
        sql = f"SELECT {', '.join(keys + values)} FROM {table} WHERE experiment_id = %s"
        n = len(values)
        found[table] = {tuple(row[:-n]): tuple(float(v) for v in row[-n:]) for row in rows(db, sql, experiment_id)
                        if table != "metric_conversions" or row[-1] != 0}
    return found


def assert_sums_match_raw_rows(db, experiment_id: int) -> None:
    expected, folded = expected_sums(db, experiment_id), folded_sums(db, experiment_id)
    for table in SUMMARY_TABLES:
        assert set(folded[table]) == set(expected[table]), table
        for key, values in expected[table].items():
            assert folded[table][key] == pytest.approx(values, rel=1e-9, abs=1e-9), (table, key)
    pairs = {tuple(row[:4]): row[4:] for row in rows(db, "SELECT metric, covariate, variant, user_id, total, value"
                                                         " FROM metric_covariate_users WHERE experiment_id = %s",
                                                     experiment_id)}
    expected = expected_pairs(db, experiment_id)
    assert set(pairs) == set(expected)
    for key, values in expected.items():
        assert pairs[key] == pytest.approx(values, rel=1e-9, abs=1e-9), key
    assert dirty_rows(db, experiment_id) == 0
    unfolded = rows(db, "SELECT COUNT(*) FROM metric_users WHERE experiment_id = %s AND NOT (folded_total <=> total"
                        " AND folded_converted_at <=> converted_at)", experiment_id)
    assert unfolded == [(0,)]


def build_record(db, recorder, experiment, rng: random.Random, between=lambda: None) -> None:
    """Covariates before exposure (one changed), exposures, several outcomes per user on four feedback metrics
    (negative values too), live and spooled, with replays; conversions moved earlier; an unexposed (forced)
    user with outcomes who gets a covariate value afterwards. ``between()`` runs after every write."""
    users = {f"u{i}": VARIANTS[i % 2] for i in range(90)}
    assert record_covariates(db, experiment.id, "before", [(u, round(rng.expovariate(1 / 20), 2))
                                                           for u in list(users)[:60]]) == []
    between()
    assert record_covariates(db, experiment.id, "before", [("u3", 99.5)]) == []  # changed before exposure
    sent = []
    for user, variant in users.items():
        recorder.record_first(experiment, user, variant)  # marks the user's covariate with the variant
        between()
        for _ in range(rng.randint(0, 4)):
            metric, value = rng.choice([("click", float(rng.random() < 0.5)), ("revenue", rng.expovariate(1 / 25)),
                                        ("orders", 1.0), ("refund", rng.uniform(-8, 3))])
            record = outcome(experiment, user, variant, metric, value, T0 + timedelta(hours=rng.randint(0, 48)))
            recorder.write_spooled([("outcome", record)])
            sent.append(record)
            between()
    recorder.write_spooled([("outcome", record) for record in rng.sample(sent, 20)])  # replayed: counted once
    between()
    for record in rng.sample(sent, 8):
        assert recorder.record_outcome(record)  # the same feedback_id, live: counted once
    between()
    # An earlier positive outcome arriving last moves the conversion to an earlier hour.
    recorder.write_spooled([("outcome", outcome(experiment, "u1", "control", "click", 1.0, T0 + timedelta(hours=50)))])
    between()
    recorder.write_spooled([("outcome", outcome(experiment, "u1", "control", "click", 1.0, T0 - timedelta(hours=7)))])
    between()
    recorder.write_spooled([("outcome", outcome(experiment, "forced", "variation", "revenue", 12.0, T0))])
    between()
    assert record_covariates(db, experiment.id, "before", [("forced", 4.0)]) == []  # never exposed: accepted
    between()
    assert record_covariates(db, experiment.id, "before", [("forced", 6.0)]) == []


@pytest.mark.parametrize("seed,fold_chance", [(1, 0.0), (2, 0.05), (3, 0.3), (4, 1.0)])
def test_the_summaries_after_folds_equal_sums_of_the_raw_rows(db, recorder, experiment, seed, fold_chance):
    rng = random.Random(seed)
    build_record(db, recorder, experiment, rng, between=lambda: rng.random() < fold_chance and fold(db, experiment.id))
    fold(db, experiment.id)
    assert_sums_match_raw_rows(db, experiment.id)
    (users,) = rows(db, "SELECT SUM(users) FROM metric_totals WHERE experiment_id = %s", experiment.id)[0]
    (outcomes,) = rows(db, "SELECT COUNT(*) FROM outcomes WHERE experiment_id = %s", experiment.id)[0]
    assert 0 < users < outcomes  # several outcomes per user, some users on several metrics


def test_a_fold_in_small_batches_gives_the_same_sums(db, recorder, experiment, monkeypatch):
    build_record(db, recorder, experiment, random.Random(5))
    monkeypatch.setattr(folding, "BATCH_USERS", 7)
    (users,) = rows(db, "SELECT COUNT(DISTINCT user_id) FROM (SELECT user_id FROM metric_users WHERE experiment_id = %s"
                        " UNION ALL SELECT user_id FROM metric_covariates WHERE experiment_id = %s) u",
                    experiment.id, experiment.id)[0]
    assert fold(db, experiment.id) >= users > 7 * 5  # every user with a row (some in two batches), 7 rows a batch
    assert_sums_match_raw_rows(db, experiment.id)
    assert fold(db, experiment.id) == 0


def test_a_replayed_outcome_or_an_unchanged_row_changes_no_sum(db, recorder, experiment):
    recorder.record_first(experiment, "u", "control")
    record = outcome(experiment, "u", "control", "revenue", 5.0, T0)
    recorder.write_spooled([("outcome", record)])
    fold(db, experiment.id)
    before = folded_sums(db, experiment.id)
    recorder.write_spooled([("outcome", record)])
    recorder.record_outcome(record)
    assert dirty_rows(db, experiment.id) == 0  # a replay leaves the row as it was: nothing to fold
    assert fold(db, experiment.id) == 0
    assert folded_sums(db, experiment.id) == before
    assert before["metric_totals"] == {("revenue", "control"): (1.0, 1.0, 0.0, 5.0, 25.0)}


@pytest.mark.parametrize("interruption", ["error", "connection killed"])
def test_a_fold_rolled_back_halfway_loses_nothing(db, recorder, experiment, monkeypatch, interruption):
    rng = random.Random(6)
    build_record(db, recorder, experiment, rng, between=lambda: rng.random() < 0.1 and fold(db, experiment.id))
    before, dirty = folded_sums(db, experiment.id), dirty_rows(db, experiment.id)
    assert dirty > 0
    write_sums = folding._write_sums

    def interrupted(cursor, experiment_id, sums):
        write_sums(cursor, experiment_id, sums)  # the summaries are written, the rows not yet marked
        if interruption == "error":
            raise RuntimeError("worker stopped")
        cursor.execute("SELECT CONNECTION_ID()")
        (connection_id,) = cursor.fetchone()
        cursor.execute(f"KILL {int(connection_id)}")

    monkeypatch.setattr(folding, "_write_sums", interrupted)
    with pytest.raises((RuntimeError, DatabaseUnavailable)):
        fold(db, experiment.id)
    assert folded_sums(db, experiment.id) == before
    assert dirty_rows(db, experiment.id) == dirty
    monkeypatch.setattr(folding, "_write_sums", write_sums)
    # A killed connection opens the pool's circuit breaker for a moment: fold as soon as MySQL is taken again.
    wait_until(lambda: _folded(db, experiment.id), message="no fold succeeded after the interrupted one")
    assert_sums_match_raw_rows(db, experiment.id)


def test_a_folder_that_stops_answering_mid_batch_holds_its_users_for_seconds_only(db, recorder, experiment,
                                                                                   monkeypatch):
    """A worker killed mid-batch behind a relay that keeps its connection open: MySQL closes the silent
    connection after IDLE_SECONDS, which rolls the batch back and lets the users' outcomes through."""
    recorder.record_first(experiment, "held", "control")
    assert recorder.record_outcome(outcome(experiment, "held", "control", "click", 1.0, T0))
    monkeypatch.setattr(folding, "IDLE_SECONDS", 2)
    write_sums, locked, resume, failures = folding._write_sums, threading.Event(), threading.Event(), []

    def stuck(cursor, experiment_id, sums):
        write_sums(cursor, experiment_id, sums)
        locked.set()
        resume.wait(60)  # the rows stay locked, the connection silent

    def fold_in_thread() -> None:
        try:
            fold(db, experiment.id)
        except DatabaseUnavailable as exc:
            failures.append(exc)

    monkeypatch.setattr(folding, "_write_sums", stuck)
    folder = threading.Thread(target=fold_in_thread)
    folder.start()
    try:
        wait_until(locked.is_set, message="the folder never locked the user's rows")
        started = time.monotonic()
        assert recorder.record_outcome(outcome(experiment, "held", "control", "click", 1.0, T0))  # waited, then stored
        assert time.monotonic() - started < 20
    finally:
        resume.set()
        folder.join(timeout=60)
    assert len(failures) == 1  # the batch was rolled back with its connection
    monkeypatch.setattr(folding, "_write_sums", write_sums)
    wait_until(lambda: _folded(db, experiment.id), message="no fold succeeded after the stuck one")
    assert_sums_match_raw_rows(db, experiment.id)


def _folded(db: Database, experiment_id: int) -> bool:
    try:
        fold(db, experiment_id)
        return True
    except DatabaseUnavailable:
        return False


def test_outcomes_written_while_folds_run_are_all_counted(db, recorder, experiment):
    writers_done = threading.Event()
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        rng = random.Random(worker)
        try:
            for i in range(60):
                user = f"w{worker}-{i % 25}"
                recorder.record_first(experiment, user, VARIANTS[i % 2])
                metric = rng.choice(["click", "revenue", "orders"])
                assert recorder.record_outcome(outcome(experiment, user, VARIANTS[i % 2], metric,
                                                       rng.uniform(-1, 10), T0))
        except BaseException as exc:
            errors.append(exc)

    def keep_folding() -> None:
        try:
            while not writers_done.is_set():
                fold(db, experiment.id)
        except BaseException as exc:
            errors.append(exc)

    assert record_covariates(db, experiment.id, "before", [(f"w{w}-{i}", float(i)) for w in range(3)
                                                           for i in range(0, 25, 3)]) == []
    writers = [threading.Thread(target=write, args=(w,)) for w in range(3)]
    folders = [threading.Thread(target=keep_folding) for _ in range(2)]
    for thread in writers + folders:
        thread.start()
    for thread in writers:
        thread.join(timeout=120)
    writers_done.set()
    for thread in folders:
        thread.join(timeout=120)
    assert errors == []
    fold(db, experiment.id)
    assert_sums_match_raw_rows(db, experiment.id)


def test_the_document_equals_the_one_of_the_per_user_sums(db, recorder, experiment):
    rng = random.Random(8)
    build_record(db, recorder, experiment, rng, between=lambda: rng.random() < 0.2 and fold(db, experiment.id))
    recorder.write_spooled([("outcome", outcome(experiment, "u2", "variation", "click", 1.0, T0))])  # not folded yet
    agg = fetch_aggregates(db, experiment.name)  # folds first
    with db.connection() as conn:
        cursor = conn.cursor()
        exposed = {variant: agg.users(variant) for variant in VARIANTS}
        conversions, outcomes = per_user_sums.fetch_outcomes(cursor, experiment.id, agg.bucket_seconds,
                                                             agg.metrics.primary.feedback_names[0])
        reference = replace(agg, new_conversions=conversions, outcomes=outcomes,
                            metric_sums=per_user_sums.fetch_metric_sums(cursor, experiment.id, agg.metrics, exposed))
    assert {name: s.cap for name, s in agg.metric_sums.items()} == {name: s.cap for name, s in
                                                                   reference.metric_sums.items()}
    now = datetime.now(timezone.utc)
    assert_same(evaluate(agg, now).document, evaluate(reference, now).document)


def assert_same(found: object, expected: object, path: str = "") -> None:
    """Equal documents, floats to 1e-9 relative (sums added in another order)."""
    if isinstance(expected, dict):
        assert isinstance(found, dict) and set(found) == set(expected), path
        for key in expected:
            assert_same(found[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(found, list) and len(found) == len(expected), path
        for i, (f, e) in enumerate(zip(found, expected)):
            assert_same(f, e, f"{path}[{i}]")
    elif isinstance(expected, float) and not isinstance(found, bool) and isinstance(found, (int, float)):
        assert found == pytest.approx(expected, rel=1e-9, abs=1e-12) or (math.isnan(found) and math.isnan(expected)), path
    else:
        assert found == expected, path


def test_an_upgraded_database_counts_its_rows_at_the_first_fold(base_config, tmp_path):
    """A database from before the folds (no folded_* columns, no summaries) with outcomes and covariates:
    the schema upgrade marks every row dirty and the first fold counts them all."""
    with private_database(base_config, "fold_upgrade") as name:
        db = Database(replace(base_config.mysql, database=name))
        try:
            with db.connection() as conn:
                cursor = conn.cursor()
                for statement in (
                    "DROP TRIGGER metric_users_mark_dirty", "DROP TRIGGER metric_covariates_mark_dirty",
                    f"DROP TABLE {', '.join(SUMMARY_TABLES)}, metric_covariate_users",
                    "ALTER TABLE metric_users DROP KEY ix_metric_users_dirty, DROP KEY ix_metric_users_folded,"
                    " DROP COLUMN folded_total, DROP COLUMN folded_converted_at, DROP COLUMN dirty,"
                    " ADD KEY ix_metric_users_total (experiment_id, metric, total)",
                    "ALTER TABLE metric_covariates DROP KEY ix_metric_covariates_dirty, DROP COLUMN folded_value,"
                    " DROP COLUMN folded_variant, DROP COLUMN dirty",
                ):
                    cursor.execute(statement)
            repo = ExperimentRepository(db, base_config.model_files)
            model = sorted(base_config.model_files)[0]
            experiment = repo.create("upgraded", [VariantSpec("control", 50, model), VariantSpec("variation", 50, model)],
                                     actor="test", status="running", metrics=DECLARATION)
            build_record(db, Recorder(db, Spool(tmp_path / "spool.db")), experiment, random.Random(9))
            with db.connection() as conn:
                apply_schema(conn)
                apply_schema(conn)  # applied again: a no-op
            assert dirty_rows(db, experiment.id) > 0
            fold(db, experiment.id)
            assert_sums_match_raw_rows(db, experiment.id)
        finally:
            db.close()


def test_the_read_waits_for_another_folder_and_the_background_skips(db, recorder, experiment):
    recorder.record_first(experiment, "u", "control")
    recorder.record_outcome(outcome(experiment, "u", "control", "click", 1.0, T0))
    holder = mysql.connector.connect(host=db.settings.host, port=db.settings.port, user=db.settings.user,
                                     password=db.settings.password, database=db.settings.database)
    try:
        cursor = holder.cursor()
        cursor.execute(folding.GET_LOCK, (experiment.id, 0))
        assert cursor.fetchone() == (1,)
        assert fold(db, experiment.id, lock_wait=0) == 0  # the background task leaves it to the holder
        with pytest.raises(DatabaseUnavailable):
            fold(db, experiment.id, lock_wait=0.2)  # a read gives up after its wait
        cursor.execute(folding.RELEASE_LOCK, (experiment.id,))
        cursor.fetchall()
    finally:
        holder.close()
    assert fold(db, experiment.id, lock_wait=0) == 1
