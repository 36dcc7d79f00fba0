"""Folding: the results' summary tables brought up to date with the per-user rows that changed.

The outcome path writes only per-user rows (``metric_users``, and ``metric_covariates`` for
CUPED values), and a trigger marks each changed row dirty; it never touches a per-variant
row, so outcomes do not queue behind one another's locks. The folder moves the changes
into the summary tables (``metric_totals``, ``metric_conversions``, ``metric_pair_totals``,
``metric_covariate_totals``, ``metric_covariate_cross``, and ``metric_covariate_users`` for
a capped metric's CUPED tail): for a batch of users with a dirty row it locks all their
rows, takes off what the summaries counted of each user (the ``folded_*`` columns), adds
what the user counts now, copies the current values into ``folded_*`` and clears
``dirty``, in one transaction. So the summaries always equal sums
over the ``folded_*`` columns, and the read side, which walks those columns for the few
users above a cap, sees one consistent state in its snapshot.

A user is folded whole, not row by row: a ratio multiplies two metrics' totals and CUPED a
metric's total by the covariate value, so one changed row changes cross terms with the
user's other rows.

One folder per experiment at a time (a MySQL ``GET_LOCK`` taken per batch): the results
read folds and waits for the lock, so it is exact up to the moment it starts; the
background task of every worker folds the running experiments and skips one that another
folder holds. Batches are short transactions, so a writer waits at most one batch for a
user's row, and a reader at most one batch for the lock.
"""

from collections import defaultdict
from collections.abc import Sequence
from functools import partial
from itertools import combinations

from mysql.connector.abstracts import MySQLConnectionAbstract

from ml_api.errors import DatabaseUnavailable
from ml_api.infra.database import Database, in_transaction

# Dirty rows of each table per transaction (so up to twice as many users), whose rows stay locked for its
# duration: about 0.1 s at ten million exposures on a small machine.
BATCH_USERS = 1000
# How long a results read waits for another folder's batch before it gives up (a 503).
LOCK_WAIT_SECONDS = 30.0
# A folder's connection that says nothing for this long is closed by MySQL, which rolls its batch back and frees
# its row locks and the experiment's lock: a worker killed mid-batch behind a proxy that keeps its connection open
# holds up its users' outcomes this long at most, not until the proxy notices. A batch never idles that long.
IDLE_SECONDS = 10
# Experiments the background task folds; the others are folded when their results are read.
FOLDED_STATUSES = ("running", "paused")

# The lock is server-wide: the database's name keeps two databases on one server apart.
GET_LOCK = "SELECT GET_LOCK(CONCAT(DATABASE(), '/fold/', %s), %s)"
RELEASE_LOCK = "DO RELEASE_LOCK(CONCAT(DATABASE(), '/fold/', %s))"
SHORT_IDLE = "SET SESSION wait_timeout = %s"
USUAL_IDLE = "SET SESSION wait_timeout = @@GLOBAL.wait_timeout"  # the pool keeps the connection afterwards
# Only the dirty rows are read, from ix_metric_users_dirty and ix_metric_covariates_dirty: named, because their
# statistics cannot be trusted (every row is dirty after a bulk load, almost none once folded), and a scan of
# the primary key that skips the clean rows grows with every row folded.
DIRTY_METRIC_ROWS = ("SELECT metric, variant, user_id FROM metric_users FORCE INDEX (ix_metric_users_dirty)"
                     " WHERE experiment_id = %s AND dirty = 1 LIMIT %s")
DIRTY_COVARIATE_USERS = ("SELECT user_id FROM metric_covariates FORCE INDEX (ix_metric_covariates_dirty)"
                         " WHERE experiment_id = %s AND dirty = 1 LIMIT %s")
# The (metric, variant) pairs with counted rows: with those of the dirty rows found, where a batch's users' rows
# are looked up, by primary key (no index leads with the user: the outcome path would pay for one).
COUNTED_METRIC_VARIANTS = "SELECT metric, variant FROM metric_totals WHERE experiment_id = %s"
LOCK_METRIC_ROWS = (
    "SELECT user_id, metric, variant, total, UNIX_TIMESTAMP(converted_at) DIV 3600, folded_total,"
    " UNIX_TIMESTAMP(folded_converted_at) DIV 3600 FROM metric_users"
    " WHERE experiment_id = %s AND metric = %s AND variant = %s AND user_id IN ({users}) FOR UPDATE"
)
LOCK_COVARIATE_ROWS = (
    "SELECT user_id, covariate, value, variant, folded_value, folded_variant FROM metric_covariates"
    " WHERE experiment_id = %s AND user_id IN ({users}) FOR UPDATE"
)
MARK_METRIC_ROWS = (
    "UPDATE metric_users SET folded_total = total, folded_converted_at = converted_at, dirty = 0"
    " WHERE experiment_id = %s AND metric = %s AND variant = %s AND user_id IN ({users}) AND dirty = 1"
)
MARK_COVARIATE_ROWS = (
    "UPDATE metric_covariates SET folded_value = value, folded_variant = variant, dirty = 0"
    " WHERE experiment_id = %s AND covariate = %s AND user_id IN ({users}) AND dirty = 1"
)
RUNNING = "SELECT id FROM experiments WHERE status IN ({statuses})"
# metric_covariate_users: a user's counted total on a metric with a counted covariate value of theirs.
UPSERT_PAIR = (
    "INSERT INTO metric_covariate_users (experiment_id, metric, covariate, variant, user_id, total, value)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE total = VALUES(total), value = VALUES(value)"
)

# Each summary table: its key columns after experiment_id, and the columns a user adds to.
SUMMARIES = {
    "metric_totals": (("metric", "variant"), ("users", "positive", "negative", "total", "total_of_squares")),
    "metric_conversions": (("metric", "variant", "hour"), ("users",)),
    "metric_pair_totals": (("metric_a", "metric_b", "variant"), ("total",)),
    "metric_covariate_totals": (("covariate", "variant"), ("users", "total", "total_of_squares")),
    "metric_covariate_cross": (("metric", "covariate", "variant"),
                               ("users", "covariate_total", "cross_total", "cross_positive")),
}

MetricRow = tuple[str, str, float, int | None]  # metric, variant, per-user total, hour of the conversion
CovariateRow = tuple[str, float, str | None]  # covariate, value, variant (None before the exposure)


class Sums:
    """What a batch adds to each summary row, by table and key, and the per-user pairs of a metric's total and
    a covariate value it takes off (``old_pairs``) and puts in (``new_pairs``)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[tuple, list[float]]] = defaultdict(dict)
        self.old_pairs: dict[tuple, tuple[float, float]] = {}  # (metric, covariate, variant, user) -> total, x
        self.new_pairs: dict[tuple, tuple[float, float]] = {}

    def add(self, table: str, key: tuple, sign: int, *terms: float) -> None:
        row = self.rows[table].setdefault(key, [0] * len(terms))
        for i, term in enumerate(terms):
            row[i] += sign * term

    def add_user(self, user: str, metrics: Sequence[MetricRow], covariates: Sequence[CovariateRow],
                 sign: int) -> None:
        """One user's contribution to every summary (``sign`` -1 takes it off)."""
        pairs = self.new_pairs if sign > 0 else self.old_pairs
        for metric, variant, total, hour in metrics:
            self.add("metric_totals", (metric, variant), sign, 1, total > 0, total < 0, total, total * total)
            if hour is not None:
                self.add("metric_conversions", (metric, variant, hour), sign, 1)
            for covariate, x, _ in covariates:
                self.add("metric_covariate_cross", (metric, covariate, variant), sign, 1, x, x * total,
                         x * (total > 0))
                pairs[metric, covariate, variant, user] = (total, x)
        for (a, variant_a, total_a, _), (b, variant_b, total_b, _) in combinations(sorted(metrics), 2):
            if variant_a == variant_b:
                self.add("metric_pair_totals", (a, b, variant_a), sign, total_a * total_b)
        for covariate, x, variant in covariates:
            if variant is not None:
                self.add("metric_covariate_totals", (covariate, variant), sign, 1, x, x * x)


def fold(db: Database, experiment_id: int, lock_wait: float = LOCK_WAIT_SECONDS) -> int:
    """Fold every user of the experiment with a dirty row; return how many were folded (by batch: a user
    whose dirty rows were found by two batches counts twice).

    ``lock_wait`` 0 (the background task): stop as soon as another folder holds the experiment.
    Otherwise wait for it up to ``lock_wait`` seconds per batch, then DatabaseUnavailable. Stops
    after a batch that was not full, so a stream of new outcomes cannot keep it going: every
    row dirty before that batch's look-up is folded by then."""
    folded = 0
    while True:
        batch = db.retrying(partial(_fold_next_batch, db, experiment_id, lock_wait))
        if batch is None:
            if lock_wait > 0:
                raise DatabaseUnavailable(f"another fold of experiment {experiment_id} held it {lock_wait:g} s")
            return folded
        users, full = batch
        folded += users
        if not full:
            return folded


def fold_running(db: Database) -> int:
    """Fold the running (and paused) experiments that no other folder holds; return the users folded."""
    with db.connection() as conn:
        cursor = conn.cursor()
        cursor.execute(RUNNING.format(statuses=", ".join(["%s"] * len(FOLDED_STATUSES))), FOLDED_STATUSES)
        experiments = [int(row[0]) for row in cursor.fetchall()]
    return sum(fold(db, experiment_id, lock_wait=0) for experiment_id in experiments)


def _fold_next_batch(db: Database, experiment_id: int, lock_wait: float) -> tuple[int, bool] | None:
    """Under the experiment's lock, fold the users of up to BATCH_USERS dirty rows of each table: how many,
    and whether a table had that many (so maybe more); None when the lock was not had within ``lock_wait``."""
    with db.connection() as conn:
        cursor = conn.cursor()
        cursor.execute(SHORT_IDLE, (IDLE_SECONDS,))
        try:
            cursor.execute(GET_LOCK, (experiment_id, lock_wait))
            if cursor.fetchone()[0] != 1:
                return None
            try:
                return _fold_dirty(conn, experiment_id)
            finally:
                cursor.execute(RELEASE_LOCK, (experiment_id,))
        finally:
            cursor.execute(USUAL_IDLE)


def _fold_dirty(conn: MySQLConnectionAbstract, experiment_id: int) -> tuple[int, bool]:
    cursor = conn.cursor()
    cursor.execute(DIRTY_METRIC_ROWS, (experiment_id, BATCH_USERS))
    dirty_metrics = cursor.fetchall()
    cursor.execute(DIRTY_COVARIATE_USERS, (experiment_id, BATCH_USERS))
    dirty_covariates = cursor.fetchall()
    users = sorted({user for *_, user in dirty_metrics} | {user for (user,) in dirty_covariates})
    if users:
        # READ COMMITTED: the locking reads take no gap locks, so new users' first rows are not held up.
        with in_transaction(conn, isolation_level="READ COMMITTED"):
            _fold_users(conn, experiment_id, users, {(metric, variant) for metric, variant, _ in dirty_metrics})
    return len(users), BATCH_USERS in (len(dirty_metrics), len(dirty_covariates))


def _fold_users(conn: MySQLConnectionAbstract, experiment_id: int, users: Sequence[str],
                dirty_metric_variants: set[tuple[str, str]]) -> None:
    """Lock every row of ``users`` (covariates first, as an exposure's trigger does before any outcome),
    move each user's contribution from the folded values to the current ones, and mark the rows folded.

    The per-user rows looked at are those of the (metric, variant) pairs the sums count (so every counted
    row) and of ``dirty_metric_variants``; a user's uncounted row in another pair is left as it is, dirty,
    for a later batch, and so is a row inserted meanwhile (READ COMMITTED takes no gap locks): only the rows
    read are marked, so the sums always count exactly the rows with folded values."""
    cursor = conn.cursor()
    old_covariates, new_covariates = defaultdict(list), defaultdict(list)
    read_covariates: dict[str, list[str]] = defaultdict(list)  # covariate -> users whose row was read
    cursor.execute(LOCK_COVARIATE_ROWS.format(users=_placeholders(users)), (experiment_id, *users))
    for user, covariate, value, variant, folded_value, folded_variant in cursor.fetchall():
        read_covariates[covariate].append(user)
        new_covariates[user].append((covariate, float(value), variant))
        if folded_value is not None:
            old_covariates[user].append((covariate, float(folded_value), folded_variant))
    cursor.execute(COUNTED_METRIC_VARIANTS, (experiment_id,))
    old_metrics, new_metrics = defaultdict(list), defaultdict(list)
    read_metrics: dict[tuple[str, str], list[str]] = defaultdict(list)  # (metric, variant) -> users read
    for metric_variant in sorted(set(cursor.fetchall()) | dirty_metric_variants):
        cursor.execute(LOCK_METRIC_ROWS.format(users=_placeholders(users)), (experiment_id, *metric_variant, *users))
        for user, metric, variant, total, hour, folded_total, folded_hour in cursor.fetchall():
            read_metrics[metric, variant].append(user)
            new_metrics[user].append((metric, variant, float(total), _hour(hour)))
            if folded_total is not None:
                old_metrics[user].append((metric, variant, float(folded_total), _hour(folded_hour)))
    sums = Sums()
    for user in users:
        old = (sorted(old_metrics[user]), sorted(old_covariates[user]))
        new = (sorted(new_metrics[user]), sorted(new_covariates[user]))
        if old != new:
            sums.add_user(user, *old, sign=-1)
            sums.add_user(user, *new, sign=1)
    _write_sums(cursor, experiment_id, sums)
    for (metric, variant), read in read_metrics.items():
        cursor.execute(MARK_METRIC_ROWS.format(users=_placeholders(read)), (experiment_id, metric, variant, *read))
    for covariate, read in read_covariates.items():
        cursor.execute(MARK_COVARIATE_ROWS.format(users=_placeholders(read)), (experiment_id, covariate, *read))


def _placeholders(values: Sequence[object]) -> str:
    return ", ".join(["%s"] * len(values))


def _hour(value: object) -> int | None:
    return None if value is None else int(value)


def _write_sums(cursor, experiment_id: int, sums: Sums) -> None:
    """Add the batch's changes to the summary rows and write its new or changed pairs (what a batch leaves
    unchanged is not written; per-user rows are never deleted, so neither is a pair)."""
    for table, changes in sums.rows.items():
        rows = [(experiment_id, *key, *terms) for key, terms in changes.items() if any(terms)]
        if rows:
            cursor.executemany(_upsert(table), rows)
    changed = [(experiment_id, *key, *values) for key, values in sums.new_pairs.items()
               if sums.old_pairs.get(key) != values]
    if changed:
        cursor.executemany(UPSERT_PAIR, changed)


def _upsert(table: str) -> str:
    keys, values = SUMMARIES[table]
    columns = ("experiment_id", *keys, *values)
    return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
            f" ON DUPLICATE KEY UPDATE {', '.join(f'{v} = {v} + VALUES({v})' for v in values)}")


def dirty_rows(db: Database, experiment_id: int) -> int:
    """Rows of the experiment waiting for a fold (both tables): what no folder has caught up with yet."""
    with db.connection() as conn:
        cursor = conn.cursor()
        total = 0
        for table in ("metric_users", "metric_covariates"):
            cursor.execute(f"SELECT COUNT(*) FROM {table} FORCE INDEX (ix_{table}_dirty)"
                           " WHERE experiment_id = %s AND dirty = 1", (experiment_id,))
            total += int(cursor.fetchone()[0])
        return total
