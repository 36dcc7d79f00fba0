"""The Redis client of a worker: short timeouts, no retried commands, a cluster reached lazily.

The keys are documented where they are written: the sticky keys in ``assigner.store`` and
``assigner.sharded_store``, the request ids in ``ml_api.infra.request_ids``.
"""

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from assigner.store import REDIS_ERRORS
from ml_api.config import Config

CLUSTER_RETRY_SECONDS = 1.0  # between attempts to reach a cluster that was away


def create_redis(config: Config) -> "redis.Redis | LazyClusterClient":
    """A client with short timeouts: a slow or absent cache must not stall requests."""
    options = {
        "socket_timeout": config.redis_timeout_seconds,
        "socket_connect_timeout": config.redis_timeout_seconds,
    }
    # No retries at all. redis-py's default (three attempts with exponential backoff) holds a
    # request for seconds while Redis is away; and its retry is of the whole command, not
    # only of the connect: a claim whose answer came after the timeout has run, and sent
    # again on a new connection it reads its own write as a cache hit, so the exposure would
    # never reach MySQL. A failed command is answered by MySQL instead; a connection Redis
    # dropped (a restart) fails one command, and the pool connects afresh for the next.
    no_retry = Retry(NoBackoff(), 0)
    if config.redis_cluster:
        return LazyClusterClient(lambda: redis.RedisCluster.from_url(config.redis_url, retry=no_retry, **options))
    return redis.Redis.from_url(config.redis_url, retry=no_retry, **options)


class LazyClusterClient:
    """A Redis Cluster client that connects on first use instead of when it is built.

    redis-py's ``RedisCluster`` asks a startup node for the slot map in its constructor, so
    a worker built while the cluster was away could not boot at all. Behind this wrapper
    it boots and answers from the worker's memory, MySQL and the hash, as with a plain
    Redis that is away; every command tries to connect again, at most once per
    ``retry_seconds``, and raises ``RedisClusterException`` meanwhile (the stores make that
    ``StoreUnavailable``). Everything else is the cluster client's own.
    """

    def __init__(self, connect: Callable[[], redis.RedisCluster], retry_seconds: float = CLUSTER_RETRY_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._connect = connect
        self._retry_seconds = retry_seconds
        self._clock = clock
        self._client: redis.RedisCluster | None = None
        self._next_attempt = 0.0
        self._lock = threading.Lock()

    def client(self) -> redis.RedisCluster:
        """The connected cluster client; RedisClusterException while the cluster cannot be reached."""
        if self._client is not None:
            return self._client
        with self._lock:
            if self._client is None:
                now = self._clock()
                if now < self._next_attempt:
                    raise RedisClusterException("Redis Cluster was unreachable moments ago; retrying shortly")
                try:
                    self._client = self._connect()
                except REDIS_ERRORS:
                    self._next_attempt = now + self._retry_seconds
                    raise
            return self._client

    def register_script(self, script: str) -> "LazyScript":
        return LazyScript(self, script)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client(), name)


class LazyScript:
    """``register_script`` of a cluster that may not be connected yet: registered on first call."""

    def __init__(self, lazy: LazyClusterClient, script: str) -> None:
        self._lazy = lazy
        self._text = script
        self._script: Any = None

    def __call__(self, keys: Sequence[Any] = (), args: Iterable[Any] = ()) -> Any:
        if self._script is None:
            self._script = self._lazy.client().register_script(self._text)
        return self._script(keys=keys, args=args)
