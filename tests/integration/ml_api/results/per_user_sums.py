"""The reference the folded summaries are checked against: the results' sums as they were read before
the folds, every one a GROUP BY over the per-user rows' current values (``metric_users``,
``metric_covariates``). Slow at scale, simple and independent of the folder."""

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import replace

from ml_api.experiments.metrics import MetricSet, MetricSpec
from ml_api.results.metric_sums import MetricSums, VariantSums
from ml_api.results.query import OutcomeSums

PER_USER_SUMS = (
    "SELECT variant, COUNT(*), SUM({y}), SUM({y} * {y}) FROM metric_users m"
    " WHERE experiment_id = %s AND metric = %s GROUP BY variant"
)
RATIO_CROSS_SUMS = (
    "SELECT y.variant, SUM(y.total * x.total) FROM metric_users y JOIN metric_users x"
    " ON x.experiment_id = y.experiment_id AND x.metric = %s AND x.variant = y.variant AND x.user_id = y.user_id"
    " WHERE y.experiment_id = %s AND y.metric = %s GROUP BY y.variant"
)
# Exposed users with a covariate value (their variant is set at the first exposure; forced users are no exposures).
COVARIATE_SUMS = (
    "SELECT variant, COUNT(*), SUM(value), SUM(value * value) FROM metric_covariates"
    " WHERE experiment_id = %s AND covariate = %s AND variant IS NOT NULL GROUP BY variant"
)
# Σxy over the users with both outcomes and a covariate value, and their Σx (the others' y is the empty value).
COVARIATE_CROSS_SUMS = (
    "SELECT m.variant, SUM(c.value * {y}), SUM(c.value) FROM metric_users m JOIN metric_covariates c"
    " ON c.experiment_id = m.experiment_id AND c.covariate = %s AND c.user_id = m.user_id"
    " WHERE m.experiment_id = %s AND m.metric = %s GROUP BY m.variant"
)
SIGN_COUNTS = "SELECT COALESCE(SUM(total > 0), 0), COALESCE(SUM(total < 0), 0) FROM metric_users" \
              " WHERE experiment_id = %s AND metric = %s"
KTH_LARGEST_POSITIVE = ("SELECT total FROM metric_users WHERE experiment_id = %s AND metric = %s AND total > 0"
                        " ORDER BY total DESC LIMIT 1 OFFSET %s")
KTH_LARGEST_NEGATIVE = ("SELECT total FROM metric_users WHERE experiment_id = %s AND metric = %s AND total < 0"
                        " ORDER BY total DESC LIMIT 1 OFFSET %s")
CONVERTED = "(m.total > 0)"
TOTAL = "m.total"
CAPPED = "LEAST(m.total, %s)"


def fetch_metric_sums(cursor, experiment_id: int, metrics: MetricSet,
                      exposed: Mapping[str, int]) -> dict[str, MetricSums]:
    """Every metric of ``metrics`` summed per variant; ``exposed``: users per variant."""
    return {m.name: _metric_sums(cursor, experiment_id, m, exposed) for m in metrics.metrics}


def _metric_sums(cursor, experiment_id: int, metric: MetricSpec, exposed: Mapping[str, int]) -> MetricSums:
    if metric.type == "ratio":
        return MetricSums(metric, _ratio_sums(cursor, experiment_id, metric, exposed))
    cap = cap_value(cursor, experiment_id, metric, sum(exposed.values())) if metric.cap else None
    y, params = (CONVERTED, ()) if metric.type == "conversion" else (CAPPED, (cap,)) if cap is not None else (TOTAL, ())
    empty = min(0.0, cap) if cap is not None else 0.0  # what a user without outcomes counts as
    sums = _y_sums(cursor, experiment_id, metric.source, y, params, empty, exposed)
    cuped = _covariate_sums(cursor, experiment_id, metric, y, params, empty, sums) if metric.covariate else None
    return MetricSums(metric, sums, cap, cuped)


def _y_sums(cursor, experiment_id: int, source: str | None, y: str, params: tuple, empty: float,
            exposed: Mapping[str, int]) -> dict[str, VariantSums]:
    """n, Σy, Σy² per variant: the rows of users with outcomes, plus ``empty`` for every other exposed user."""
    found = {}
    cursor.execute(PER_USER_SUMS.format(y=y), (*params, *params, *params, experiment_id, source))
    for variant, users, total, squares in cursor.fetchall():
        found[variant] = (int(users), float(total), float(squares))
    sums = {}
    for variant, n in exposed.items():
        users, total, squares = found.get(variant, (0, 0.0, 0.0))
        without = max(n - users, 0)
        sums[variant] = VariantSums(n, total + without * empty, squares + without * empty * empty,
                                    users_with_y=users)
    return sums


def _ratio_sums(cursor, experiment_id: int, metric: MetricSpec, exposed: Mapping[str, int]) -> dict[str, VariantSums]:
    """Numerator sums as y, denominator sums as x, and Σxy over the users with both."""
    numerator = _y_sums(cursor, experiment_id, metric.numerator, TOTAL, (), 0.0, exposed)
    denominator = _y_sums(cursor, experiment_id, metric.denominator, TOTAL, (), 0.0, exposed)
    cursor.execute(RATIO_CROSS_SUMS, (metric.denominator, experiment_id, metric.numerator))
    cross = {variant: float(total) for variant, total in cursor.fetchall()}
    return {v: replace(numerator[v], sum_x=denominator[v].sum_y, sum_x2=denominator[v].sum_y2,
                       sum_xy=cross.get(v, 0.0), users_with_x=denominator[v].users_with_y) for v in exposed}


def _covariate_sums(cursor, experiment_id: int, metric: MetricSpec, y: str, params: tuple, empty: float,
                    sums: Mapping[str, VariantSums]) -> dict[str, VariantSums]:
    """The metric's sums with the covariate as x (exposed users without a value count as x = 0)."""
    cursor.execute(COVARIATE_SUMS, (experiment_id, metric.covariate))
    found = {variant: (int(users), float(sx), float(sx2)) for variant, users, sx, sx2 in cursor.fetchall()}
    cursor.execute(COVARIATE_CROSS_SUMS.format(y=y), (*params, metric.covariate, experiment_id, metric.source))
    cross = {variant: (float(sxy), float(sx)) for variant, sxy, sx in cursor.fetchall()}
    cuped = {}
    for variant, s in sums.items():
        users, sx, sx2 = found.get(variant, (0, 0.0, 0.0))
        sxy, sx_with_y = cross.get(variant, (0.0, 0.0))
        cuped[variant] = replace(s, sum_x=sx, sum_x2=sx2, sum_xy=sxy + empty * (sx - sx_with_y), users_with_x=users)
    return cuped


def cap_value(cursor, experiment_id: int, metric: MetricSpec, exposed_users: int) -> float | None:
    """The value a numeric metric is capped at: the declared one, or the declared quantile of the per-user
    sums of every exposed user pooled (zeros included), as the smallest value with at least that share of
    users at or below it (numpy's ``inverted_cdf``). None before anyone is exposed."""
    assert metric.cap is not None
    if metric.cap.value is not None:
        return metric.cap.value
    if exposed_users == 0:
        return None
    rank = max(math.ceil(metric.cap.quantile * exposed_users - 1e-9), 1)  # the rank-th smallest value
    k = exposed_users - rank + 1  # = the k-th largest
    cursor.execute(SIGN_COUNTS, (experiment_id, metric.source))
    positive, negative = (int(v) for v in cursor.fetchone())
    if k <= positive:
        cursor.execute(KTH_LARGEST_POSITIVE, (experiment_id, metric.source, k - 1))
        return float(cursor.fetchone()[0])
    if k <= exposed_users - negative:
        return 0.0
    cursor.execute(KTH_LARGEST_NEGATIVE, (experiment_id, metric.source, k - (exposed_users - negative) - 1))
    row = cursor.fetchone()
    return float(row[0]) if row else None


# Per variant and bucket of the moment users converted (NULL: never converted), on one feedback metric.
OUTCOMES = (
    "SELECT variant, UNIX_TIMESTAMP(converted_at) DIV %s AS bucket, COUNT(*), SUM(total), SUM(total * total)"
    " FROM metric_users WHERE experiment_id = %s AND metric = %s GROUP BY variant, bucket"
)


def fetch_outcomes(cursor, experiment_id: int, width: int,
                   metric: str) -> tuple[dict[str, dict[int, int]], dict[str, OutcomeSums]]:
    """Users who converted on ``metric`` per variant and time bucket, and per-variant sums of per-user totals."""
    new_conversions: dict[str, dict[int, int]] = defaultdict(dict)
    outcomes: dict[str, OutcomeSums] = defaultdict(OutcomeSums)
    cursor.execute(OUTCOMES, (width, experiment_id, metric))
    for variant, bucket, users, total, total_of_squares in cursor.fetchall():
        sums = outcomes[variant]
        sums.users += int(users)
        sums.total += float(total)
        sums.total_of_squares += float(total_of_squares)
        if bucket is not None:
            sums.conversions += int(users)
            new_conversions[variant][int(bucket) * width] = int(users)
    return dict(new_conversions), dict(outcomes)
