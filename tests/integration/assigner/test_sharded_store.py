"""Both sticky stores against a real Redis: one contract, and the sharded layout itself.

The contract tests take a ``store`` fixture; ``test_redis_cluster.py`` runs the same
functions against a Redis Cluster by overriding that fixture.
"""

import threading

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from assigner import RedisAssignmentStore, StoreUnavailable
from assigner.sharded_store import FIELD_BYTES, GROUP_RECORDS, RECORD_BYTES, ShardedRedisAssignmentStore
from ml_api.config import load_config
from ml_api.infra.redis_client import create_redis
from tests.netproxy import TcpProxy
from tests.waiting import wait_until

STORES = {"keys": RedisAssignmentStore, "sharded": ShardedRedisAssignmentStore}


@pytest.fixture(params=list(STORES))
def store(request, redis_client, redis_prefix):
    return STORES[request.param](redis_client, redis_prefix)


@pytest.fixture
def sharded(redis_client, redis_prefix) -> ShardedRedisAssignmentStore:
    return ShardedRedisAssignmentStore(redis_client, redis_prefix)


def test_first_claim_wins_and_later_claims_read_it(store):
    assert store.claim(1, "u1", "control") is None
    assert store.claim(1, "u1", "variation") == "control"
    assert store.claim(1, "u1", "control") == "control"


def test_put_overwrites(store):
    store.claim(1, "u1", "control")
    store.put(1, "u1", "variation")
    assert store.claim(1, "u1", "control") == "variation"


def test_put_without_a_claim_stores(store):
    store.put(3, "u3", "variation-2")
    assert store.claim(3, "u3", "control") == "variation-2"


def test_get_reads_without_writing(store):
    assert store.get(3, "u-get") is None
    assert store.claim(3, "u-get", "variation") is None  # get stored nothing
    assert store.get(3, "u-get") == "variation"
    store.put(3, "u-get", "control")
    assert store.get(3, "u-get") == "control"


def test_experiments_are_separate(store):
    store.claim(1, "u1", "control")
    assert store.claim(2, "u1", "variation") is None
    assert store.claim(1, "u1", "variation") == "control"


def test_user_ids_with_separators_cannot_reach_other_entries(store):
    """``1:u1`` in experiment 1 must not be user ``u1`` of experiment ``1:1``."""
    store.claim(1, "u1", "control")
    assert store.claim(1, "1:u1", "variation") is None
    assert store.claim(11, "u1", "variation") is None
    assert store.claim(1, "u1:", "variation") is None
    assert store.claim(1, "u1", "x") == "control"


def test_unicode_user_ids_and_many_variants(store):
    names = [f"v{i}" for i in range(12)]
    for i, name in enumerate(names):
        assert store.claim(5, f"usér-{i}-✓", name) is None
    assert [store.claim(5, f"usér-{i}-✓", "other") for i in range(len(names))] == names


def test_an_unconfirmed_claim_reads_back_unconfirmed_until_put(store):
    assert store.claim(4, "u-guess", "?control") is None
    assert store.claim(4, "u-guess", "?variation") == "?control"  # the claim writes nothing
    assert store.get(4, "u-guess") == "?control"
    store.put(4, "u-guess", "control")  # recorded by the durable record
    assert store.claim(4, "u-guess", "?variation") == "control"
    assert store.get(4, "u-guess") == "control"


def test_an_unconfirmed_user_leaves_the_shard_neighbours_alone(store):
    for i in range(20):
        store.claim(7, f"n{i}", ("?" if i == 3 else "") + ("control", "variation")[i % 2])
    assert [store.get(7, f"n{i}") for i in range(20)] == [
        "?variation" if i == 3 else ("control", "variation")[i % 2] for i in range(20)]


def test_concurrent_first_claims_agree_on_one_winner(store):
    """Eight threads race to claim the same users: exactly one candidate wins per user."""
    users = [f"race-{i}" for i in range(200)]
    answers: dict[str, list[str | None]] = {u: [] for u in users}
    lock = threading.Lock()

    def claim_all(candidate: str) -> None:
        for user in users:
            previous = store.claim(9, user, candidate)
            with lock:
                answers[user].append(candidate if previous is None else f"saw:{previous}")

    threads = [threading.Thread(target=claim_all, args=(f"variant-{t}",)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for user, seen in answers.items():
        winners = [a for a in seen if not a.startswith("saw:")]
        assert len(winners) == 1, (user, seen)
        assert {a for a in seen if a.startswith("saw:")} <= {f"saw:{winners[0]}"}


def test_a_batch_of_claims_answers_as_claims_one_by_one(store):
    store.claim(6, "known", "control")
    store.claim(6, "guessed", "?variation")
    claims = [(6, "known", "?variation"), (6, "guessed", "?control"), (6, "new", "?control"), (8, "known", "?x")]
    assert store.claim_many(claims) == ["control", "?variation", None, None]
    assert [store.get(e, u) for e, u, _ in claims] == ["control", "?variation", "?control", "?x"]
    store.put_many([(6, "guessed", "variation"), (6, "new", "control")])
    assert store.claim_many([(6, "guessed", "?c"), (6, "new", "?c"), (6, "other", "v")]) == \
        ["variation", "control", None]
    assert store.claim_many([]) == []


def test_a_batch_reloads_scripts_the_server_forgot(private_redis):
    redis_client = redis.Redis.from_url(private_redis)  # its own server: flushing scripts disturbs nobody
    sharded = ShardedRedisAssignmentStore(redis_client, "flushed")
    sharded.claim(6, "before-flush", "control")
    redis_client.script_flush()  # as a restarted Redis: the batch's EVALSHA answers NOSCRIPT
    assert sharded.claim_many([(6, "before-flush", "?x"), (6, "after-flush", "?variation")]) == ["control", None]
    redis_client.script_flush()
    sharded.put_many([(6, "after-flush", "variation")])
    assert sharded.get(6, "after-flush") == "variation"


@pytest.mark.parametrize("store_class", list(STORES.values()), ids=list(STORES))
def test_unreachable_redis_raises_store_unavailable(store_class):
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    with pytest.raises(StoreUnavailable):
        store_class(client, "p").claim(1, "u", "control")
    with pytest.raises(StoreUnavailable):
        store_class(client, "p").put(1, "u", "control")
    with pytest.raises(StoreUnavailable):
        store_class(client, "p").claim_many([(1, "u", "control")])
    with pytest.raises(StoreUnavailable):
        store_class(client, "p").put_many([(1, "u", "control")])


def test_sharded_layout_is_one_listpack_hash_per_shard(sharded, redis_client, redis_prefix):
    for i in range(100):
        sharded.claim(4, f"user-{i}", "control" if i % 3 else "variation")
    keys = list(redis_client.scan_iter(match=f"{redis_prefix}:sticky-groups:4:*"))
    assert keys and all(redis_client.type(k) == b"hash" for k in keys)
    assert all(redis_client.object("encoding", k) == b"listpack" for k in keys)
    key, fingerprint = sharded.locate(4, "user-0")
    assert len(fingerprint) == FIELD_BYTES
    shard = redis_client.hgetall(key)
    assert shard[b"-1"] in (b"control", b"variation")  # names have negative fields
    groups = [value for field, value in shard.items() if int(field) > 0]
    assert all(len(value) % RECORD_BYTES == 0 and len(value) <= GROUP_RECORDS * RECORD_BYTES for value in groups)
    record = next(value[at:at + RECORD_BYTES] for value in groups for at in range(0, len(value), RECORD_BYTES)
                  if value[at:at + FIELD_BYTES] == fingerprint)
    assert shard[b"-%d" % record[FIELD_BYTES]] == b"variation"


def test_users_sharing_a_shard_keep_their_own_variants(redis_client, redis_prefix):
    single = ShardedRedisAssignmentStore(redis_client, redis_prefix, shards=1)
    for i in range(300):  # 34 groups of up to nine records
        assert single.claim(1, f"u{i}", ("a", "b", "c")[i % 3]) is None
    assert [single.claim(1, f"u{i}", "z") for i in range(300)] == [("a", "b", "c")[i % 3] for i in range(300)]
    [key] = redis_client.keys(f"{redis_prefix}:sticky-groups:1:*")
    assert redis_client.hlen(key) == 3 + -(-300 // GROUP_RECORDS)
    assert redis_client.object("encoding", key) == b"listpack"


def test_confirming_and_correcting_rewrite_one_record_in_place(redis_client, redis_prefix):
    single = ShardedRedisAssignmentStore(redis_client, redis_prefix, shards=1)
    for i in range(20):
        single.claim(2, f"u{i}", "?control")
    [key] = redis_client.keys(f"{redis_prefix}:sticky-groups:2:*")
    before = redis_client.hgetall(key)
    single.put(2, "u11", "control")  # confirmed
    single.put(2, "u12", "variation")  # corrected from the durable record, a name new to the shard
    after = redis_client.hgetall(key)
    assert len(after) == len(before) + 1  # the new name only
    changed = [field for field in before if before[field] != after[field]]
    assert changed == [b"2"]  # u11 and u12 are both in the second group
    assert [single.get(2, f"u{i}") for i in range(20)] == [
        {11: "control", 12: "variation"}.get(i, "?control") for i in range(20)]


def test_a_shard_past_the_listpack_limit_keeps_every_user(redis_client, redis_prefix):
    """Beyond 512 fields Redis turns the shard into a hashtable: bigger, same answers."""
    single = ShardedRedisAssignmentStore(redis_client, redis_prefix, shards=1)
    users = 520 * GROUP_RECORDS
    pipe = redis_client.pipeline(transaction=False)
    queued = ShardedRedisAssignmentStore(pipe, redis_prefix, shards=1)
    for i in range(users):
        queued.claim(3, f"u{i}", "control" if i % 2 else "variation")
    pipe.execute()
    [key] = redis_client.keys(f"{redis_prefix}:sticky-groups:3:*")
    assert redis_client.object("encoding", key) == b"hashtable"
    assert single.claim(3, f"u{users - 1}", "x") == "control"
    assert single.claim(3, "u0", "x") == "variation"
    assert single.claim(3, "newcomer", "?control") is None
    assert single.get(3, "newcomer") == "?control"


def test_a_damaged_code_reads_as_no_variant_and_put_repairs_it(sharded, redis_client):
    sharded.claim(6, "u", "control")
    key, fingerprint = sharded.locate(6, "u")
    redis_client.hset(key, "1", fingerprint + bytes([42]))  # index 42 has no name
    damaged = sharded.claim(6, "u", "control")
    assert damaged == "#42"  # not a variant name: the facade asks the durable record
    assert sharded.get(6, "u") is None
    sharded.put(6, "u", "control")
    assert sharded.claim(6, "u", "variation") == "control"


def test_a_flushed_shard_starts_over(sharded, redis_client):
    sharded.claim(8, "u", "variation")
    redis_client.delete(sharded.locate(8, "u")[0])
    assert sharded.claim(8, "u", "control") is None
    assert sharded.claim(8, "u", "variation") == "control"


def test_shard_count_must_be_positive(redis_client):
    with pytest.raises(ValueError):
        ShardedRedisAssignmentStore(redis_client, "p", shards=0)


BUSY_SCRIPT = """
-- ARGV[1] - milliseconds to keep the server busy (nothing else runs meanwhile)
local start = redis.call('TIME')
repeat
    local now = redis.call('TIME')
until (now[1] - start[1]) * 1000 + (now[2] - start[2]) / 1000 >= tonumber(ARGV[1])
return 1
"""


@pytest.mark.parametrize("store_class", list(STORES.values()), ids=list(STORES))
def test_a_timed_out_claim_is_sent_once(store_class, private_redis):
    """A claim that timed out may still run; retried, it would read its own write as a cache
    hit and the user's exposure would never reach MySQL. The gateway's client never retries it."""
    client = create_redis(load_config({"REDIS_URL": private_redis, "REDIS_TIMEOUT_SECONDS": "0.1"}))
    admin = redis.Redis.from_url(private_redis)
    store = store_class(client, "p")
    store.claim(1, "warm-up", "control")  # connected, script cached
    assert_claim_sent_once_while_busy(store, admin)
    assert store.get(1, "u") == "control"  # the timed-out claim did run


def test_a_claim_answered_late_is_not_sent_again(private_redis):
    """The claim ran, its answer came after the client's timeout: the client must not send it again
    on a new connection, which would read the claim's own write as a cache hit (the user would be
    answered from the cache and the exposure never recorded). It fails, and MySQL answers instead."""
    server = redis.Redis.from_url(private_redis).connection_pool.connection_kwargs
    proxy = TcpProxy(server["host"], server["port"])
    try:
        client = create_redis(load_config({"REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0",
                                           "REDIS_TIMEOUT_SECONDS": "0.1"}))
        store = RedisAssignmentStore(client, "late")
        store.claim(1, "warm-up", "control")  # the pooled connection the claim will use
        proxy.stall_answers()
        with pytest.raises(StoreUnavailable):  # no answer within the client's 0.1 s
            store.claim(1, "u", "control")
        proxy.release_answers()
        assert redis.Redis.from_url(private_redis).get(store.key(1, "u")) == b"control"  # it did run
        client.close()
    finally:
        proxy.close()


def is_busy(host: str, port: int) -> bool:
    """True when the server does not answer a PING within 0.2 s: it is running a script."""
    probe = redis.Redis(host=host, port=port, socket_timeout=0.2, retry=Retry(NoBackoff(), 0))
    try:
        probe.ping()
        return False
    except redis.TimeoutError:
        return True
    finally:
        probe.close()


def assert_claim_sent_once_while_busy(store, admin: redis.Redis) -> None:
    """Keep ``admin``'s server busy past the client timeout; the claim must fail, sent once."""
    admin.config_resetstat()
    address = admin.connection_pool.connection_kwargs
    busy = redis.Connection(host=address["host"], port=address["port"])
    busy.send_command("EVAL", BUSY_SCRIPT, 0, 1500)  # sent: the server runs nothing else once it starts it
    # The claim must reach the server while the script runs, so wait for that rather than guess.
    wait_until(lambda: is_busy(address["host"], address["port"]), interval=0.01, message="the busy script running")
    with pytest.raises(StoreUnavailable):
        store.claim(1, "u", "control")
    assert busy.read_response() == 1
    busy.disconnect()
    stats = admin.info("commandstats")
    assert sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("set", "evalsha")) == 1
