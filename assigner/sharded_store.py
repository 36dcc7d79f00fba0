"""A compact sticky store: many users per Redis hash, about 13 bytes per assignment.

Redis keyspace (all keys start with the configured prefix, default ``abtest``):

``{prefix}:sticky-shard:{experiment_id}:{shard}``  hash, one of ``shards`` per experiment
    (``shard`` = the first 8 bytes of ``sha256(user_id)`` modulo ``shards``). Fields:

    * a 6-byte field (bytes 8..13 of the same digest) per user -> the user's variant
      *index*, a small integer, negated while the variant is a guess the durable record
      has not confirmed (claimed as ``?<name>``, read back so);
    * a 1-byte field ``chr(i)`` per variant name seen in this shard -> that name, for the
      index ``i`` (1..255, given in order of first use, first writer wins).

    No TTL: like the one-key-per-user layout it may be evicted or flushed at any time
    (a whole shard goes at once, names with it), and the durable record in MySQL brings
    every user back.

Why it is small: while a hash holds at most ``hash-max-listpack-entries`` fields (512 by
default in Redis 7) of at most ``hash-max-listpack-value`` bytes (64), Redis stores it as
one flat listpack, where a user costs its 6-byte field and a 1-byte integer plus 3 bytes
of framing; the per-key overhead (~130 bytes with the names) is shared by every user of
the shard. Measured (``bench/bench_sticky_memory.py``): ~13 bytes per assignment at a
million users against ~104 for one key per user, ~32 at 100,000 users. With the default
16,384 shards an experiment stays in listpacks up to about six million users; beyond
that raise ``hash-max-listpack-entries`` or the shard count. Changing the shard count
moves every user to another shard: a one-time cache miss each, answered by MySQL.

Collisions: two users of one experiment share a cache entry only when their digests
agree on the shard and on the 48-bit field, i.e. on about 62 bits. The expected number
of such pairs among ``n`` users is ``n**2 / (2 * shards * 2**48)``: 1e-7 at a million
users, 1e-3 at a hundred million. A colliding user would read the other's variant from
the cache (the durable record stays right); user ids are not secret, so someone could
craft a pair on purpose (about 2**31 hashes), which only affects the pair itself.

Each operation is one script on one key: one round trip, atomic, and in one slot of a
Redis Cluster (``EVALSHA``). A batch is one pipeline of such scripts (one round trip; on a
cluster, one per master holding its keys), sent by digest; a server that lacks a script (restarted, flushed)
answers NOSCRIPT for it, and only those are sent again after ``SCRIPT LOAD``.
"""

import hashlib
from collections.abc import Sequence

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from assigner.store import REDIS_ERRORS, Entry, StoreUnavailable, as_text

DEFAULT_SHARDS = 16_384
FIELD_BYTES = 6


class ShardedRedisAssignmentStore:
    """Same contract as ``RedisAssignmentStore``; users packed into hash shards."""

    # Shared preludes: a variant name's index in this shard (registered on first use), and
    # back from a stored index to the name ('?' and the name for a negated, unconfirmed
    # index; false for an index this shard has no name for).
    _INDEX_OF = """
local function index_of(key, name)
    for i = 1, 255 do
        local known = redis.call('HGET', key, string.char(i))
        if not known then
            redis.call('HSET', key, string.char(i), name)
            return i
        end
        if known == name then
            return i
        end
    end
    error('more than 255 variant names in ' .. key)
end
"""
    _NAME_OF = """
local function name_of(key, stored)
    local index = tonumber(stored)
    if index and index >= 1 and index <= 255 then
        return redis.call('HGET', key, string.char(index))
    end
    if index and index <= -1 and index >= -255 then
        local name = redis.call('HGET', key, string.char(-index))
        return name and ('?' .. name)
    end
    return false
end
"""

    CLAIM = """
-- KEYS[1] - the user's shard hash
-- ARGV[1] - the user's field (6 bytes of the digest of the user id)
-- ARGV[2] - the candidate variant name ('?name': stored unconfirmed, its index negated)
-- Returns the variant name already stored for the user ('?name' while unconfirmed; nothing
-- is written), or nil when the candidate was stored. An index with no name (a damaged
-- shard) comes back as '#<index>', which is no variant name, so the caller repairs it from
-- the durable record.
""" + _INDEX_OF + _NAME_OF + """
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if stored then
    return name_of(KEYS[1], stored) or ('#' .. stored)
end
if string.sub(ARGV[2], 1, 1) == '?' then
    redis.call('HSET', KEYS[1], ARGV[1], -index_of(KEYS[1], string.sub(ARGV[2], 2)))
else
    redis.call('HSET', KEYS[1], ARGV[1], index_of(KEYS[1], ARGV[2]))
end
return false
"""

    PUT = """
-- KEYS[1] - the user's shard hash
-- ARGV[1] - the user's field (6 bytes of the digest of the user id)
-- ARGV[2] - the variant name to store, overwriting the user's current one
-- Returns nothing.
""" + _INDEX_OF + """
redis.call('HSET', KEYS[1], ARGV[1], index_of(KEYS[1], ARGV[2]))
return false
"""

    GET = """
-- KEYS[1] - the user's shard hash
-- ARGV[1] - the user's field (6 bytes of the digest of the user id)
-- Returns the variant name stored for the user ('?name' while unconfirmed), or nil (also
-- for a damaged entry).
-- Writes nothing.
""" + _NAME_OF + """
local stored = redis.call('HGET', KEYS[1], ARGV[1])
return stored and name_of(KEYS[1], stored)
"""

    def __init__(
        self, client: "redis.Redis | redis.RedisCluster", prefix: str, shards: int = DEFAULT_SHARDS
    ) -> None:
        if shards < 1:
            raise ValueError(f"shards must be at least 1, got {shards}")
        self._client = client
        self._prefix = prefix
        self._shards = shards
        self._claim = client.register_script(self.CLAIM)
        self._put = client.register_script(self.PUT)
        self._get = client.register_script(self.GET)

    def locate(self, experiment_id: int, user_id: str) -> tuple[str, bytes]:
        """The one place a user's shard key and field are computed."""
        digest = hashlib.sha256(user_id.encode("utf-8")).digest()
        shard = int.from_bytes(digest[:8], "big") % self._shards
        return f"{self._prefix}:sticky-shard:{experiment_id}:{shard}", digest[8:8 + FIELD_BYTES]

    def claim(self, experiment_id: int, user_id: str, candidate: str) -> str | None:
        return as_text(self._run(self._claim, experiment_id, user_id, candidate))

    def put(self, experiment_id: int, user_id: str, variant: str) -> None:
        self._run(self._put, experiment_id, user_id, variant)

    def get(self, experiment_id: int, user_id: str) -> str | None:
        return as_text(self._run(self._get, experiment_id, user_id))

    def claim_many(self, claims: Sequence[Entry]) -> list[str | None]:
        return [as_text(reply) for reply in self._run_many(self.CLAIM, claims)]

    def put_many(self, entries: Sequence[Entry]) -> None:
        self._run_many(self.PUT, entries)

    def _run_many(self, script: str, entries: Sequence[Entry]) -> list[object]:
        """``script`` once per entry in one pipeline of EVALSHA; the replies in order."""
        calls = [(*self.locate(experiment_id, user_id), value) for experiment_id, user_id, value in entries]
        digest = hashlib.sha1(script.encode("utf-8")).hexdigest()
        try:
            replies = self._pipeline(digest, calls)
            missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if missing:
                self._client.script_load(script)
                for i, reply in zip(missing, self._pipeline(digest, [calls[i] for i in missing])):
                    replies[i] = reply
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc
        return replies

    def _pipeline(self, digest: str, calls: list[tuple[str, bytes, str]]) -> list[object]:
        """One pipeline per Redis server holding the keys (a cluster's pipeline refuses EVALSHA)."""
        replies: list[object] = [None] * len(calls)
        for client, indices in self._by_server(calls):
            pipe = client.pipeline(transaction=False)
            for index in indices:
                key, field, value = calls[index]
                pipe.evalsha(digest, 1, key, field, value)
            for index, reply in zip(indices, pipe.execute(raise_on_error=False)):
                replies[index] = reply
        return replies

    def _by_server(self, calls: list[tuple[str, bytes, str]]) -> list[tuple[redis.Redis, list[int]]]:
        """The calls' indices grouped by the client of the server that holds their key."""
        node_of = getattr(self._client, "get_node_from_key", None)  # only a cluster client has it
        if node_of is None:
            return [(self._client, list(range(len(calls))))] if calls else []
        servers: dict[str, tuple[redis.Redis, list[int]]] = {}
        for index, (key, _, _) in enumerate(calls):
            node = node_of(key)
            servers.setdefault(node.name, (node.redis_connection, []))[1].append(index)
        return list(servers.values())

    def _run(self, script: Script, experiment_id: int, user_id: str, *args: str) -> object:
        key, field = self.locate(experiment_id, user_id)
        try:
            return script(keys=[key], args=[field, *args])
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc
