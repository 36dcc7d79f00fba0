"""Stable hashing of a user into a bucket.

The bucket of a user is::

    int.from_bytes(sha256(f"{salt}:{user_id}".encode("utf-8")).digest()[:8], "big") % 10000

SHA-256 is the same on every process, host, platform and Python version (unlike the
builtin ``hash()``, which is salted per process). Taking 64 bits modulo 10,000 leaves a
bias below 1e-15, far under any effect an experiment can measure.

Two independent hashes are used: the *variant* bucket decides which variant a user
gets, the *traffic* bucket (salted with a ``traffic:`` prefix) decides whether the user
is in the experiment at all. Keeping them independent makes traffic allocation
monotone: raising the allocation from 5 % to 25 % only adds users, and never changes the
variant of a user who was already in. A third, the *shadow* bucket (``shadow:`` prefix),
picks the users whose requests a shadow model also answers: the same users every time,
unrelated to their variant or to the allocation.
"""

import hashlib

BUCKETS = 10_000
TRAFFIC_NAMESPACE = "traffic"
SHADOW_NAMESPACE = "shadow"


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def bucket(salt: str, user_id: str) -> int:
    """The user's variant bucket in 0..9999 for an experiment salt."""
    return _hash64(f"{salt}:{user_id}") % BUCKETS


def traffic_bucket(salt: str, user_id: str) -> int:
    """The user's traffic-allocation bucket in 0..9999, independent of the variant bucket."""
    return _hash64(f"{TRAFFIC_NAMESPACE}:{salt}:{user_id}") % BUCKETS


def shadow_bucket(salt: str, user_id: str) -> int:
    """The user's shadow-mirroring bucket in 0..9999, independent of the other two."""
    return _hash64(f"{SHADOW_NAMESPACE}:{salt}:{user_id}") % BUCKETS
