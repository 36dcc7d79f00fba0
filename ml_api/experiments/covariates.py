"""CUPED covariates in MySQL: one pre-experiment value per user, kept only if it came before the exposure.

A covariate adjusts a metric for what each user was like before the experiment (last
month's revenue for this month's). It must not be touched by the treatment, so a value is
recorded only while the user has no exposure in the experiment; a value for a user already
exposed is refused (counted, and named in the answer). Until the exposure a user's value
may be replaced. Exposed users without a value count as 0 (``results.metric_sums``).
"""

from collections.abc import Sequence
from datetime import datetime, timezone

from ml_api.infra.database import Database

UPSERT_COVARIATE = (
    "INSERT INTO metric_covariates (experiment_id, covariate, user_id, value, recorded_at) VALUES (%s, %s, %s, %s, %s)"
    " ON DUPLICATE KEY UPDATE value = VALUES(value), recorded_at = VALUES(recorded_at)"
)


def record_covariates(db: Database, experiment_id: int, covariate: str,
                      values: Sequence[tuple[str, float]]) -> list[str]:
    """Store each ``(user_id, value)`` whose user is not exposed yet; return the users refused as exposed.

    One transaction: the exposures are read, then the others written (an exposure recorded
    between the two is at the same moment, which still counts as "at first exposure")."""
    users = sorted({user for user, _ in values})
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    with db.transaction() as conn:
        cursor = conn.cursor()
        cursor.execute(f"SELECT user_id FROM assignments WHERE experiment_id = %s AND user_id IN"
                       f" ({', '.join(['%s'] * len(users))})", (experiment_id, *users))
        exposed = {row[0] for row in cursor.fetchall()}
        rows = [(experiment_id, covariate, user, value, now) for user, value in values if user not in exposed]
        if rows:
            cursor.executemany(UPSERT_COVARIATE, rows)
    return [user for user, _ in values if user in exposed]
