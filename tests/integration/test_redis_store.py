"""RedisAssignmentStore against a real Redis, in a private key prefix."""

import pytest
import redis

from assigner import RedisAssignmentStore, StoreUnavailable


@pytest.fixture
def store(redis_client, redis_prefix):
    return RedisAssignmentStore(redis_client, redis_prefix)


def test_first_claim_wins_and_later_claims_read_it(store):
    assert store.claim(1, "u1", "control") is None
    assert store.claim(1, "u1", "variation") == "control"
    assert store.claim(1, "u1", "control") == "control"


def test_written_and_read_under_the_same_key(store, redis_client):
    store.claim(7, "u-9", "variation")
    assert redis_client.get(store.key(7, "u-9")) == b"variation"


def test_put_overwrites(store):
    store.claim(1, "u1", "control")
    store.put(1, "u1", "variation")
    assert store.claim(1, "u1", "control") == "variation"


def test_experiments_and_prefixes_are_separate(store, redis_client, redis_prefix):
    store.claim(1, "u1", "control")
    assert store.claim(2, "u1", "variation") is None
    other = RedisAssignmentStore(redis_client, redis_prefix + "-other")
    try:
        assert other.claim(1, "u1", "variation") is None
    finally:
        redis_client.delete(other.key(1, "u1"))


def test_user_ids_with_separators_cannot_reach_other_keys(store):
    """``1:u1`` in experiment 1 must not be user ``u1`` of experiment ``1:1``."""
    store.claim(1, "u1", "control")
    assert store.claim(1, "1:u1", "variation") is None
    assert store.claim(11, "u1", "variation") is None
    assert store.claim(1, "u1:", "variation") is None
    assert store.claim(1, "u1", "x") == "control"


def test_unreachable_redis_raises_store_unavailable():
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    with pytest.raises(StoreUnavailable):
        RedisAssignmentStore(client, "p").claim(1, "u", "control")


def test_get_reads_without_writing(store):
    assert store.get(3, "u-get") is None
    assert store.claim(3, "u-get", "variation") is None  # get did not store anything
    assert store.get(3, "u-get") == "variation"
