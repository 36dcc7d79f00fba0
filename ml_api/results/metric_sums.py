"""Each declared metric summed up in MySQL: per variant, the sufficient statistics of its per-user values.

For every exposed user the metric has a per-user value y (a conversion's 0/1, a mean's
per-user sum, capped when the metric caps, a ratio's numerator sum) and possibly a second
one x (a ratio's denominator sum, or the CUPED covariate). Per variant the statistics need
n, Σy, Σy², Σx, Σx², Σxy over the exposed users. Users without outcomes have no row in
``metric_users`` (their y is 0, or the cap when it is below 0) and the exposed users come
from ``exposure_counts``; none reads the raw outcomes.

What needs no per-user scan: the summary tables the folder keeps (``results.fold``, which
the results read runs first). ``metric_totals`` holds per variant the users with outcomes,
how many have a positive or a negative total, Σ and Σ² of the totals, which are a
conversion's, an uncapped mean's and a ratio's own sums. A cap c changes only the users
above it: Σ min(y, c) = Σy − Σ_{y>c}(y − c), the latter a range of
``ix_metric_users_folded`` (which holds the variant too, as part of the primary key); a
capping quantile is the k-th largest per-user sum, found by walking that index. The cross
sums: ``metric_pair_totals`` (a ratio's Σxy, per pair of feedback metrics),
``metric_covariate_totals`` (Σx, Σx² of each covariate over exposed users) and
``metric_covariate_cross`` (Σx·y, Σx·(y > 0) and Σx over the users with outcomes); a cap
takes Σ_{y>c} x·(y − c) off Σx·y, a range of ``metric_covariate_users`` (the fold keeps
there each user's total next to their covariate value, so the tail needs no look-up per
user: 100,000 random reads at ten million exposures). So the per-user rows read are those
above a cap (at most the quantile's tail), never all users with outcomes. Those walks read the ``folded_*`` columns, the values the
summaries counted, so in one snapshot the two always agree (a row that changed after the
last fold counts as it was then, in both).
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from ml_api.experiments.metrics import MetricSet, MetricSpec

FEEDBACK_TOTALS = (
    "SELECT variant, users, positive, negative, total, total_of_squares"
    " FROM metric_totals WHERE experiment_id = %s AND metric = %s"
)
# The users whose per-user sum is above a cap, per variant: a range of ix_metric_users_folded, which covers it.
ABOVE_CAP = (
    "SELECT variant, COUNT(*), SUM(folded_total), SUM(folded_total * folded_total) FROM metric_users"
    " WHERE experiment_id = %s AND metric = %s AND folded_total > %s GROUP BY variant"
)
# A ratio's Σxy: the two metrics' per-user sums multiplied, over the users with both (the pair is stored in order).
PAIR_TOTALS = (
    "SELECT variant, total FROM metric_pair_totals"
    " WHERE experiment_id = %s AND metric_a = LEAST(%s, %s) AND metric_b = GREATEST(%s, %s)"
)
# Exposed users with a covariate value (their variant is set at the first exposure; forced users are no exposures).
COVARIATE_TOTALS = (
    "SELECT variant, users, total, total_of_squares FROM metric_covariate_totals"
    " WHERE experiment_id = %s AND covariate = %s"
)
# Σx·y and Σx·(y > 0) over the users with both outcomes and a covariate value, and their Σx (the others' y is empty).
COVARIATE_CROSS = (
    "SELECT variant, cross_total, cross_positive, covariate_total FROM metric_covariate_cross"
    " WHERE experiment_id = %s AND metric = %s AND covariate = %s"
)
# Σ x·(y − cap) over the users above a cap with a covariate value: what capping takes off Σx·y. A range of
# ix_metric_covariate_users_total, which covers it (the pairs the fold keeps, so no look-up per user).
COVARIATE_ABOVE_CAP = (
    "SELECT variant, SUM(value * (total - %s)) FROM metric_covariate_users"
    " WHERE experiment_id = %s AND metric = %s AND covariate = %s AND total > %s GROUP BY variant"
)
# The k largest positive per-user sums, per variant: the smallest of them is the k-th largest (the cap), and they
# are every user above it plus some equal to it (whose excess is 0), so one walk gives the cap and the tail's sums.
TOP_SUMS = (
    "SELECT variant, COUNT(*), SUM(total), SUM(total * total), MIN(total) FROM (SELECT variant, folded_total AS total"
    " FROM metric_users WHERE experiment_id = %s AND metric = %s AND folded_total > 0 ORDER BY folded_total DESC"
    " LIMIT %s) top"
    " GROUP BY variant"
)
KTH_LARGEST_NEGATIVE = ("SELECT folded_total FROM metric_users WHERE experiment_id = %s AND metric = %s"
                        " AND folded_total < 0 ORDER BY folded_total DESC LIMIT 1 OFFSET %s")


TailSums = dict[str, tuple[int, float, float]]  # variant -> users, Σy, Σy² of the users above a cap


@dataclass(frozen=True)
class FeedbackTotals:
    """One variant's sums over the per-user totals of one feedback metric (its users with outcomes)."""

    users: int = 0
    positive: int = 0  # users whose total is above 0
    negative: int = 0  # users whose total is below 0
    total: float = 0.0
    total_of_squares: float = 0.0


@dataclass(frozen=True)
class VariantSums:
    """One variant's per-user sums over its exposed users: y, and x when the metric pairs it with y."""

    n: int
    sum_y: float = 0.0
    sum_y2: float = 0.0
    sum_x: float = 0.0
    sum_x2: float = 0.0
    sum_xy: float = 0.0
    users_with_y: int = 0  # users with outcomes on y's feedback metric
    users_with_x: int = 0  # users with outcomes on x's metric, or with a covariate value


@dataclass(frozen=True)
class MetricSums:
    """A metric's sums per variant, the cap applied (a quantile's value too), and the CUPED sums (x = covariate)."""

    metric: MetricSpec
    variants: dict[str, VariantSums]
    cap: float | None = None
    cuped: dict[str, VariantSums] | None = None


def fetch_metric_sums(cursor, experiment_id: int, metrics: MetricSet,
                      exposed: Mapping[str, int]) -> dict[str, MetricSums]:
    """Every metric of ``metrics`` summed per variant; ``exposed``: users per variant."""
    return {m.name: _metric_sums(cursor, experiment_id, m, exposed) for m in metrics.metrics}


def _metric_sums(cursor, experiment_id: int, metric: MetricSpec, exposed: Mapping[str, int]) -> MetricSums:
    if metric.type == "ratio":
        return MetricSums(metric, _ratio_sums(cursor, experiment_id, metric, exposed))
    totals = fetch_feedback_totals(cursor, experiment_id, metric.source)
    cap, above = _cap(cursor, experiment_id, metric, totals, sum(exposed.values())) if metric.cap else (None, None)
    empty = min(0.0, cap) if cap is not None else 0.0  # what a user without outcomes counts as
    if metric.type == "conversion":
        per_user = {v: (t.users, float(t.positive), float(t.positive)) for v, t in totals.items()}
    else:
        per_user = _capped(cursor, experiment_id, metric.source, totals, cap, above)
    sums = _with_empty(per_user, empty, exposed)
    cuped = _covariate_sums(cursor, experiment_id, metric, cap, empty, sums) if metric.covariate else None
    return MetricSums(metric, sums, cap, cuped)


def fetch_feedback_totals(cursor, experiment_id: int, metric: str | None) -> dict[str, FeedbackTotals]:
    """Per variant, the sums over the per-user totals of feedback metric ``metric`` (variants with outcomes)."""
    cursor.execute(FEEDBACK_TOTALS, (experiment_id, metric))
    return {variant: FeedbackTotals(int(users), int(positive), int(negative), float(total), float(squares))
            for variant, users, positive, negative, total, squares in cursor.fetchall()}


def _capped(cursor, experiment_id: int, source: str | None, totals: Mapping[str, FeedbackTotals],
            cap: float | None, above: TailSums | None = None) -> dict[str, tuple[int, float, float]]:
    """Users, Σ min(y, cap) and Σ min(y, cap)² per variant over the users with outcomes (no cap: Σy, Σy²);
    ``above``: the users, Σy and Σy² above the cap (or equal to it) per variant, when already read."""
    if cap is not None and above is None:
        cursor.execute(ABOVE_CAP, (experiment_id, source, cap))
        above = {variant: (int(users), float(total), float(squares)) for variant, users, total, squares in
                 cursor.fetchall()}
    capped = {}
    for variant, t in totals.items():
        users, total, squares = (above or {}).get(variant, (0, 0.0, 0.0))
        level = cap if cap is not None else 0.0
        capped[variant] = (t.users, t.total - (total - level * users),
                           t.total_of_squares - (squares - level * level * users))
    return capped


def _with_empty(per_user: Mapping[str, tuple[int, float, float]], empty: float,
                exposed: Mapping[str, int]) -> dict[str, VariantSums]:
    """n, Σy, Σy² per variant: the users with outcomes (users, Σy, Σy²), plus ``empty`` for every other exposed user."""
    sums = {}
    for variant, n in exposed.items():
        users, total, squares = per_user.get(variant, (0, 0.0, 0.0))
        without = max(n - users, 0)
        sums[variant] = VariantSums(n, total + without * empty, squares + without * empty * empty,
                                    users_with_y=users)
    return sums


def _ratio_sums(cursor, experiment_id: int, metric: MetricSpec, exposed: Mapping[str, int]) -> dict[str, VariantSums]:
    """Numerator sums as y, denominator sums as x, and Σxy over the users with both."""
    numerator = _with_empty(_uncapped(cursor, experiment_id, metric.numerator), 0.0, exposed)
    denominator = _with_empty(_uncapped(cursor, experiment_id, metric.denominator), 0.0, exposed)
    if metric.numerator == metric.denominator:  # each user's sum times itself
        cross = {v: s.sum_y2 for v, s in numerator.items()}
    else:
        pair = (metric.numerator, metric.denominator)
        cursor.execute(PAIR_TOTALS, (experiment_id, *pair, *pair))
        cross = {variant: float(total) for variant, total in cursor.fetchall()}
    return {v: replace(numerator[v], sum_x=denominator[v].sum_y, sum_x2=denominator[v].sum_y2,
                       sum_xy=cross.get(v, 0.0), users_with_x=denominator[v].users_with_y) for v in exposed}


def _uncapped(cursor, experiment_id: int, metric: str | None) -> dict[str, tuple[int, float, float]]:
    """Users with outcomes, Σy and Σy² per variant of feedback metric ``metric``."""
    totals = fetch_feedback_totals(cursor, experiment_id, metric)
    return {v: (t.users, t.total, t.total_of_squares) for v, t in totals.items()}


def _covariate_sums(cursor, experiment_id: int, metric: MetricSpec, cap: float | None, empty: float,
                    sums: Mapping[str, VariantSums]) -> dict[str, VariantSums]:
    """The metric's sums with the covariate as x (exposed users without a value count as x = 0)."""
    cursor.execute(COVARIATE_TOTALS, (experiment_id, metric.covariate))
    found = {variant: (int(users), float(sx), float(sx2)) for variant, users, sx, sx2 in cursor.fetchall()}
    cursor.execute(COVARIATE_CROSS, (experiment_id, metric.source, metric.covariate))
    cross = {variant: (float(positive if metric.type == "conversion" else sxy), float(sx))
             for variant, sxy, positive, sx in cursor.fetchall()}
    above: dict[str, float] = {}
    if cap is not None:
        cursor.execute(COVARIATE_ABOVE_CAP, (cap, experiment_id, metric.source, metric.covariate, cap))
        above = {variant: float(excess) for variant, excess in cursor.fetchall()}
    cuped = {}
    for variant, s in sums.items():
        users, sx, sx2 = found.get(variant, (0, 0.0, 0.0))
        sxy, sx_with_y = cross.get(variant, (0.0, 0.0))
        sxy -= above.get(variant, 0.0)
        cuped[variant] = replace(s, sum_x=sx, sum_x2=sx2, sum_xy=sxy + empty * (sx - sx_with_y), users_with_x=users)
    return cuped


def _cap(cursor, experiment_id: int, metric: MetricSpec, totals: Mapping[str, FeedbackTotals],
         exposed_users: int) -> tuple[float | None, TailSums | None]:
    """The value a numeric metric is capped at: the declared one, or the declared quantile of the per-user
    sums of every exposed user pooled (zeros included), as the smallest value with at least that share of
    users at or below it (numpy's ``inverted_cdf``). None before anyone is exposed. With it, the tail's sums
    when finding the cap read them (a positive quantile cap), else None."""
    assert metric.cap is not None
    if metric.cap.value is not None:
        return metric.cap.value, None
    if exposed_users == 0:
        return None, None
    rank = max(math.ceil(metric.cap.quantile * exposed_users - 1e-9), 1)  # the rank-th smallest value
    k = exposed_users - rank + 1  # = the k-th largest
    positive = sum(t.positive for t in totals.values())
    negative = sum(t.negative for t in totals.values())
    if k <= positive:
        cursor.execute(TOP_SUMS, (experiment_id, metric.source, k))
        top = cursor.fetchall()
        tail = {variant: (int(users), float(total), float(squares)) for variant, users, total, squares, _ in top}
        return min(float(smallest) for *_, smallest in top), tail
    if k <= exposed_users - negative:
        return 0.0, None
    cursor.execute(KTH_LARGEST_NEGATIVE, (experiment_id, metric.source, k - (exposed_users - negative) - 1))
    row = cursor.fetchone()
    return (float(row[0]) if row else None), None
