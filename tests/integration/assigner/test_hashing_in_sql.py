"""The golden vectors hold for an independent implementation of the hash, in SQL."""

import json

from tests.paths import ASSIGNMENT_VECTORS

VECTORS = json.loads(ASSIGNMENT_VECTORS.read_text())["cases"]
BUCKET_SQL = "SELECT CAST(CONV(LEFT(SHA2(CONCAT(%s, ':', %s), 256), 16), 16, 10) AS UNSIGNED) MOD 10000"


def test_sql_bucket_matches_the_golden_vectors(db):
    with db.connection() as conn:
        cursor = conn.cursor()
        for case in VECTORS:
            cursor.execute(BUCKET_SQL, (case["salt"], case["user_id"]))
            assert cursor.fetchone()[0] == case["bucket"], case
