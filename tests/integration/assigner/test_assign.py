"""The assignment facade on a real Redis and a real MySQL: first write wins and the claim
protocol (``?<variant>`` until MySQL holds the exposure), for both sticky layouts.

``test_redis_client.py`` runs the same functions on a three-master Redis Cluster by
overriding the ``store`` fixture.
"""

import pytest

from assigner import AssignmentSource, assign
from assigner.sharded_store import ShardedRedisAssignmentStore
from ml_api.experiments.records import Recorder
from ml_api.infra.spool import Spool
from tests.integration.assigner.test_sharded_store import STORES


@pytest.fixture
def sticky_client(redis_client):
    """The client the stores use; the cluster module overrides it."""
    return redis_client


@pytest.fixture(params=list(STORES))
def store(request, sticky_client, redis_prefix):
    return STORES[request.param](sticky_client, redis_prefix)


@pytest.fixture
def recorder(db, tmp_path) -> Recorder:
    return Recorder(db, Spool(tmp_path / "spool.db"))


@pytest.fixture
def all_control(repo, make_experiment):
    """A running experiment whose weights send every new user to control."""
    return make_experiment(weights=(100, 0))


class WatchedLedger:
    """The real recorder, noting what the cache held for the user when MySQL was asked."""

    def __init__(self, recorder: Recorder, store) -> None:
        self.recorder, self.store, self.cached_when_recorded = recorder, store, []

    def record_first(self, experiment, user_id, candidate):
        self.cached_when_recorded.append(self.store.get(experiment.id, user_id))
        return self.recorder.record_first(experiment, user_id, candidate)


def test_a_new_user_is_claimed_unconfirmed_and_confirmed_once_recorded(store, recorder, repo, all_control):
    experiment = repo.get(all_control)
    ledger = WatchedLedger(recorder, store)
    first = assign(experiment, "newcomer", store, ledger)
    assert (first.variant, first.source) == ("control", AssignmentSource.NEW)
    assert ledger.cached_when_recorded == ["?control"]  # claimed as a guess while MySQL was asked
    assert recorder.find_assignment(experiment.id, "newcomer") == "control"
    assert store.get(experiment.id, "newcomer") == "control"  # confirmed after the insert
    again = assign(experiment, "newcomer", store, ledger)
    assert (again.variant, again.source) == ("control", AssignmentSource.REDIS)
    assert len(ledger.cached_when_recorded) == 1  # a confirmed entry answers alone


def test_a_claim_left_unconfirmed_is_recorded_by_the_next_request(store, recorder, repo, all_control):
    """A worker killed between its claim and its insert: the next request does not trust the
    cache, asks MySQL, records the guess it finds and confirms it."""
    experiment = repo.get(all_control)
    store.claim(experiment.id, "orphan", "?variation")  # claimed, never recorded
    assignment = assign(experiment, "orphan", store, recorder)
    assert (assignment.variant, assignment.source) == ("variation", AssignmentSource.NEW)
    assert recorder.find_assignment(experiment.id, "orphan") == "variation"
    assert store.get(experiment.id, "orphan") == "variation"


def test_the_first_variant_wins_over_new_weights_and_a_flushed_cache(store, sticky_client, redis_prefix, recorder,
                                                                     repo, all_control):
    experiment = repo.get(all_control)
    assert assign(experiment, "early", store, recorder).variant == "control"
    changed = repo.set_weights(all_control, {"control": 0, "variation": 100}, actor="test")
    assert assign(changed, "early", store, recorder).source is AssignmentSource.REDIS
    assert assign(changed, "late", store, recorder).variant == "variation"
    flushed = type(store)(sticky_client, f"{redis_prefix}:flushed")  # the same layout, empty
    kept = assign(changed, "early", flushed, recorder)
    assert (kept.variant, kept.source) == ("control", AssignmentSource.MYSQL)
    assert flushed.get(experiment.id, "early") == "control"  # written again from the record


def test_entries_of_the_earlier_layout_are_ignored_and_rebuilt_from_mysql(redis_client, redis_prefix, recorder,
                                                                          repo, all_control):
    """Upgrade: an entry left by the earlier sharded layout (one field per user under
    ``sticky-shard``) is never read; the user's next request is a miss MySQL answers, as
    after a flush, and the entry is written again in the new layout."""
    experiment = repo.get(all_control)
    recorder.record_first(experiment, "veteran", "variation")  # assigned before the upgrade
    store = ShardedRedisAssignmentStore(redis_client, redis_prefix)
    key, fingerprint = store.locate(experiment.id, "veteran")
    legacy = key.replace(":sticky-groups:", ":sticky-shard:")
    redis_client.hset(legacy, mapping={fingerprint: 1, b"\x01": "control"})  # a stale old entry, disagreeing
    assignment = assign(experiment, "veteran", store, recorder)
    assert (assignment.variant, assignment.source) == ("variation", AssignmentSource.MYSQL)
    assert store.get(experiment.id, "veteran") == "variation"
    assert redis_client.hget(legacy, fingerprint) == b"1"  # untouched: deleted by the operator, or never read


class CollidingStore(ShardedRedisAssignmentStore):
    """Every user of an experiment on one shard and one fingerprint: a colliding pair on demand."""

    def locate(self, experiment_id: int, user_id: str) -> tuple[str, bytes]:
        return super().locate(experiment_id, "one digest for all")


def test_a_colliding_pair_shares_the_first_ones_entry(redis_client, redis_prefix, recorder, repo, make_experiment):
    """As documented in assigner/sharded_store.py: the second user of a pair reads the first
    one's confirmed entry as its own (served that variant, no exposure recorded); MySQL keeps
    the first one's record right."""
    experiment = repo.get(make_experiment(weights=(100, 0)))
    store = CollidingStore(redis_client, redis_prefix)
    first = assign(experiment, "alice", store, recorder)
    changed = repo.set_weights(experiment.name, {"control": 0, "variation": 100}, actor="test")
    second = assign(changed, "bob", store, recorder)  # its own candidate would be variation
    assert (first.variant, second.variant, second.source) == ("control", "control", AssignmentSource.REDIS)
    assert recorder.find_assignment(experiment.id, "alice") == "control"
    assert recorder.find_assignment(experiment.id, "bob") is None


def test_a_pair_colliding_on_an_unconfirmed_entry_records_both(redis_client, redis_prefix, recorder, repo,
                                                                make_experiment):
    """While the first one's entry is still a guess, the second is recorded with that guess."""
    experiment = repo.get(make_experiment(weights=(0, 100)))
    store = CollidingStore(redis_client, redis_prefix)
    store.claim(experiment.id, "carol", "?control")  # carol's request is between claim and insert
    dave = assign(experiment, "dave", store, recorder)
    assert (dave.variant, dave.source) == ("control", AssignmentSource.NEW)
    assert recorder.find_assignment(experiment.id, "dave") == "control"
