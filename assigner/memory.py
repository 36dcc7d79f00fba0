"""A worker's memory of sticky assignments it has already confirmed: no Redis round trip.

A confirmed assignment never changes (the first variant recorded wins for good), so once a
worker has seen it (from the sticky cache, from the durable record, or as the first
exposure it recorded itself) it can answer that user's later requests from memory. Every
rule that can override stickiness is checked before the memory is asked (the experiment's
status, forced variants, the traffic allocation), and a remembered variant the experiment
no longer has is ignored, exactly like such a value in the cache.

Bounded by ``max_users``: two generations of a dict. Lookups read the young generation,
then the old one (and move a hit to the young one); when the young one is full it becomes
the old one and the previous old one is dropped. So users seen within the last
``max_users / 2`` distinct users are always kept, and a forgotten user costs one Redis
round trip, never a wrong answer. No lock: each step is one dict operation (atomic under
the GIL), and a race between threads can only forget an entry.
"""

MemoryKey = tuple[int, str]


class StickyMemory:
    """``(experiment_id, user_id) -> variant`` for at most about ``max_users`` users."""

    def __init__(self, max_users: int) -> None:
        if max_users < 2:
            raise ValueError("max_users must be at least 2 (or use no memory at all)")
        self._generation_size = max_users // 2
        self._young: dict[MemoryKey, str] = {}
        self._old: dict[MemoryKey, str] = {}

    def recall(self, experiment_id: int, user_id: str) -> str | None:
        """The variant remembered for the user, or None."""
        key = (experiment_id, user_id)
        variant = self._young.get(key)
        if variant is None:
            variant = self._old.get(key)
            if variant is not None:
                self.remember(experiment_id, user_id, variant)
        return variant

    def remember(self, experiment_id: int, user_id: str, variant: str) -> None:
        """Keep a confirmed assignment (never a guess: see the module docstring)."""
        young = self._young
        if len(young) >= self._generation_size:
            self._old, self._young = young, {}
            young = self._young
        young[(experiment_id, user_id)] = variant

    def __len__(self) -> int:
        return len(self._young) + len(self._old)
