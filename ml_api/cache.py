"""Redis: the client for the sticky cache, and the short-lived request-id directory.

Keys (besides the sticky keys documented in ``assigner.store``):

``{prefix}:request:{request_id}``  string, JSON ``[experiment, user_id]`` of a served
    request, so ``POST /feedback {"request_id"}`` can find the user. Expires after
    ``REQUEST_ID_TTL_SECONDS``.
"""

import json

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ml_api.config import Config


def create_redis(config: Config) -> "redis.Redis | redis.RedisCluster":
    """A client with short timeouts: a slow or absent cache must not stall requests."""
    options = {
        "socket_timeout": config.redis_timeout_seconds,
        "socket_connect_timeout": config.redis_timeout_seconds,
        # One immediate retry (a pooled connection gone stale after a Redis restart), not
        # redis-py's default of three with exponential backoff, which holds a request for
        # seconds while Redis is away.
        "retry": Retry(NoBackoff(), 1),
    }
    if config.redis_cluster:
        return redis.RedisCluster.from_url(config.redis_url, **options)
    return redis.Redis.from_url(config.redis_url, **options)


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
            self._client.set(self.key(request_id), json.dumps([experiment, user_id]), ex=self._ttl)
            return True
        except redis.RedisError:
            return False

    def resolve(self, request_id: str) -> tuple[str, str] | None:
        """``(experiment, user_id)`` of a request, None when unknown or expired.

        Raises redis.RedisError when Redis is away, so the caller can say so."""
        raw = self._client.get(self.key(request_id))
        if raw is None:
            return None
        experiment, user_id = json.loads(raw)
        return experiment, user_id
