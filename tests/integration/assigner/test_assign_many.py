"""A batch of assignments against real Redis and MySQL: the same answers and rows as one request at a time,
in one round trip per store."""

import dataclasses

import pytest
import redis

from assigner import AssignmentSource, RedisAssignmentStore, assign, assign_many
from assigner.sharded_store import ShardedRedisAssignmentStore
from ml_api.experiments.records import Recorder
from ml_api.infra.database import Database
from ml_api.infra.spool import Spool

STORES = {"keys": RedisAssignmentStore, "sharded": ShardedRedisAssignmentStore}
USERS = [f"batch-user-{i}" for i in range(300)]


class CountedConnection(redis.Connection):
    """A real connection that counts what it sends: one send per command, or per whole pipeline."""

    sends = 0

    def send_packed_command(self, command, check_health=True):
        CountedConnection.sends += 1
        return super().send_packed_command(command, check_health)


@pytest.fixture
def counted_redis(base_config):
    client = redis.Redis.from_url(base_config.redis_url, connection_class=CountedConnection)
    client.ping()  # connected (and the handshake sent) before anything is counted
    return client


@pytest.fixture
def one_connection_db(db):
    """The test's database through a pool of one connection, so its session counters see every statement."""
    single = Database(dataclasses.replace(db.settings, pool_size=1))
    yield single
    single.close()


def statements_sent(db: Database) -> int:
    """MySQL's count of statements this session's client sent (the reading statement itself included)."""
    with db.connection() as conn:
        cursor = conn.cursor()
        cursor.execute("SHOW SESSION STATUS LIKE 'Questions'")
        return int(cursor.fetchone()[1])


def rows_of(db: Database, experiment_id: int) -> dict[str, str]:
    with db.connection() as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT user_id, variant FROM assignments WHERE experiment_id = %s", (experiment_id,))
        return dict(cursor.fetchall())


@pytest.fixture
def twins(repo, make_experiment):
    """Two experiments with one salt and one split: every user is proposed the same variant in both."""
    names = [make_experiment((30, 70), salt="assign-many-twins") for _ in range(2)]
    return [repo.get(name) for name in names]


@pytest.mark.parametrize("layout", list(STORES))
def test_a_batch_of_new_users_is_one_round_trip_per_store_and_records_what_single_requests_do(
        layout, twins, counted_redis, redis_prefix, one_connection_db, tmp_path):
    one_by_one, batched = twins
    store = STORES[layout](counted_redis, redis_prefix)
    recorder = Recorder(one_connection_db, Spool(tmp_path / "spool.db"))
    singles = [assign(one_by_one, user, store, recorder) for user in USERS]

    before_sends, before_statements = CountedConnection.sends, statements_sent(one_connection_db)
    many = assign_many([(batched, user) for user in USERS], store, recorder)
    sends = CountedConnection.sends - before_sends
    statements = statements_sent(one_connection_db) - before_statements - 1  # less the reading SHOW itself

    assert [a.variant for a in many] == [a.variant for a in singles]
    assert {a.source for a in many} == {a.source for a in singles} == {AssignmentSource.NEW}
    assert rows_of(one_connection_db, batched.id) == rows_of(one_connection_db, one_by_one.id) == \
        {user: a.variant for user, a in zip(USERS, singles)}
    assert sends == 2, "one pipeline of claims, one of confirmations"
    assert statements == 1, "one multi-row INSERT"
    assert {store.get(batched.id, user) for user in USERS} == {"control", "variation"}, "confirmed, not ?guesses"


def test_returning_users_guesses_and_repeats_follow_the_single_request_rules(
        twins, redis_client, redis_prefix, db, tmp_path):
    _, experiment = twins
    store = ShardedRedisAssignmentStore(redis_client, redis_prefix)
    recorder = Recorder(db, Spool(tmp_path / "spool.db"))
    proposed = {user: assign(twins[0], user, store, recorder).variant for user in ("kept", "guessed", "flushed")}
    other = {"control": "variation", "variation": "control"}
    # "kept" is on record with the variant the hash would not give now (the weights changed since);
    # "guessed" was claimed by a request that died before recording it; "flushed" is on record, not cached.
    recorder.record_first(experiment, "kept", other[proposed["kept"]])
    store.put(experiment.id, "kept", other[proposed["kept"]])
    store.claim(experiment.id, "guessed", "?" + other[proposed["guessed"]])
    recorder.record_first(experiment, "flushed", other[proposed["flushed"]])

    many = assign_many([(experiment, u) for u in ("kept", "guessed", "flushed", "fresh", "fresh")], store, recorder)

    assert [(a.variant, a.source) for a in many] == [
        (other[proposed["kept"]], AssignmentSource.REDIS),
        (other[proposed["guessed"]], AssignmentSource.NEW),  # the guess is what its request answered
        (other[proposed["flushed"]], AssignmentSource.MYSQL),  # first writer wins
        (many[3].variant, AssignmentSource.NEW),
        (many[3].variant, AssignmentSource.MEMORY),  # sent twice: one variant, one exposure
    ]
    assert rows_of(db, experiment.id) == {a: other[proposed[a]] for a in ("kept", "guessed", "flushed")} | \
        {"fresh": many[3].variant}
    assert [store.get(experiment.id, u) for u in ("guessed", "flushed", "fresh")] == \
        [other[proposed["guessed"]], other[proposed["flushed"]], many[3].variant], "confirmed in the cache"


def test_with_mysql_away_the_batch_is_spooled_and_stays_unconfirmed(twins, redis_client, redis_prefix, db, tmp_path):
    _, experiment = twins
    store = RedisAssignmentStore(redis_client, redis_prefix)
    spool = Spool(tmp_path / "spool.db")
    down = Recorder(Database(dataclasses.replace(db.settings, port=1)), spool)
    users = [f"away-{i}" for i in range(20)]

    many = assign_many([(experiment, u) for u in users], store, down)

    assert {a.source for a in many} == {AssignmentSource.HASH}
    assert spool.size() == len(users)
    assert [store.get(experiment.id, u) for u in users] == ["?" + a.variant for a in many]
    Recorder(db, spool).write_spooled([("exposure", spool.find("exposure", user_id=u)) for u in users])
    assert rows_of(db, experiment.id) == {u: a.variant for u, a in zip(users, many)}


def test_with_redis_away_the_batch_is_one_insert(twins, db, tmp_path):
    _, experiment = twins
    down = RedisAssignmentStore(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2), "away")
    recorder = Recorder(db, Spool(tmp_path / "spool.db"))
    recorder.record_first(experiment, "known", "control")
    many = assign_many([(experiment, u) for u in ("known", "new-1")], down, recorder)
    assert many[0].variant == "control" and many[0].source is AssignmentSource.MYSQL
    assert many[1].source is AssignmentSource.NEW and rows_of(db, experiment.id)["new-1"] == many[1].variant
