"""Redis: the client for the sticky cache, and the short-lived request-id directory.

Keys (besides the sticky keys documented in ``assigner.store`` and
``assigner.sharded_store``):

``{prefix}:requests:{window}``  hash, request id -> JSON ``[experiment, user_id]`` of each
    request served in one minute (``window`` = the issue time in ms, from the id's first 12
    hex digits, // 60000), so ``POST /feedback {"request_id"}`` can find the user. The
    hash expires ``REQUEST_ID_TTL_SECONDS`` after its minute ends. Written in batches by a
    background thread (see ``RequestDirectory``): a prediction makes no Redis round trip
    for it, and a batch is one ``HSET`` per minute it spans.
"""

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson
import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from assigner.store import REDIS_ERRORS
from ml_api.background import PeriodicTask
from ml_api.config import Config
from ml_api.metrics import DEPENDENCY_ERRORS
from ml_api.random_hex import RandomHex

log = logging.getLogger(__name__)

WRITE_INTERVAL_SECONDS = 0.2  # also bounds how long after a response its id resolves elsewhere
WINDOW_MS = 60_000
QUEUE_LIMIT = 100_000  # about 2 s of requests per worker at full speed; older ids are dropped
# A miss for an id issued less than this long ago is looked up again after each of these
# pauses: the issuing worker's writer may not have sent it yet.
RESOLVE_GRACE_SECONDS = 1.0
RESOLVE_PAUSES = (0.05, 0.1, 0.2, 0.3)  # 0.65 s in all: longer than WRITE_INTERVAL_SECONDS


CLUSTER_RETRY_SECONDS = 1.0  # between attempts to reach a cluster that was away


def create_redis(config: Config) -> "redis.Redis | LazyClusterClient":
    """A client with short timeouts: a slow or absent cache must not stall requests."""
    options = {
        "socket_timeout": config.redis_timeout_seconds,
        "socket_connect_timeout": config.redis_timeout_seconds,
    }
    # Not redis-py's default of three connection attempts with exponential backoff, which
    # holds a request for seconds while Redis is away: one immediate retry of the connect.
    # Never a retry of a command after a timeout (the cluster client would, by default):
    # the claim may have run, its retry would read the claim's own write as a cache hit,
    # and the exposure would never reach MySQL. A failed claim is answered by MySQL instead.
    if config.redis_cluster:
        return LazyClusterClient(
            lambda: redis.RedisCluster.from_url(config.redis_url, retry=Retry(NoBackoff(), 0), **options))
    return redis.Redis.from_url(config.redis_url, retry=Retry(NoBackoff(), 1), **options)


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


class RequestDirectory:
    """Remembers which user and experiment a request id belongs to, for a while.

    Off the request path: ``remember`` appends to an in-process queue, and the worker's
    ``writer`` thread sends everything queued every ``WRITE_INTERVAL_SECONDS`` in one
    round trip. A request id therefore becomes resolvable in other workers up to that long
    after its response; ``resolve`` waits for an id issued moments ago. Best effort: ids
    queued while Redis is away, or in the last interval before a worker dies, are lost
    (feedback then needs ``user_id`` and ``experiment``).
    """

    def __init__(self, client: "redis.Redis | redis.RedisCluster", prefix: str, ttl_seconds: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._prefix = prefix
        self._ttl = ttl_seconds
        self._clock = clock
        self._queued: deque[tuple[str, str, str]] = deque(maxlen=QUEUE_LIMIT)
        self._random = RandomHex(20)
        self.writer = PeriodicTask("request-ids", self.flush, WRITE_INTERVAL_SECONDS)

    def key(self, request_id: str) -> str:
        """The hash of the minute the request was issued in (ids are checked hex by the caller)."""
        return f"{self._prefix}:requests:{int(request_id[:12], 16) // WINDOW_MS}"

    def new_id(self) -> str:
        """32 hex characters: the issue time in milliseconds (12), then 80 random bits (20)."""
        return f"{int(self._clock() * 1000):012x}{self._random.next()}"

    def remember(self, request_id: str, experiment: str, user_id: str) -> None:
        """Queue the request for the writer thread; never blocks or raises."""
        self._queued.append((request_id, experiment, user_id))

    def flush(self) -> int:
        """Send every queued request id in one round trip; returns how many Redis took."""
        batch = []
        while self._queued:
            try:
                batch.append(self._queued.popleft())
            except IndexError:  # another thread (a feedback request) flushed it meanwhile
                break
        if not batch:
            return 0
        windows: dict[str, dict[str, bytes]] = {}
        for request_id, experiment, user_id in batch:
            windows.setdefault(self.key(request_id), {})[request_id] = orjson.dumps([experiment, user_id])
        pipe = self._client.pipeline(transaction=False)
        for key, entries in windows.items():
            pipe.hset(key, mapping=entries)
            pipe.expire(key, self._ttl + WINDOW_MS // 1000)
        try:
            pipe.execute()
        except REDIS_ERRORS as exc:
            DEPENDENCY_ERRORS.labels("redis").inc()
            log.warning("request ids: %d not stored, Redis is away (%s)", len(batch), exc)
            return 0
        return len(batch)

    def resolve(self, request_id: str) -> tuple[str, str] | None:
        """``(experiment, user_id)`` of a request, None when unknown or expired.

        Raises one of ``assigner.store.REDIS_ERRORS`` when Redis is away, so the caller can say so."""
        for pause in (*RESOLVE_PAUSES, None):
            found = self._lookup(request_id)
            if found is not None:
                return found
            if pause is None or not self._just_issued(request_id):
                return None
            time.sleep(pause)  # the issuing worker's writer may not have sent it yet
        return None

    def _lookup(self, request_id: str) -> tuple[str, str] | None:
        queued = next((r for r in list(self._queued) if r[0] == request_id), None)
        if queued is not None:  # issued by this worker and not sent yet
            return queued[1], queued[2]
        raw = self._client.hget(self.key(request_id), request_id)
        if raw is None:
            return None
        experiment, user_id = orjson.loads(raw)
        return experiment, user_id

    def _just_issued(self, request_id: str) -> bool:
        try:
            issued = int(request_id[:12], 16) / 1000
        except ValueError:
            return False
        return abs(self._clock() - issued) < RESOLVE_GRACE_SECONDS
