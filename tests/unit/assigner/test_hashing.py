import json
import os
import subprocess
import sys

import pytest

from assigner import BUCKETS, Variant, bucket, choose_variant, traffic_bucket
from tests.paths import ASSIGNMENT_VECTORS, PROJECT_ROOT

VECTORS = json.loads(ASSIGNMENT_VECTORS.read_text())


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: f"{c['salt']!r}:{c['user_id'][:20]!r}")
def test_golden_vectors(case):
    variants = [Variant(f"v{i}", w, "m") for i, w in enumerate(case["weights"])]
    assert bucket(case["salt"], case["user_id"]) == case["bucket"]
    assert traffic_bucket(case["salt"], case["user_id"]) == case["traffic_bucket"]
    assert choose_variant(variants, case["bucket"]) == case["variant"]


@pytest.mark.parametrize("seed", ["0", "1", "12345"])
def test_same_buckets_in_a_process_with_another_hash_seed(seed):
    script = (
        "import json, sys; from assigner import bucket; "
        "cases = json.load(open(sys.argv[1]))['cases']; "
        "print(json.dumps([bucket(c['salt'], c['user_id']) for c in cases]))"
    )
    vectors = ASSIGNMENT_VECTORS
    out = subprocess.run(
        [sys.executable, "-c", script, str(vectors)],
        env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True, text=True, check=True,
    ).stdout
    assert json.loads(out) == [c["bucket"] for c in VECTORS["cases"]]


def test_buckets_cover_the_range_uniformly():
    from scipy.stats import chisquare

    counts = [0] * 10
    for i in range(50_000):
        counts[bucket("uniformity", f"user-{i}") * 10 // BUCKETS] += 1
    assert chisquare(counts).pvalue > 1e-4


def test_variant_and_traffic_buckets_are_independent():
    same = sum(bucket("s", f"u{i}") == traffic_bucket("s", f"u{i}") for i in range(20_000))
    assert same < 10  # about 2 expected by chance
