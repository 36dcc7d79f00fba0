"""The summary tables the results read stay equal to the raw rows, whichever path wrote them."""

import uuid
from datetime import datetime, timedelta

import pytest

from ml_api.results.query import bucket_seconds, fetch_aggregates

T0 = datetime(2024, 5, 1, 12, 0)




def query(db, sql: str, *args) -> list[tuple]:
    with db.connection() as conn:
        cursor = conn.cursor()
        cursor.execute(sql, args)
        return [tuple(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for v in row)
                for row in cursor.fetchall()]


def outcome(experiment, user_id: str, variant: str, value: float, at: datetime, feedback_id: str | None = None):
    return {"feedback_id": feedback_id or uuid.uuid4().hex, "experiment_id": experiment.id, "user_id": user_id,
            "variant": variant, "request_id": None, "value": value, "at": at.isoformat()}


def assert_summaries_match_raw_rows(db, experiment_id: int) -> None:
    exposures = ("SELECT variant, hour, SUM(users) FROM exposure_counts WHERE experiment_id = %s"
                 " GROUP BY variant, hour ORDER BY variant, hour")
    raw_exposures = ("SELECT variant, UNIX_TIMESTAMP(assigned_at) DIV 3600 AS hour, COUNT(*) FROM assignments"
                     " WHERE experiment_id = %s GROUP BY variant, hour ORDER BY variant, hour")
    assert query(db, exposures, experiment_id) == query(db, raw_exposures, experiment_id)
    users = ("SELECT metric, variant, user_id, outcomes, total, converted_at FROM metric_users"
             " WHERE experiment_id = %s ORDER BY metric, variant, user_id")
    raw_users = ("SELECT metric, variant, user_id, COUNT(*), SUM(value), MIN(IF(value > 0, recorded_at, NULL))"
                 " FROM outcomes WHERE experiment_id = %s GROUP BY metric, variant, user_id"
                 " ORDER BY metric, variant, user_id")
    assert query(db, users, experiment_id) == query(db, raw_users, experiment_id)


def test_live_writes_replays_and_spooled_batches_keep_the_summaries_exact(db, recorder, experiment):
    for i in range(40):
        recorder.record_first(experiment, f"u{i}", "control" if i % 3 else "variation")
        recorder.record_first(experiment, f"u{i}", "variation")  # a returning user: no new exposure
    replayed = uuid.uuid4().hex
    batch = [
        ("exposure", {"experiment_id": experiment.id, "user_id": "u1", "variant": "variation",
                      "at": T0.isoformat()}),  # already exposed: the first writer won
        ("exposure", {"experiment_id": experiment.id, "user_id": "late", "variant": "variation",
                      "at": (T0 - timedelta(hours=5)).isoformat()}),  # spooled during an outage
        ("outcome", outcome(experiment, "late", "variation", 2.0, T0, feedback_id=replayed)),
    ]
    recorder.write_spooled(batch)
    recorder.write_spooled(batch)  # a batch replayed after a crash counts once
    recorder.record_outcome(outcome(experiment, "u1", "control", 0.0, T0))
    recorder.record_outcome(outcome(experiment, "u1", "control", 5.0, T0))
    recorder.record_outcome(outcome(experiment, "u2", "control", -1.0, T0))
    recorder.record_outcome(outcome(experiment, "u1", "control", 7.5, T0) | {"metric": "revenue"})
    recorder.write_spooled([("outcome", outcome(experiment, "late", "variation", 3.0, T0) | {"metric": "revenue"})])
    assert_summaries_match_raw_rows(db, experiment.id)
    agg = fetch_aggregates(db, experiment.name)
    assert agg.users("control") + agg.users("variation") == 41
    assert agg.outcomes["variation"].users == 1 and agg.outcomes["variation"].total == 2.0


def test_the_earliest_positive_outcome_is_the_conversion_even_when_it_arrives_last(db, recorder, experiment):
    recorder.record_first(experiment, "u", "control")
    recorder.write_spooled([("outcome", outcome(experiment, "u", "control", 0.0, T0 - timedelta(hours=3))),
                            ("outcome", outcome(experiment, "u", "control", 1.0, T0))])
    recorder.write_spooled([("outcome", outcome(experiment, "u", "control", 1.0, T0 - timedelta(hours=1)))])
    (converted_at,) = query(db, "SELECT converted_at FROM metric_users WHERE experiment_id = %s", experiment.id)[0]
    assert converted_at == T0 - timedelta(hours=1)
    assert_summaries_match_raw_rows(db, experiment.id)


@pytest.mark.parametrize("hours,width", [(0, 3600), (199, 3600), (200, 86400), (24 * 400, 86400)])
def test_timeline_buckets_are_hours_up_to_200_points_then_days(hours, width):
    assert bucket_seconds(T0, T0 + timedelta(hours=hours)) == width
    assert bucket_seconds(None, None) == 3600
