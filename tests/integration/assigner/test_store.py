"""What is particular to the one-key-per-user layout (the shared store contract is tested
for both layouts in test_sharded_store.py)."""

import pytest

from assigner import RedisAssignmentStore


@pytest.fixture
def store(redis_client, redis_prefix):
    return RedisAssignmentStore(redis_client, redis_prefix)


def test_written_and_read_under_the_same_key(store, redis_client, redis_prefix):
    store.claim(7, "u-9", "variation")
    assert store.key(7, "u-9") == f"{redis_prefix}:sticky:7:u-9"
    assert redis_client.get(store.key(7, "u-9")) == b"variation"


def test_prefixes_are_separate(store, redis_client, redis_prefix):
    store.claim(1, "u1", "control")
    other = RedisAssignmentStore(redis_client, redis_prefix + "-other")
    try:
        assert other.claim(1, "u1", "variation") is None
    finally:
        redis_client.delete(other.key(1, "u1"))
