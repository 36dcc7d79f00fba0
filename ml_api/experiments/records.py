"""Writing exposures and outcomes to MySQL, through the spool when MySQL is away."""

import logging
from collections.abc import Sequence
from datetime import datetime, timezone
from functools import partial
from typing import Any

from assigner import AssignmentSource, Experiment
from ml_api.errors import DatabaseUnavailable
from ml_api.experiments.metrics import DEFAULT_FEEDBACK_METRIC
from ml_api.infra.database import Database
from ml_api.infra.spool import Record, Spool

log = logging.getLogger(__name__)

INSERT_EXPOSURE = (
    "INSERT INTO assignments (experiment_id, user_id, variant, assigned_at) VALUES (%s, %s, %s, %s)"
    # A no-op update: the first writer wins, and rowcount tells whether we were first.
    " ON DUPLICATE KEY UPDATE experiment_id = experiment_id"
)
# The same for many rows in one statement (``{rows}``: one ``(%s, %s, %s, %s)`` per row).
INSERT_EXPOSURES = (
    "INSERT INTO assignments (experiment_id, user_id, variant, assigned_at) VALUES {rows}"
    " ON DUPLICATE KEY UPDATE experiment_id = experiment_id"
)
INSERT_OUTCOME = (
    "INSERT INTO outcomes (feedback_id, experiment_id, user_id, variant, request_id, value, recorded_at, metric)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE feedback_id = feedback_id"
)
# The true label sent with an outcome (optional), for the accuracy of served and shadow models.
INSERT_LABEL = (
    "INSERT INTO feedback_labels (feedback_id, experiment_id, request_id, label, recorded_at)"
    " VALUES (%s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE feedback_id = feedback_id"
)


# experiment_id, user_id, variant, assigned_at: one row of assignments.
ExposureRow = tuple[int, str, str, datetime]

# Rows per transaction when the spool is replayed: few enough locks that live writes rarely wait.
REPLAY_TRANSACTION_ROWS = 50


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _now_in_milliseconds() -> datetime:
    """Now, as ``assigned_at TIMESTAMP(3)`` stores it (so the row read back compares equal)."""
    now = _now()
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class Recorder:
    """The durable record of first exposures (the assigner's ledger) and of outcomes."""

    def __init__(self, db: Database, spool: Spool) -> None:
        self._db = db
        self._spool = spool

    def record_first(self, experiment: Experiment, user_id: str, candidate: str) -> tuple[str, AssignmentSource]:
        """Record ``candidate`` unless the user already has a first exposure; return the one on record.

        With MySQL away the exposure goes to the spool (by every request of the user while it
        is away: replaying a record twice is a no-op, and the request that claimed the guess
        in the cache may have died before spooling it)."""
        assigned_at = _now()

        def insert() -> tuple[str, AssignmentSource]:
            with self._db.connection() as conn:
                cursor = conn.cursor()
                cursor.execute(INSERT_EXPOSURE, (experiment.id, user_id, candidate, assigned_at))
                if cursor.rowcount == 1:
                    return candidate, AssignmentSource.NEW
                cursor.execute(
                    "SELECT variant FROM assignments WHERE experiment_id = %s AND user_id = %s", (experiment.id, user_id)
                )
                (variant,) = cursor.fetchone()
                return variant, AssignmentSource.MYSQL

        try:
            return self._db.retrying(insert)  # a deadlock with a spool replay is run again
        except DatabaseUnavailable:
            self._spool.put("exposure", {"experiment_id": experiment.id, "user_id": user_id,
                                         "variant": candidate, "at": assigned_at.isoformat()})
            return candidate, AssignmentSource.HASH

    def record_first_many(
        self, exposures: Sequence[tuple[Experiment, str, str]]
    ) -> list[tuple[str, AssignmentSource]]:
        """``record_first`` for each ``(experiment, user_id, candidate)`` of distinct users: one multi-row INSERT.

        The rows go in key order (as spool replays do, so the two cannot deadlock). When
        the INSERT took every row (its row count says so) all are ``NEW``; otherwise one
        SELECT reads what is on record: a row with another variant was someone else's
        (``MYSQL``), and a row with ours and this batch's ``assigned_at`` is ours, unless more
        such rows exist than the INSERT took (another writer recorded the same variant in the
        same millisecond): then they are all reported ``MYSQL``, never an exposure counted
        twice. With MySQL away all go to the spool in one transaction (``HASH``)."""
        if not exposures:
            return []
        assigned_at = _now_in_milliseconds()
        rows = sorted((experiment.id, user_id, candidate, assigned_at) for experiment, user_id, candidate in exposures)
        try:
            on_record = self._db.retrying(partial(self._insert_first, rows))
        except DatabaseUnavailable:
            self._spool.put_many([("exposure", {"experiment_id": experiment_id, "user_id": user_id,
                                                "variant": candidate, "at": at.isoformat()})
                                  for experiment_id, user_id, candidate, at in rows])
            return [(candidate, AssignmentSource.HASH) for _, _, candidate in exposures]
        return [on_record.get((experiment.id, user_id), (candidate, AssignmentSource.HASH))
                for experiment, user_id, candidate in exposures]

    def _insert_first(self, rows: list[ExposureRow]) -> dict[tuple[int, str], tuple[str, AssignmentSource]]:
        with self._db.connection() as conn:
            cursor = conn.cursor()
            cursor.execute(INSERT_EXPOSURES.format(rows=", ".join(["(%s, %s, %s, %s)"] * len(rows))),
                           [value for row in rows for value in row])
            inserted = cursor.rowcount
            if inserted == len(rows):
                return {(experiment_id, user_id): (candidate, AssignmentSource.NEW)
                        for experiment_id, user_id, candidate, _ in rows}
            users: dict[int, list[str]] = {}
            for experiment_id, user_id, _, _ in rows:
                users.setdefault(experiment_id, []).append(user_id)
            where = " OR ".join(f"(experiment_id = %s AND user_id IN ({', '.join(['%s'] * len(ids))}))"
                                for ids in users.values())
            cursor.execute(f"SELECT experiment_id, user_id, variant, assigned_at FROM assignments WHERE {where}",
                           [value for experiment_id, ids in users.items() for value in (experiment_id, *ids)])
            stored = {(experiment_id, user_id): (variant, at) for experiment_id, user_id, variant, at in cursor}
        written = set(rows)
        ours = {key for key, (variant, at) in stored.items() if (*key, variant, at) in written}
        trusted = len(ours) == inserted
        return {key: (variant, AssignmentSource.NEW if trusted and key in ours else AssignmentSource.MYSQL)
                for key, (variant, _) in stored.items()}

    def find_assignment(self, experiment_id: int, user_id: str) -> str | None:
        """The variant of the user's first exposure, or None if the user was never exposed."""
        with self._db.connection() as conn:
            cursor = conn.cursor()
            cursor.execute(
                "SELECT variant FROM assignments WHERE experiment_id = %s AND user_id = %s", (experiment_id, user_id)
            )
            row = cursor.fetchone()
        return row[0] if row else None

    def find_spooled(self, experiment_id: int, user_id: str) -> str | None:
        """The variant of the user's first exposure if it still waits in this host's spool."""
        exposure = self._spool.find("exposure", experiment_id=experiment_id, user_id=user_id)
        return exposure["variant"] if exposure else None

    def record_outcome(self, outcome: dict[str, Any]) -> bool:
        """Store one outcome; spool it when MySQL is away. True when it went straight to MySQL."""
        outcome = {**outcome, "at": _now().isoformat()}

        def insert() -> None:
            with self._db.connection() as conn:
                conn.cursor().execute(INSERT_OUTCOME, _outcome_row(outcome))
                if outcome.get("label") is not None:  # after the outcome; a replay of both is a no-op
                    conn.cursor().execute(INSERT_LABEL, _label_row(outcome))

        try:
            self._db.retrying(insert)
            return True
        except DatabaseUnavailable:
            self._spool.put("outcome", outcome)
            return False

    def write_spooled(self, records: list[Record]) -> None:
        """Deliver a batch from the spool (idempotent on replay, so a batch cut short is sent again whole).

        In small transactions, exposures before outcomes (an outcome refers to its exposure), each
        kind in key order: live requests write one row at a time (a batch, its rows in key order
        in one statement), and a replay that held many row locks at once would deadlock with
        them; a conflict that remains is run again."""
        exposures = sorted(
            (p["experiment_id"], p["user_id"], p["variant"], datetime.fromisoformat(p["at"]))
            for kind, p in records
            if kind == "exposure"
        )
        outcomes = sorted(_outcome_row(p) for kind, p in records if kind == "outcome")
        labels = sorted(_label_row(p) for kind, p in records if kind == "outcome" and p.get("label") is not None)
        for statement, rows in ((INSERT_EXPOSURE, exposures), (INSERT_OUTCOME, outcomes), (INSERT_LABEL, labels)):
            for start in range(0, len(rows), REPLAY_TRANSACTION_ROWS):
                self._db.retrying(partial(self._write_rows, statement, rows[start:start + REPLAY_TRANSACTION_ROWS]))

    def _write_rows(self, statement: str, rows: list[tuple]) -> None:
        with self._db.transaction() as conn:
            cursor = conn.cursor()
            for row in rows:
                cursor.execute(statement, row)

    def variant_counts(self, experiment_id: int) -> dict[str, dict[str, int]]:
        """Users exposed and outcomes recorded, per variant."""
        counts: dict[str, dict[str, int]] = {}
        with self._db.connection() as conn:
            cursor = conn.cursor()
            cursor.execute(
                "SELECT variant, COUNT(*) FROM assignments WHERE experiment_id = %s GROUP BY variant", (experiment_id,)
            )
            for variant, users in cursor.fetchall():
                counts.setdefault(variant, {"users": 0, "outcomes": 0})["users"] = int(users)
            cursor.execute(
                "SELECT variant, COUNT(*) FROM outcomes WHERE experiment_id = %s GROUP BY variant", (experiment_id,)
            )
            for variant, outcomes in cursor.fetchall():
                counts.setdefault(variant, {"users": 0, "outcomes": 0})["outcomes"] = int(outcomes)
        return counts


def _outcome_row(p: dict[str, Any]) -> tuple:
    return (
        p["feedback_id"],
        p["experiment_id"],
        p["user_id"],
        p["variant"],
        p.get("request_id"),
        float(p["value"]),
        datetime.fromisoformat(p["at"]),
        p.get("metric", DEFAULT_FEEDBACK_METRIC),  # spooled before metrics had names: the default
    )


def _label_row(p: dict[str, Any]) -> tuple:
    return (p["feedback_id"], p["experiment_id"], p.get("request_id"), p["label"], datetime.fromisoformat(p["at"]))
