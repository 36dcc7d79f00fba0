"""An experiment's record summed up in MySQL: the few numbers the statistics need, never raw rows.

The queries read summary tables: ``exposure_counts`` (new users per hour) and
``request_totals`` (requests per latency bucket), which triggers keep in step with the raw
rows, and ``metric_totals`` and ``metric_conversions`` (per feedback metric: sums of the
per-user totals, and users who converted per hour), which the folder keeps
(``results.fold``); each declared metric's sums come from ``metric_sums``. Each is a GROUP
BY on a prefix of its primary key that returns a few hundred rows at most; the per-user
scans left are the few that sums cannot replace (``metric_sums``).

The read first folds the experiment, so the sums take in every outcome committed before
it starts; then everything is read in one consistent snapshot, so conversions (counted at
the fold) never outnumber the exposures (counted at the snapshot, a moment later).
"""

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone

from mysql.connector.abstracts import MySQLConnectionAbstract

from assigner import Variant
from ml_api.errors import UnknownExperiment
from ml_api.experiments.metrics import DEFAULT_METRICS, MetricSet, read_metrics
from ml_api.experiments.plans import Plan, read_plan
from ml_api.experiments.verdicts import RecordedVerdict, read_verdicts
from ml_api.infra.database import Database
from ml_api.results.fold import fold
from ml_api.results.metric_sums import MetricSums, fetch_feedback_totals, fetch_metric_sums
from ml_api.telemetry.request_stats import RequestSums

# Timeline granularity: the finer of these giving at most MAX_TIMELINE_POINTS over the span
# of exposures (hours for about a week, days after that). Exposures are counted per hour.
BUCKET_SECONDS = (3600, 86400)
MAX_TIMELINE_POINTS = 200

EXPERIMENT = "SELECT id, name, status, default_variant, guardrails FROM experiments WHERE name = %s"
EXPERIMENT_ID = "SELECT id FROM experiments WHERE name = %s"
VARIANTS = "SELECT name, weight, model_name FROM variants WHERE experiment_id = %s ORDER BY position"
# Both ends of ix_assignments_variant: two index look-ups per variant.
EXPOSURE_SPAN = "SELECT MIN(assigned_at), MAX(assigned_at) FROM assignments WHERE experiment_id = %s AND variant = %s"
EXPOSURES = (
    "SELECT variant, hour DIV %s AS bucket, SUM(users) FROM exposure_counts"
    " WHERE experiment_id = %s GROUP BY variant, bucket"
)
# Users who converted on one feedback metric, per variant and bucket of the moment they converted.
CONVERSIONS = (
    "SELECT variant, hour DIV %s AS bucket, SUM(users) FROM metric_conversions"
    " WHERE experiment_id = %s AND metric = %s GROUP BY variant, bucket HAVING SUM(users) <> 0"
)
REQUESTS = (
    "SELECT variant, latency_bucket, requests, errors, fallbacks FROM request_totals WHERE experiment_id = %s"
)
# Weight changes, newest first. Users first exposed after the last one that moved the
# proportions were split by the current weights, earlier ones by older weights, so the
# sample-ratio check counts the former: whole hours after the change from exposure_counts,
# the rest of the change's hour row by row (an index range on ix_assignments_variant).
WEIGHT_CHANGES = (
    "SELECT changed_at, UNIX_TIMESTAMP(changed_at), before_state, after_state FROM experiment_changes"
    " WHERE experiment_id = %s AND action = 'set_weights' ORDER BY id DESC"
)
EXPOSURES_AFTER_HOUR = (
    "SELECT variant, SUM(users) FROM exposure_counts WHERE experiment_id = %s AND hour > %s GROUP BY variant"
)
EXPOSURES_IN_RANGE = (
    "SELECT COUNT(*) FROM assignments WHERE experiment_id = %s AND variant = %s"
    " AND assigned_at >= %s AND assigned_at < FROM_UNIXTIME(%s)"
)


@dataclass(frozen=True)
class ExperimentInfo:
    id: int
    name: str
    status: str
    default_variant: str
    guardrails: str | None  # the JSON text as stored
    variants: tuple[Variant, ...]


@dataclass
class OutcomeSums:
    """Per-user outcome sums of one variant: users with any outcome, converted users, Σx, Σx²."""

    users: int = 0
    conversions: int = 0
    total: float = 0.0
    total_of_squares: float = 0.0


@dataclass(frozen=True)
class Aggregates:
    """Everything the results are computed from; time buckets are keyed by their start (epoch seconds)."""

    experiment: ExperimentInfo
    bucket_seconds: int
    first_exposure: datetime | None
    last_exposure: datetime | None
    new_users: dict[str, dict[int, int]]  # variant -> bucket -> users first exposed in it
    new_conversions: dict[str, dict[int, int]]  # variant -> bucket -> users who first converted in it
    outcomes: dict[str, OutcomeSums]
    requests: dict[str, RequestSums]
    weights_changed_at: datetime | None = None  # the last change of the weights' proportions
    users_since_weights_changed: dict[str, int] | None = None  # first exposed since then
    plan: Plan | None = None  # None: the experiment set none and has not started (the default applies)
    verdicts: dict[str, RecordedVerdict] = field(default_factory=dict)  # final verdicts recorded, by subject
    metrics: MetricSet = DEFAULT_METRICS
    metric_sums: dict[str, MetricSums] = field(default_factory=dict)  # by metric name

    def users(self, variant: str) -> int:
        return sum(self.new_users.get(variant, {}).values())


def fetch_aggregates(db: Database, name: str) -> Aggregates:
    """Sum up the record of experiment ``name`` (UnknownExperiment when there is none)."""
    experiment_id = _experiment_id(db, name)
    if experiment_id is not None:
        fold(db, experiment_id)
    with db.connection() as conn:
        conn.start_transaction(consistent_snapshot=True)
        try:
            return _fetch(conn, name)
        finally:
            conn.rollback()  # read only: nothing to keep


def _fetch(conn: MySQLConnectionAbstract, name: str) -> Aggregates:
    cursor = conn.cursor()
    experiment = _experiment(cursor, name)
    first, last = _exposure_span(cursor, experiment)
    width = bucket_seconds(first, last)
    new_users: dict[str, dict[int, int]] = defaultdict(dict)
    cursor.execute(EXPOSURES, (width // 3600, experiment.id))
    for variant, bucket, users in cursor.fetchall():
        new_users[variant][int(bucket) * width] = int(users)
    metrics = read_metrics(conn, experiment.id)
    # The conversion timeline (the looks of the always-valid test) follows the primary metric's feedback metric.
    new_conversions, outcomes = _outcomes(cursor, experiment.id, width, metrics.primary.feedback_names[0])
    exposed = {v.name: sum(new_users.get(v.name, {}).values()) for v in experiment.variants}
    metric_sums = fetch_metric_sums(cursor, experiment.id, metrics, exposed)
    requests: dict[str, RequestSums] = defaultdict(RequestSums)
    cursor.execute(REQUESTS, (experiment.id,))
    for variant, bucket, count, errors, fallbacks in cursor.fetchall():
        sums = requests[variant]
        sums.requests += int(count)
        sums.errors += int(errors)
        sums.fallbacks += int(fallbacks)
        sums.latency_buckets[int(bucket)] = int(count)
    changed_at, users_since = _users_since_weights_changed(cursor, experiment)
    cursor.close()
    return Aggregates(experiment, width, _utc(first), _utc(last), dict(new_users), new_conversions, outcomes,
                      dict(requests), _utc(changed_at), users_since, read_plan(conn, experiment.id),
                      read_verdicts(conn, experiment.id), metrics, metric_sums)


def _users_since_weights_changed(cursor, experiment: ExperimentInfo) -> tuple[datetime | None, dict[str, int] | None]:
    """When the weights' proportions last changed, and each variant's users first exposed since (None, None: never)."""
    cursor.execute(WEIGHT_CHANGES, (experiment.id,))
    for changed_at, epoch, before, after in cursor.fetchall():
        if _shares(before) != _shares(after):
            break
    else:
        return None, None
    hour = int(epoch) // 3600
    cursor.execute(EXPOSURES_AFTER_HOUR, (experiment.id, hour))
    users = {variant: int(count) for variant, count in cursor.fetchall()}
    for variant in experiment.variants:
        cursor.execute(EXPOSURES_IN_RANGE, (experiment.id, variant.name, changed_at, (hour + 1) * 3600))
        users[variant.name] = users.get(variant.name, 0) + int(cursor.fetchone()[0])
    return changed_at, users


def _shares(state: str | None) -> dict[str, float]:
    """Each variant's share of the traffic in a history row's definition (weights 70/30 = 7/3)."""
    variants = json.loads(state)["variants"] if state else []
    total = sum(v["weight"] for v in variants)
    return {v["name"]: round(v["weight"] / total, 12) for v in variants} if total else {}


def _exposure_span(cursor, experiment: ExperimentInfo) -> tuple[datetime | None, datetime | None]:
    """First and last exposure over all variants."""
    ends = []
    for variant in experiment.variants:
        cursor.execute(EXPOSURE_SPAN, (experiment.id, variant.name))
        ends += [row for row in cursor.fetchall() if row[0] is not None]
    return min((row[0] for row in ends), default=None), max((row[1] for row in ends), default=None)


def _outcomes(cursor, experiment_id: int, width: int,
              metric: str) -> tuple[dict[str, dict[int, int]], dict[str, OutcomeSums]]:
    """Users who converted on ``metric`` per variant and time bucket, and per-variant sums of per-user totals."""
    new_conversions: dict[str, dict[int, int]] = defaultdict(dict)
    outcomes = {variant: OutcomeSums(t.users, 0, t.total, t.total_of_squares)
                for variant, t in fetch_feedback_totals(cursor, experiment_id, metric).items()}
    cursor.execute(CONVERSIONS, (width // 3600, experiment_id, metric))
    for variant, bucket, users in cursor.fetchall():
        outcomes.setdefault(variant, OutcomeSums()).conversions += int(users)
        new_conversions[variant][int(bucket) * width] = int(users)
    return dict(new_conversions), outcomes


def _experiment_id(db: Database, name: str) -> int | None:
    with db.connection() as conn:
        cursor = conn.cursor()
        cursor.execute(EXPERIMENT_ID, (name,))
        row = cursor.fetchone()
    return int(row[0]) if row else None


def _experiment(cursor, name: str) -> ExperimentInfo:
    cursor.execute(EXPERIMENT, (name,))
    row = cursor.fetchone()
    if row is None:
        raise UnknownExperiment(name)
    experiment_id, name, status, default_variant, guardrails = row
    cursor.execute(VARIANTS, (experiment_id,))
    variants = tuple(Variant(v, float(w), m) for v, w, m in cursor.fetchall())
    return ExperimentInfo(int(experiment_id), name, status, default_variant, guardrails, variants)


def bucket_seconds(first: datetime | None, last: datetime | None) -> int:
    """The finest timeline bucket that keeps the timeline within MAX_TIMELINE_POINTS."""
    span = (last - first).total_seconds() if first and last else 0.0
    for width in BUCKET_SECONDS:
        if span / width < MAX_TIMELINE_POINTS:
            return width
    return BUCKET_SECONDS[-1]


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=timezone.utc) if value else None
