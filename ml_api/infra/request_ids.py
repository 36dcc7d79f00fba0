"""Request ids: issued per served prediction, resolvable for a while so feedback can name a request.

Key: ``{prefix}:requests:{window}``, a hash of request id -> JSON ``[experiment, user_id]`` of
each request served in one minute (``window`` = the issue time in ms, from the id's first 12
hex digits, // 60000), so ``POST /feedback {"request_id"}`` can find the user. The hash
expires ``REQUEST_ID_TTL_SECONDS`` after its minute ends. Written in batches by a background
thread (``RequestDirectory.writer``): a prediction makes no Redis round trip for it, and a
batch is one ``HSET`` per minute it spans.
"""

import logging
import time
from collections import deque
from collections.abc import Callable

import orjson
import redis

from assigner.store import REDIS_ERRORS
from ml_api.infra.background import PeriodicTask
from ml_api.infra.random_hex import RandomHex
from ml_api.telemetry.metrics import DEPENDENCY_ERRORS

log = logging.getLogger(__name__)

WRITE_INTERVAL_SECONDS = 0.2  # also bounds how long after a response its id resolves elsewhere
WINDOW_MS = 60_000
QUEUE_LIMIT = 100_000  # ids waiting for the writer; beyond it the oldest are dropped
# A miss for an id issued less than this long ago is looked up again after each of these
# pauses: the issuing worker's writer may not have sent it yet.
RESOLVE_GRACE_SECONDS = 1.0
RESOLVE_PAUSES = (0.05, 0.1, 0.2, 0.3)  # 0.65 s in all: longer than WRITE_INTERVAL_SECONDS


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
        try:
            pipe = self._client.pipeline(transaction=False)  # a cluster reached lazily may fail here already
            for key, entries in windows.items():
                pipe.hset(key, mapping=entries)
                pipe.expire(key, self._ttl + WINDOW_MS // 1000)
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
