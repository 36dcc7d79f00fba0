"""The collision arithmetic of the sharded sticky store, against independent computations."""

import itertools
from collections import Counter

import numpy as np
import pytest

from assigner.sharded_store import (
    DEFAULT_SHARDS,
    FIELD_BYTES,
    collision_probability,
    expected_colliding_pairs,
    shard_and_fingerprint,
)

CELLS = DEFAULT_SHARDS * 2 ** (8 * FIELD_BYTES)


def exact_birthday_probability(users: int, cells: int) -> float:
    """1 - prod(1 - i/cells) for i < users: the exact chance of a shared cell, summed in logs."""
    total = 0.0
    for start in range(0, users, 1_000_000):
        i = np.arange(start, min(users, start + 1_000_000), dtype=np.float64)
        total += np.log1p(-i / cells).sum()
    return -np.expm1(total)


@pytest.mark.parametrize("users", [1_000_000, 10_000_000])
def test_collision_probability_matches_the_exact_birthday_product(users):
    assert collision_probability(users) == pytest.approx(exact_birthday_probability(users, CELLS), rel=1e-6)


@pytest.mark.parametrize("users, documented", [(1_000_000, 1e-7), (10_000_000, 1e-5), (100_000_000, 1e-3)])
def test_the_documented_figures(users, documented):
    """The module docstring and the README round these: same order, within 2x."""
    assert documented / 2 < expected_colliding_pairs(users) < documented * 2


def test_the_expected_pairs_match_a_simulation_with_real_digests():
    """With a 1-byte fingerprint and 16 shards (4,096 cells) collisions are common: count the
    pairs among real users' digests, split as the store splits them, and compare."""
    users, trials, shards = 300, 200, 16
    pairs = []
    for trial in range(trials):
        cells = Counter()
        for i in range(users):
            shard, fingerprint = shard_and_fingerprint(f"trial-{trial}-user-{i}", shards)
            cells[(shard, fingerprint[:1])] += 1
        pairs.append(sum(n * (n - 1) // 2 for n in cells.values()))
    expected = expected_colliding_pairs(users, shards, field_bytes=1)
    assert expected == pytest.approx(users * (users - 1) / 2 / 4096)
    standard_error = np.std(pairs) / np.sqrt(trials)
    assert abs(np.mean(pairs) - expected) < 4 * standard_error


def test_shard_and_fingerprint_are_independent_parts_of_the_digest():
    """The shard comes from bytes 0..7 and the fingerprint from 8..13, so users of one shard
    still spread over fingerprints (a shared prefix would make collisions far likelier)."""
    by_shard = Counter()
    for i in itertools.islice(itertools.count(), 5000):
        shard, fingerprint = shard_and_fingerprint(f"u{i}", 2)
        by_shard[(shard, fingerprint[0] % 2)] += 1
    assert len(fingerprint) == FIELD_BYTES
    assert all(abs(count - 1250) < 200 for count in by_shard.values()) and len(by_shard) == 4
