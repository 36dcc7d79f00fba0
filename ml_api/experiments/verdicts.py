"""Final verdicts in MySQL (``experiment_verdicts``): written once, in the experiment's history.

A verdict other than keep_running is final: a team may have acted on it. The results
document finds verdicts by walking the experiment's looks; the first time one is given it
is recorded here, with the look's time and numbers, in one experiment-change transaction
(history action ``verdict``, actor ``verdict``). Rows are only ever inserted: with any
number of workers recording at once the primary key keeps the first, and a transaction
that inserts nothing rolls back, so the history shows each verdict once.
"""

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from mysql.connector.abstracts import MySQLConnectionAbstract

from assigner import Experiment

if TYPE_CHECKING:  # the repository snapshots verdicts into the history: no import at run time
    from ml_api.experiments.repository import ExperimentRepository

VERDICT_ACTOR = "verdict"
EXPERIMENT_SUBJECT = ""  # the row of the experiment's action; variations use their names

SELECT_VERDICTS = (
    "SELECT subject, verdict, variant, reason, evidence, look_at, recorded_at FROM experiment_verdicts"
    " WHERE experiment_id = %s"
)
INSERT_VERDICT = (
    "INSERT INTO experiment_verdicts (experiment_id, subject, verdict, variant, reason, evidence, look_at, recorded_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, COALESCE(%s, CURRENT_TIMESTAMP(3)))"
    " ON DUPLICATE KEY UPDATE experiment_id = experiment_id"
)


@dataclass(frozen=True)
class RecordedVerdict:
    """One final verdict as stored: of a variation (``subject`` = its name) or of the experiment ('')."""

    subject: str
    verdict: str
    variant: str | None  # the variation to ship, for the experiment's ship_variation
    reason: str
    evidence: Mapping[str, Any]
    look_at: datetime
    recorded_at: datetime | None = None


class NothingNew(Exception):
    """Every verdict was recorded already (by another worker, or an earlier read): roll back."""


def read_verdicts(conn: MySQLConnectionAbstract, experiment_id: int) -> dict[str, RecordedVerdict]:
    """The recorded verdicts of one experiment by subject."""
    cursor = conn.cursor()
    cursor.execute(SELECT_VERDICTS, (experiment_id,))
    rows = cursor.fetchall()
    cursor.close()
    return {subject: RecordedVerdict(subject, verdict, variant, reason, json.loads(evidence), look_at, recorded_at)
            for subject, verdict, variant, reason, evidence, look_at, recorded_at in rows}


def verdicts_snapshot(conn: MySQLConnectionAbstract, experiment_id: int) -> dict[str, Any]:
    """``{"verdicts": {subject: verdict}}`` for the change history; {} before the first verdict."""
    recorded = read_verdicts(conn, experiment_id)
    if not recorded:
        return {}
    return {"verdicts": {subject or "experiment": v.verdict for subject, v in sorted(recorded.items())}}


def record_verdicts(experiments: "ExperimentRepository", name: str, verdicts: Iterable[RecordedVerdict]) -> bool:
    """Record the verdicts not recorded yet, in one history-logged change; False when there was none."""
    rows = list(verdicts)
    if not rows:
        return False

    def change(conn: MySQLConnectionAbstract, before: Experiment) -> None:
        cursor = conn.cursor()
        inserted = 0
        for v in rows:
            cursor.execute(INSERT_VERDICT, (before.id, v.subject, v.verdict, v.variant, v.reason,
                                            json.dumps(v.evidence, allow_nan=False, default=str),
                                            _naive_utc(v.look_at), _naive_utc(v.recorded_at)))
            inserted += cursor.rowcount == 1
        if not inserted:
            raise NothingNew(name)

    try:
        experiments.apply_change(name, "verdict", VERDICT_ACTOR, change)
    except NothingNew:
        return False
    return True


def _naive_utc(value: datetime | None) -> datetime | None:
    """MySQL's sessions run in UTC and take naive times."""
    return value.astimezone(timezone.utc).replace(tzinfo=None) if value and value.tzinfo else value
