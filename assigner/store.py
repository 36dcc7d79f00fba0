"""Sticky stores: where the first variant of each user is cached.

Redis keyspace (all keys start with the configured prefix, default ``abtest``):

``{prefix}:sticky:{experiment_id}:{user_id}``  string, the variant name of the user's
    first assignment in the experiment. Claimed with ``SET ... NX GET`` as ``?<variant>``
    (a guess: not yet in the durable record), rewritten as ``<variant>`` once the durable
    record holds it, or to correct it from the durable record after a cache flush. No TTL:
    it may be evicted or flushed at any time, the durable record in MySQL brings it back.

The user id is the last part of the key and the experiment id is numeric, so no user id,
whatever separators it holds, can reach another experiment's or another user's key.
"""

from collections.abc import Sequence
from typing import Protocol

import redis

# What a Redis or Redis Cluster client raises when the cache cannot answer; the cluster
# client's own exceptions (no reachable node, slot not covered) are no RedisError.
REDIS_ERRORS = (redis.RedisError, redis.exceptions.RedisClusterException)


# Marks a cached variant the durable record has not confirmed: claim and get return
# ``UNCONFIRMED + name`` for it (variant names start with a letter or digit).
UNCONFIRMED = "?"


def unconfirmed(cached: str | None) -> str | None:
    """The guessed variant name when ``cached`` is marked unconfirmed, else None."""
    return cached[1:] if cached is not None and cached.startswith(UNCONFIRMED) else None


# (experiment_id, user_id, variant): one entry of a batch of claims or puts.
Entry = tuple[int, str, str]


class StoreUnavailable(Exception):
    """The sticky store could not be reached; the caller falls back to the durable record."""


class AssignmentStore(Protocol):
    def claim(self, experiment_id: int, user_id: str, candidate: str) -> str | None:
        """Store ``candidate`` unless the user has a variant; return that variant, or None
        when ``candidate`` was stored (a cache miss). ``UNCONFIRMED + name`` stores the
        name unconfirmed, and an unconfirmed entry is returned in that form."""

    def put(self, experiment_id: int, user_id: str, variant: str) -> None:
        """Overwrite the user's cached variant (used to correct it from the durable record)."""

    def get(self, experiment_id: int, user_id: str) -> str | None:
        """The user's cached variant, or None; never stores anything."""

    def claim_many(self, claims: Sequence[Entry]) -> list[str | None]:
        """``claim`` for each ``(experiment_id, user_id, candidate)``, in one round trip; answers in order."""

    def put_many(self, entries: Sequence[Entry]) -> None:
        """``put`` for each ``(experiment_id, user_id, variant)``, in one round trip."""


def as_text(value: object) -> str | None:
    """A Redis reply (bytes or None) as text."""
    return value.decode("utf-8") if isinstance(value, bytes) else value


class InMemoryAssignmentStore:
    """Reference implementation for unit tests and for reasoning about semantics."""

    def __init__(self) -> None:
        self._data: dict[tuple[int, str], str] = {}

    def claim(self, experiment_id: int, user_id: str, candidate: str) -> str | None:
        key = (experiment_id, user_id)
        if key in self._data:
            return self._data[key]
        self._data[key] = candidate
        return None

    def put(self, experiment_id: int, user_id: str, variant: str) -> None:
        self._data[(experiment_id, user_id)] = variant

    def get(self, experiment_id: int, user_id: str) -> str | None:
        return self._data.get((experiment_id, user_id))

    def claim_many(self, claims: Sequence[Entry]) -> list[str | None]:
        return [self.claim(*claim) for claim in claims]

    def put_many(self, entries: Sequence[Entry]) -> None:
        for entry in entries:
            self.put(*entry)

    def clear(self) -> None:
        """Forget everything, as a Redis FLUSHALL would."""
        self._data.clear()


class RedisAssignmentStore:
    """One key per user; one round trip (``SET key candidate NX GET``) per request, one pipeline per batch.

    The client is handed in (a ``redis.Redis`` or a ``redis.RedisCluster``) so that
    connection settings, timeouts and cluster mode stay with the caller.
    """

    def __init__(self, client: "redis.Redis | redis.RedisCluster", prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    def key(self, experiment_id: int, user_id: str) -> str:
        """The one place a sticky key is built."""
        return f"{self._prefix}:sticky:{experiment_id}:{user_id}"

    def claim(self, experiment_id: int, user_id: str, candidate: str) -> str | None:
        try:
            previous = self._client.set(self.key(experiment_id, user_id), candidate, nx=True, get=True)
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc
        return as_text(previous)

    def put(self, experiment_id: int, user_id: str, variant: str) -> None:
        try:
            self._client.set(self.key(experiment_id, user_id), variant)
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc

    def get(self, experiment_id: int, user_id: str) -> str | None:
        try:
            value = self._client.get(self.key(experiment_id, user_id))
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc
        return as_text(value)

    def claim_many(self, claims: Sequence[Entry]) -> list[str | None]:
        """One pipeline of ``SET key candidate NX GET`` (on a cluster: one round trip per node)."""
        return [as_text(reply) for reply in self._pipelined(claims, nx=True, get=True)]

    def put_many(self, entries: Sequence[Entry]) -> None:
        self._pipelined(entries)

    def _pipelined(self, entries: Sequence[Entry], **options: bool) -> list[object]:
        if not entries:
            return []
        try:
            pipe = self._client.pipeline(transaction=False)
            for experiment_id, user_id, value in entries:
                pipe.set(self.key(experiment_id, user_id), value, **options)
            return pipe.execute()
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc
