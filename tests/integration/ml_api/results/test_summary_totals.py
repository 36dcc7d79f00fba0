"""The per-metric running sums the triggers keep equal the same sums computed in Python from the raw rows:
after live writes, replays (same feedback_id), several outcomes per user, conversions that move to an
earlier hour, covariates posted before and after a user's outcomes, and the backfill of an upgrade."""

import random
import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import pytest

from ml_api.experiments.covariates import record_covariates
from ml_api.experiments.records import Recorder
from ml_api.infra.database import apply_schema
from ml_api.infra.spool import Spool

T0 = datetime(2024, 5, 1, 12, 0)
VARIANTS = ("control", "variation")
SUMMARY_TABLES = ("metric_totals", "metric_conversions", "metric_pair_totals", "metric_covariate_totals",
                  "metric_covariate_cross")


@pytest.fixture
def recorder(db, tmp_path):
    return Recorder(db, Spool(tmp_path / "spool.db"))


@pytest.fixture
def experiment(repo, make_experiment):
    return repo.get(make_experiment())


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
            add(sums["metric_conversions"][metric, variant, int(converted_at.replace(tzinfo=timezone.utc).timestamp()) // 3600], 1)
        for (other, other_variant, other_user), (other_total, _) in per_user.items():
            if (other_variant, other_user) == (variant, user) and metric < other:
                add(sums["metric_pair_totals"][metric, other, variant], total * other_total)
        for covariate, covariate_user, x in covariates:
            if covariate_user == user:
                add(sums["metric_covariate_cross"][metric, covariate, variant], 1, x, x * total, x * (total > 0))
    for covariate, user, x in covariates:
        if user in exposed:
            add(sums["metric_covariate_totals"][covariate, exposed[user]], 1, x, x * x)
    return {table: {key: tuple(values[:width(table)]) for key, values in found.items()}
            for table, found in sums.items()}


def add(values: list, *terms: float) -> None:
    for i, term in enumerate(terms):
        values[i] += term


def width(table: str) -> int:
    return {"metric_totals": 5, "metric_conversions": 1, "metric_pair_totals": 1, "metric_covariate_totals": 3,
            "metric_covariate_cross": 4}[table]


def maintained_sums(db, experiment_id: int) -> dict[str, dict[tuple, tuple]]:
    """Every summary as the triggers keep it, shards added up (rows of zero conversions left out)."""
    queries = {
        "metric_totals": "SELECT metric, variant, SUM(users), SUM(positive), SUM(negative), SUM(total),"
                         " SUM(total_of_squares) FROM metric_totals WHERE experiment_id = %s GROUP BY metric, variant",
        "metric_conversions": "SELECT metric, variant, hour, SUM(users) FROM metric_conversions"
                              " WHERE experiment_id = %s GROUP BY metric, variant, hour HAVING SUM(users) <> 0",
        "metric_pair_totals": "SELECT metric_a, metric_b, variant, SUM(total) FROM metric_pair_totals"
                              " WHERE experiment_id = %s GROUP BY metric_a, metric_b, variant",
        "metric_covariate_totals": "SELECT covariate, variant, SUM(users), SUM(total), SUM(total_of_squares)"
                                   " FROM metric_covariate_totals WHERE experiment_id = %s GROUP BY covariate, variant",
        "metric_covariate_cross": "SELECT metric, covariate, variant, SUM(users), SUM(covariate_total),"
                                  " SUM(cross_total), SUM(cross_positive) FROM metric_covariate_cross"
                                  " WHERE experiment_id = %s GROUP BY metric, covariate, variant",
    }
    found = {}
    for table, sql in queries.items():
        n = width(table)
        found[table] = {tuple(row[:-n]): tuple(float(v) for v in row[-n:]) for row in rows(db, sql, experiment_id)}
    return found


def assert_sums_match_raw_rows(db, experiment_id: int) -> None:
    expected, maintained = expected_sums(db, experiment_id), maintained_sums(db, experiment_id)
    for table in SUMMARY_TABLES:
        assert set(maintained[table]) == set(expected[table]), table
        for key, values in expected[table].items():
            assert maintained[table][key] == pytest.approx(values, rel=1e-9, abs=1e-9), (table, key)


def build_record(db, recorder, experiment, seed: int = 5) -> None:
    """Covariates before exposure (one changed), exposures, several outcomes per user on four feedback
    metrics (negative values too), live and spooled, with replays; an unexposed (forced) user with outcomes
    who gets a covariate value afterwards."""
    rng = random.Random(seed)
    users = {f"u{i}": VARIANTS[i % 2] for i in range(120)}
    assert record_covariates(db, experiment.id, "before", [(u, round(rng.expovariate(1 / 20), 2))
                                                           for u in list(users)[:80]]) == []
    assert record_covariates(db, experiment.id, "before", [("u3", 99.5)]) == []  # changed before exposure
    for user, variant in users.items():
        recorder.record_first(experiment, user, variant)
    sent = []
    for user, variant in users.items():
        for _ in range(rng.randint(0, 4)):
            metric, value = rng.choice([("click", float(rng.random() < 0.5)), ("revenue", rng.expovariate(1 / 25)),
                                        ("orders", 1.0), ("refund", rng.uniform(-8, 3))])
            record = outcome(experiment, user, variant, metric, value, T0 + timedelta(hours=rng.randint(0, 48)))
            recorder.write_spooled([("outcome", record)])
            sent.append(record)
    recorder.write_spooled([("outcome", record) for record in rng.sample(sent, 30)])  # replayed: counted once
    for record in rng.sample(sent, 10):
        assert recorder.record_outcome(record)  # the same feedback_id, live: counted once
    # An earlier positive outcome arriving last moves the conversion to an earlier hour.
    recorder.write_spooled([("outcome", outcome(experiment, "u1", "control", "click", 1.0, T0 + timedelta(hours=50))),
                            ("outcome", outcome(experiment, "u1", "control", "click", 1.0, T0 - timedelta(hours=7)))])
    recorder.write_spooled([("outcome", outcome(experiment, "forced", "variation", "revenue", 12.0, T0))])
    assert record_covariates(db, experiment.id, "before", [("forced", 4.0)]) == []  # never exposed: accepted
    assert record_covariates(db, experiment.id, "before", [("forced", 6.0)]) == []


def test_the_running_sums_equal_sums_of_the_raw_rows(db, recorder, experiment):
    build_record(db, recorder, experiment)
    assert_sums_match_raw_rows(db, experiment.id)
    (outcomes,) = rows(db, "SELECT COUNT(*) FROM outcomes WHERE experiment_id = %s", experiment.id)[0]
    (users,) = rows(db, "SELECT SUM(users) FROM metric_totals WHERE experiment_id = %s", experiment.id)[0]
    assert 0 < users < outcomes  # several outcomes per user, some users on several metrics


def test_a_replayed_outcome_changes_no_sum(db, recorder, experiment):
    recorder.record_first(experiment, "u", "control")
    record = outcome(experiment, "u", "control", "revenue", 5.0, T0)
    recorder.write_spooled([("outcome", record)])
    before = maintained_sums(db, experiment.id)
    recorder.write_spooled([("outcome", record)])
    recorder.record_outcome(record)
    assert maintained_sums(db, experiment.id) == before
    assert before["metric_totals"] == {("revenue", "control"): (1.0, 1.0, 0.0, 5.0, 25.0)}


def test_an_upgraded_database_backfills_the_sums_once(db, recorder, experiment):
    build_record(db, recorder, experiment, seed=9)
    with db.connection() as conn:
        cursor = conn.cursor()
        for table in SUMMARY_TABLES:  # as a database from before these tables: no rows yet
            cursor.execute(f"DELETE FROM {table}")
        apply_schema(conn)
        apply_schema(conn)  # applied again: a no-op
    assert_sums_match_raw_rows(db, experiment.id)
