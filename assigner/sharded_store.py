"""A compact sticky store: users packed in groups into hash shards, about 10 bytes per assignment.

Redis keyspace (all keys start with the configured prefix, default ``abtest``):

``{prefix}:sticky-groups:{experiment_id}:{shard}``  hash, one of ``shards`` per experiment
    (``shard`` = the first 8 bytes of ``sha256(user_id)`` modulo ``shards``). Fields:

    * ``1``, ``2``, ... (groups, filled in order) -> up to ``GROUP_RECORDS`` records of
      ``RECORD_BYTES`` each, one per user: the user's *fingerprint* (bytes 8..13 of the same
      digest, ``FIELD_BYTES``) and one *code* byte, the variant's index, plus 128 while the
      variant is a guess the durable record has not confirmed (claimed as ``?<name>``, read
      back so);
    * ``-1``, ``-2``, ... -> the variant name of index 1, 2, ... (at most 127, given in order
      of first use in this shard, first writer wins).

    No TTL: it may be evicted or flushed at any time (a whole shard goes at once, names
    with it), and the durable record in MySQL brings every user back.

Why it is small: while a hash holds at most ``hash-max-listpack-entries`` fields (512 by
default in Redis 7) of at most ``hash-max-listpack-value`` bytes (64), Redis stores it as
one flat listpack. A group of nine users is one 63-byte value and a small integer field,
67 bytes: under 7.5 bytes per user, where a field per user cost 10 (a 6-byte field, a
1-byte value, 3 bytes of framing). The per-key overhead (about 130 bytes with the names)
is shared by every user of the shard. Measured (``bench/bench_sticky_memory.py``): about
10.5 bytes per assignment at a million users and 8.5 at ten million, against ~104 for one
key per user. With the default 16,384 shards an experiment stays in listpacks up to
about 70 million users (500 groups per shard); beyond that raise the shard count, which
moves every user to another shard: a one-time cache miss each, answered by MySQL.

Cost: every operation reads the user's shard whole (``HGETALL``) and searches its records
in the script: about 60 users at a million users per experiment, 600 at ten million, where
a claim cost Redis 50-90 us of CPU (measured while filling; the earlier layout, one
``HGET``, about 25). A
new user rewrites one group value (at most 63 bytes, which is also all a replica or the
AOF receives); a confirmation rewrites that value with one byte changed.

Collisions: two users of one experiment share a cache entry when their digests agree on
the shard and on the 48-bit fingerprint, i.e. on about 62 bits
(``expected_colliding_pairs``): among ``n`` users about ``n**2 / (2 * shards * 2**48)``
pairs, 1e-7 at a million users, 1e-5 at ten million, 1e-3 at a hundred million. The
second user of such a pair reads the first one's entry as its own: it is served the first
one's variant from the cache, its exposure is not recorded while that entry answers (its
feedback is stored against that variant), and ``put`` for either overwrites the entry both
read. MySQL's record of every other user stays right. User ids are not secret, so someone
could craft a pair on purpose (about 2**31 hashes), which only affects the pair itself.

Upgrading from the earlier layout (one field per user under ``sticky-shard``): its keys are
not read any more, so each user's next request is a cache miss answered by MySQL, exactly
as after a Redis flush, and nobody changes variant; gateways of both versions can serve
side by side meanwhile (each keeps its own cache; in MySQL the first writer wins). The old
keys stay until deleted (see the README, "Sticky-store memory").

Each operation is one script on one key: one round trip, atomic, and in one slot of a
Redis Cluster (``EVALSHA``). A batch is one pipeline of such scripts (one round trip; on a
cluster, one per master holding its keys), sent by digest; a server that lacks a script (restarted, flushed)
answers NOSCRIPT for it, and only those are sent again after ``SCRIPT LOAD``.
"""

import hashlib
from collections.abc import Sequence
from math import expm1

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from assigner.store import REDIS_ERRORS, Entry, StoreUnavailable, as_text

DEFAULT_SHARDS = 16_384
FIELD_BYTES = 6
RECORD_BYTES = FIELD_BYTES + 1
MAX_NAMES = 127
# Records per group field: 9 x 7 = 63 bytes, within hash-max-listpack-value (64).
GROUP_RECORDS = 9
UNCONFIRMED_FLAG = 128


def shard_and_fingerprint(user_id: str, shards: int) -> tuple[int, bytes]:
    """Where a user's record lives: its shard number and its fingerprint, both from one digest."""
    digest = hashlib.sha256(user_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % shards, digest[8:8 + FIELD_BYTES]


def expected_colliding_pairs(users: int, shards: int = DEFAULT_SHARDS, field_bytes: int = FIELD_BYTES) -> float:
    """Expected pairs of users sharing one entry: each pair agrees on shard and fingerprint
    with probability 1 / (shards * 2**(8 * field_bytes))."""
    cells = shards * 2 ** (8 * field_bytes)
    return users * (users - 1) / (2 * cells)


def collision_probability(users: int, shards: int = DEFAULT_SHARDS) -> float:
    """Probability that at least one pair of ``users`` shares an entry (Poisson approximation)."""
    return -expm1(-expected_colliding_pairs(users, shards))


class ShardedRedisAssignmentStore:
    """Same contract as ``RedisAssignmentStore``; users packed in groups into hash shards."""

    # Shared prelude: the shard read whole (names by index, groups by number, the last
    # group); where a fingerprint's record is (its group and 1-based position, aligned to a
    # record); a code byte back to a name ('?' and the name while unconfirmed; nil for an
    # index with no name); the index of a name, registered on first use; a record appended
    # to the last group, or to a new one when it is full.
    _PRELUDE = f"""
local RECORD = {RECORD_BYTES}
local FIELD = {FIELD_BYTES}
local function load(key)
    local flat = redis.call('HGETALL', key)
    local names, groups, last = {{}}, {{}}, 0
    for i = 1, #flat, 2 do
        local number = tonumber(flat[i])
        if number and number < 0 then
            names[-number] = flat[i + 1]
        elseif number and number > 0 then
            groups[number] = flat[i + 1]
            last = math.max(last, number)
        end
    end
    return names, groups, last
end
local function find(groups, last, fingerprint)
    for group = 1, last do
        local records = groups[group]
        local at = records and string.find(records, fingerprint, 1, true)
        while at and (at - 1) % RECORD ~= 0 do
            at = string.find(records, fingerprint, at + 1, true)
        end
        if at then
            return group, at
        end
    end
end
local function name_of(names, code)
    local name = names[code % {UNCONFIRMED_FLAG}]
    if name and code >= {UNCONFIRMED_FLAG} then
        return '?' .. name
    end
    return name
end
local function index_of(key, names, name)
    for i = 1, {MAX_NAMES} do
        if not names[i] then
            redis.call('HSET', key, -i, name)
            names[i] = name
            return i
        end
        if names[i] == name then
            return i
        end
    end
    error('more than {MAX_NAMES} variant names in ' .. key)
end
local function append(key, groups, last, record)
    local records = groups[last]
    if records and string.len(records) + RECORD <= {GROUP_RECORDS * RECORD_BYTES} then
        redis.call('HSET', key, last, records .. record)
    else
        redis.call('HSET', key, last + 1, record)
    end
end
"""

    CLAIM = """
-- KEYS[1] - the user's shard hash
-- ARGV[1] - the user's fingerprint (6 bytes of the digest of the user id)
-- ARGV[2] - the candidate variant name ('?name': stored unconfirmed)
-- Returns the variant name already stored for the user ('?name' while unconfirmed; nothing
-- is written), or nil when the candidate was stored. A code with no name (a damaged
-- shard) comes back as '#<code>', which is no variant name, so the caller repairs it from
-- the durable record.
""" + _PRELUDE + """
local names, groups, last = load(KEYS[1])
local group, at = find(groups, last, ARGV[1])
if group then
    local code = string.byte(groups[group], at + FIELD)
    return name_of(names, code) or ('#' .. code)
end
local code
if string.sub(ARGV[2], 1, 1) == '?' then
    code = index_of(KEYS[1], names, string.sub(ARGV[2], 2)) + """ + str(UNCONFIRMED_FLAG) + """
else
    code = index_of(KEYS[1], names, ARGV[2])
end
append(KEYS[1], groups, last, ARGV[1] .. string.char(code))
return false
"""

    PUT = """
-- KEYS[1] - the user's shard hash
-- ARGV[1] - the user's fingerprint (6 bytes of the digest of the user id)
-- ARGV[2] - the variant name to store (confirmed), overwriting the user's current one
-- Returns nothing.
""" + _PRELUDE + """
local names, groups, last = load(KEYS[1])
local code = string.char(index_of(KEYS[1], names, ARGV[2]))
local group, at = find(groups, last, ARGV[1])
if group then
    local records = groups[group]
    redis.call('HSET', KEYS[1], group,
               string.sub(records, 1, at + FIELD - 1) .. code .. string.sub(records, at + RECORD))
else
    append(KEYS[1], groups, last, ARGV[1] .. code)
end
return false
"""

    GET = """
-- KEYS[1] - the user's shard hash
-- ARGV[1] - the user's fingerprint (6 bytes of the digest of the user id)
-- Returns the variant name stored for the user ('?name' while unconfirmed), or nil (also
-- for a damaged entry).
-- Writes nothing.
""" + _PRELUDE + """
local names, groups, last = load(KEYS[1])
local group, at = find(groups, last, ARGV[1])
return group and name_of(names, string.byte(groups[group], at + FIELD)) or false
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
        """The one place a user's shard key and fingerprint are computed."""
        shard, fingerprint = shard_and_fingerprint(user_id, self._shards)
        return f"{self._prefix}:sticky-groups:{experiment_id}:{shard}", fingerprint

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
