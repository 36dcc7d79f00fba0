"""Redis: the client for the sticky cache, and the short-lived request-id directory.

Keys (besides the sticky keys documented in ``assigner.store`` and
``assigner.sharded_store``):

``{prefix}:request:{request_id}``  string, JSON ``[experiment, user_id]`` of a served
    request, so ``POST /feedback {"request_id"}`` can find the user. Expires after
    ``REQUEST_ID_TTL_SECONDS``. Written in the same pipeline as the sticky claim
    (``PiggybackStore``), so a prediction costs one Redis round trip, not two.
"""

import json

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from assigner import AssignmentStore, StoreUnavailable
from assigner.store import REDIS_ERRORS
from ml_api.config import Config


def create_redis(config: Config) -> "redis.Redis | redis.RedisCluster":
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
        return redis.RedisCluster.from_url(config.redis_url, retry=Retry(NoBackoff(), 0), **options)
    return redis.Redis.from_url(config.redis_url, retry=Retry(NoBackoff(), 1), **options)


class RequestDirectory:
    """Remembers which user and experiment a request id belongs to, for a while."""

    def __init__(self, client: "redis.Redis | redis.RedisCluster", prefix: str, ttl_seconds: int) -> None:
        self._client = client
        self._prefix = prefix
        self._ttl = ttl_seconds

    def key(self, request_id: str) -> str:
        return f"{self._prefix}:request:{request_id}"

    def remember(self, request_id: str, experiment: str, user_id: str) -> bool:
        """Best effort: False when Redis is away (feedback then needs user_id + experiment)."""
        try:
            self.queue(self._client, request_id, experiment, user_id)
            return True
        except REDIS_ERRORS:
            return False

    def queue(self, client: "redis.Redis | redis.client.Pipeline", request_id: str, experiment: str,
              user_id: str) -> None:
        """The SET that remembers a request, on a client or queued on a pipeline."""
        client.set(self.key(request_id), json.dumps([experiment, user_id]), ex=self._ttl)

    def piggyback(self, store: AssignmentStore, request_id: str, experiment: str, user_id: str) -> "PiggybackStore":
        """``store`` for one request, remembering the request id in the sticky claim's round trip."""
        return PiggybackStore(self, self._client, store, (request_id, experiment, user_id))

    def resolve(self, request_id: str) -> tuple[str, str] | None:
        """``(experiment, user_id)`` of a request, None when unknown or expired.

        Raises redis.RedisError when Redis is away, so the caller can say so."""
        raw = self._client.get(self.key(request_id))
        if raw is None:
            return None
        experiment, user_id = json.loads(raw)
        return experiment, user_id


class PiggybackStore:
    """The sticky store of one request; its claim also carries the request-id SET.

    ``assign`` claims at most once per request, so both writes share one pipeline: one
    round trip instead of two. ``finish`` sends the SET alone when no claim carried it
    (overrides, users outside the traffic allocation, experiments not running, or a
    store that cannot queue its claim on a pipeline). ``put`` and ``get`` pass through.
    """

    def __init__(self, directory: RequestDirectory, client: "redis.Redis | redis.RedisCluster",
                 store: AssignmentStore, request: tuple[str, str, str]) -> None:
        self._directory = directory
        self._client = client
        self._store = store
        self._request = request  # (request_id, experiment, user_id)
        self.remembered: bool | None = None  # None until the request id was sent

    def claim(self, experiment_id: int, user_id: str, candidate: str) -> str | None:
        claim_along = getattr(self._store, "claim_along", None)
        if self.remembered is not None or claim_along is None:
            return self._store.claim(experiment_id, user_id, candidate)
        pipe = self._client.pipeline(transaction=False)
        self._directory.queue(pipe, *self._request)
        reply = claim_along(pipe, experiment_id, user_id, candidate)
        try:
            remembered, claimed = pipe.execute(raise_on_error=False)
        except REDIS_ERRORS as exc:
            self.remembered = False
            raise StoreUnavailable(str(exc)) from exc
        self.remembered = remembered is True
        return reply(claimed)

    def put(self, experiment_id: int, user_id: str, variant: str) -> None:
        self._store.put(experiment_id, user_id, variant)

    def get(self, experiment_id: int, user_id: str) -> str | None:
        return self._store.get(experiment_id, user_id)

    def finish(self) -> bool:
        """Make sure the request id was sent; True when Redis took it."""
        if self.remembered is None:
            self.remembered = self._directory.remember(*self._request)
        return self.remembered
