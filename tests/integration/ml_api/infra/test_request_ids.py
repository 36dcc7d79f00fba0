"""The request-id directory against a real Redis: ids queued per request, sent in batches.

The tests take a ``directory`` fixture; ``test_redis_cluster.py`` runs the same functions
against a Redis Cluster (where one batch spans many slots) by overriding it.
"""

import threading
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ml_api.infra import request_ids
from ml_api.infra.request_ids import RESOLVE_PAUSES, WINDOW_MS, RequestDirectory
from ml_api.serving.requests import REQUEST_ID_PATTERN
from ml_api.telemetry.metrics import DEPENDENCY_ERRORS
from tests.waiting import wait_until


@pytest.fixture
def directory(redis_client, redis_prefix) -> RequestDirectory:
    return RequestDirectory(redis_client, redis_prefix, ttl_seconds=60)


def other_worker(directory: RequestDirectory) -> RequestDirectory:
    """A second worker's directory: same Redis and prefix, its own queue."""
    return RequestDirectory(directory._client, directory._prefix, ttl_seconds=60)


@pytest.fixture
def pauses(monkeypatch) -> list[float]:
    """The pauses ``resolve`` takes, recorded instead of slept."""
    taken: list[float] = []
    monkeypatch.setattr(request_ids.time, "sleep", taken.append)
    return taken


def test_ids_are_32_hex_characters_that_start_with_the_issue_time():
    directory = RequestDirectory(redis.Redis(), "p", 60, clock=lambda: 1_700_000_000.123)
    ids = {directory.new_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(REQUEST_ID_PATTERN.fullmatch(i) for i in ids)
    assert {int(i[:12], 16) for i in ids} == {1_700_000_000_123}


def test_a_queued_id_reaches_redis_only_with_the_batch(directory, pauses):
    request_id = directory.new_id()
    directory.remember(request_id, "exp", "u-1")
    assert directory.resolve(request_id) == ("exp", "u-1")  # this worker knows it already
    assert directory._client.exists(directory.key(request_id)) == 0
    assert directory.flush() == 1
    assert other_worker(directory).resolve(request_id) == ("exp", "u-1")
    assert 60 < directory._client.ttl(directory.key(request_id)) <= 60 + WINDOW_MS / 1000


def test_one_flush_sends_every_queued_id_of_every_minute(directory):
    now = time.time()
    minutes = [RequestDirectory(directory._client, directory._prefix, 60, clock=lambda m=m: now - 60 * m)
               for m in range(3)]
    ids = [minutes[n % 3].new_id() for n in range(500)]
    for n, request_id in enumerate(ids):
        directory.remember(request_id, f"exp-{n % 3}", f"user-{n}")
    assert directory.flush() == 500
    assert directory.flush() == 0
    assert len({directory.key(i) for i in ids}) == 3
    reader = other_worker(directory)
    assert [reader.resolve(i) for i in ids] == [(f"exp-{n % 3}", f"user-{n}") for n in range(500)]


def test_a_fresh_id_of_another_worker_is_waited_for(directory):
    request_id = directory.new_id()
    directory.remember(request_id, "exp", "u-late")
    threading.Timer(0.05, directory.flush).start()  # the issuing worker's writer, a little later
    assert other_worker(directory).resolve(request_id) == ("exp", "u-late")


def test_an_unknown_fresh_id_waits_a_little_then_is_unknown(directory, pauses):
    assert directory.resolve(directory.new_id()) is None
    assert pauses == list(RESOLVE_PAUSES)


def test_an_unknown_old_id_is_unknown_at_once(directory, pauses):
    old = RequestDirectory(directory._client, directory._prefix, 60, clock=lambda: time.time() - 3600).new_id()
    assert directory.resolve(old) is None
    assert directory.resolve("f" * 32) is None  # a time far in the future: not fresh either
    assert pauses == []


def test_the_writer_thread_sends_within_moments(directory):
    directory.writer.ensure_started()
    try:
        request_id = directory.new_id()
        directory.remember(request_id, "exp", "u-thread")
        wait_until(lambda: directory._client.hexists(directory.key(request_id), request_id), interval=0.01,
                   message="the writer thread sent the id")
    finally:
        directory.writer.stop()


def test_with_redis_away_a_batch_is_dropped_and_counted():
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    directory = RequestDirectory(client, "p", 60)
    directory.remember(directory.new_id(), "exp", "u")
    errors = DEPENDENCY_ERRORS.labels("redis")._value.get()
    assert directory.flush() == 0  # no exception into the writer thread
    assert DEPENDENCY_ERRORS.labels("redis")._value.get() == errors + 1
    assert directory.flush() == 0  # dropped, not retried forever
    with pytest.raises(redis.RedisError):  # feedback says Redis is away (503), not "unknown"
        directory.resolve("0" * 32)
