"""Both sticky stores on a real three-master Redis Cluster, started on loopback ports.

The cluster client is built by ``ml_api.infra.redis_client.create_redis`` with ``REDIS_CLUSTER=true``,
as the gateway builds it, and the store contract of ``test_sharded_store.py`` and the claim
protocol of ``test_assign.py`` (with a real MySQL) run on it.
"""

from collections.abc import Iterator

import pytest
import redis

from assigner import RedisAssignmentStore, StoreUnavailable
from assigner.sharded_store import ShardedRedisAssignmentStore
from ml_api.config import load_config
from ml_api.infra.redis_client import LazyClusterClient, create_redis
from ml_api.infra.request_ids import RequestDirectory
from tests.integration.assigner.test_assign import (  # noqa: F401 - first write wins, the claim protocol
    all_control,
    recorder,
    test_a_claim_left_unconfirmed_is_recorded_by_the_next_request,
    test_a_new_user_is_claimed_unconfirmed_and_confirmed_once_recorded,
    test_the_first_variant_wins_over_new_weights_and_a_flushed_cache,
)
from tests.integration.assigner.test_sharded_store import (  # noqa: F401 - the store contract, rerun here
    STORES,
    assert_claim_sent_once_while_busy,
    test_a_batch_of_claims_answers_as_claims_one_by_one,
    test_an_unconfirmed_claim_reads_back_unconfirmed_until_put,
    test_an_unconfirmed_user_leaves_the_shard_neighbours_alone,
    test_concurrent_first_claims_agree_on_one_winner,
    test_experiments_are_separate,
    test_first_claim_wins_and_later_claims_read_it,
    test_get_reads_without_writing,
    test_put_overwrites,
    test_put_without_a_claim_stores,
    test_unicode_user_ids_and_many_variants,
    test_user_ids_with_separators_cannot_reach_other_entries,
)
from tests.integration.ml_api.infra.test_request_ids import (  # noqa: F401 - rerun here, ids spread over slots
    pauses,
    test_a_queued_id_reaches_redis_only_with_the_batch,
    test_one_flush_sends_every_queued_id_of_every_minute,
)
from tests.redis_cluster import MASTERS, free_ports, running_cluster


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    """A three-master cluster of this module alone."""
    with running_cluster() as url:
        yield url


@pytest.fixture(scope="module")
def cluster_client(cluster_url: str) -> Iterator[LazyClusterClient]:
    # A generous timeout: these tests are about semantics, on a machine that may be busy.
    settings = {"REDIS_URL": cluster_url, "REDIS_CLUSTER": "true", "REDIS_TIMEOUT_SECONDS": "2"}
    client = create_redis(load_config(settings))
    assert isinstance(client, LazyClusterClient) and isinstance(client.client(), redis.RedisCluster)
    yield client
    client.close()


@pytest.fixture
def sticky_client(cluster_client):
    """Overrides the facade tests' client: the stores they build use the cluster."""
    return cluster_client


@pytest.fixture(params=list(STORES))
def store(request, cluster_client):
    """Overrides the contract's ``store``: the same tests, on the cluster."""
    return STORES[request.param](cluster_client, f"cluster-{request.node.name}")


@pytest.fixture
def directory(request, cluster_client) -> RequestDirectory:
    """Overrides the contract's ``directory``: request ids land in other slots than claims."""
    return RequestDirectory(cluster_client, f"cluster-{request.node.name}", ttl_seconds=60)


def test_the_cluster_has_three_masters(cluster_client):
    masters = {node.name for node in cluster_client.get_primaries()}
    assert len(masters) == MASTERS


def test_sharded_store_spreads_users_over_every_master(cluster_client):
    store = ShardedRedisAssignmentStore(cluster_client, "cluster-spread", shards=64)
    for i in range(300):
        assert store.claim(1, f"u{i}", "control" if i % 2 else "variation") is None
    nodes = {cluster_client.get_node_from_key(store.locate(1, f"u{i}")[0]).name for i in range(300)}
    assert len(nodes) == MASTERS
    assert [store.claim(1, f"u{i}", "x") for i in range(300)] == [
        "control" if i % 2 else "variation" for i in range(300)
    ]


def test_each_script_call_names_keys_of_one_slot(cluster_client):
    """Every script takes exactly one key, so none can hit CROSSSLOT."""
    store = ShardedRedisAssignmentStore(cluster_client, "cluster-slots")
    for script in (getattr(ShardedRedisAssignmentStore, name) for name in ("CLAIM", "PUT", "GET")):
        assert "KEYS[1]" in script and "KEYS[2]" not in script
    key, _ = store.locate(7, "u")
    assert cluster_client.keyslot(key) == cluster_client.cluster_keyslot(key)
    store.put(7, "u", "variation")
    assert store.claim(7, "u", "control") == "variation"


def test_keys_store_writes_one_key_per_user_on_its_own_slot(cluster_client):
    store = RedisAssignmentStore(cluster_client, "cluster-keys")
    store.claim(2, "u-1", "control")
    assert cluster_client.get(store.key(2, "u-1")) == b"control"


def sticky_key(store: object, experiment_id: int, user_id: str) -> str:
    return store.key(experiment_id, user_id) if isinstance(store, RedisAssignmentStore) else store.locate(
        experiment_id, user_id)[0]


@pytest.mark.parametrize("store_class", list(STORES.values()), ids=list(STORES))
def test_a_timed_out_claim_is_sent_once(store_class, cluster_url):
    """A claim that timed out may still run; sent again, it would read its own write as a
    cache hit and the exposure would never reach MySQL (see ``ml_api.infra.redis_client.create_redis``)."""
    settings = {"REDIS_URL": cluster_url, "REDIS_CLUSTER": "true", "REDIS_TIMEOUT_SECONDS": "0.1"}
    client = create_redis(load_config(settings))
    store = store_class(client, "cluster-timeout")
    node = client.get_node_from_key(sticky_key(store, 1, "u"))
    neighbour = next(f"w{i}" for i in range(1000) if client.get_node_from_key(sticky_key(store, 1, f"w{i}")) == node)
    store.claim(1, neighbour, "control")  # connected to that node, script cached
    assert_claim_sent_once_while_busy(store, redis.Redis(host=node.host, port=node.port))
    client.close()


def test_a_worker_boots_and_answers_while_the_cluster_is_away(make_app, make_experiment):
    """redis-py's cluster client connects when built; the gateway's waits for its first command."""
    app = make_app(REDIS_URL=f"redis://127.0.0.1:{free_ports(1)[0]}/0", REDIS_CLUSTER="true")
    client = app.test_client()
    body = {"user_id": "u-away", "experiment": make_experiment(), "features": [5.1, 3.5, 1.4, 0.2]}
    first, again = client.post("/predict", json=body), client.post("/predict", json=body)
    assert first.status_code == again.status_code == 200
    assert first.get_json()["variant"] == again.get_json()["variant"]  # MySQL answered both
    ready = client.get("/ready")
    assert ready.status_code == 503 and ready.get_json()["checks"]["redis"]["status"] == "error"
    feedback = client.post("/feedback", json={"user_id": "u-away", "experiment": body["experiment"], "outcome": 1})
    assert feedback.status_code == 202 and feedback.get_json()["variant"] == first.get_json()["variant"]


def test_the_client_connects_once_the_cluster_is_back(cluster_url):
    """Down at first, then reachable: attempts are spaced by retry_seconds, then commands go through."""
    urls = [f"redis://127.0.0.1:{free_ports(1)[0]}/0"]
    now = [100.0]
    lazy = LazyClusterClient(lambda: redis.RedisCluster.from_url(urls[0], socket_timeout=2), retry_seconds=1.0,
                             clock=lambda: now[0])
    store = ShardedRedisAssignmentStore(lazy, "cluster-lazy")  # registers its scripts: no connection yet
    for _ in range(2):
        with pytest.raises(StoreUnavailable):
            store.claim(1, "u", "control")
    urls[0] = cluster_url  # the cluster is back ...
    with pytest.raises(StoreUnavailable):
        store.claim(1, "u", "control")  # ... but the next attempt is due a second after the last
    now[0] += 1.0
    assert store.claim(1, "u", "control") is None
    assert store.claim(1, "u", "variation") == "control"
    assert lazy.ping() is True
    lazy.close()
