"""Each declared metric summed up in MySQL: per variant, the sufficient statistics of its per-user values.

For every exposed user the metric has a per-user value y (a conversion's 0/1, a mean's
per-user sum, capped when the metric caps, a ratio's numerator sum) and possibly a second
one x (a ratio's denominator sum, or the CUPED covariate). Per variant the statistics need
n, Σy, Σy², Σx, Σx², Σxy over the exposed users. Users without outcomes have no row in
``metric_users`` (their y is 0, or the cap when it is below 0), so every sum is a GROUP BY
over the rows of users who sent feedback, and the exposed users come from
``exposure_counts``; none reads the raw outcomes. A capping quantile is the k-th largest
per-user sum, found by walking ``ix_metric_users_total``; a ratio's Σxy joins the two
metrics' rows on their primary keys. Covariate values carry their user's variant (set by a
trigger at the first exposure), so Σx and Σx² are a GROUP BY over ``metric_covariates``
and Σxy one primary-key look-up per user with outcomes.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from ml_api.experiments.metrics import MetricSet, MetricSpec

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
