"""Mapping buckets to variants by weight, and to in/out of the traffic allocation."""

from collections.abc import Sequence

from assigner.domain import Variant
from assigner.hashing import BUCKETS


def bucket_ranges(variants: Sequence[Variant]) -> list[tuple[str, int, int]]:
    """Half-open bucket ranges ``(name, start, end)`` proportional to the weights.

    Weights need not add up to 1 or 100; they are normalised. Rounding is done on the
    cumulative share so the ranges always cover 0..BUCKETS-1 exactly.
    """
    total = sum(v.weight for v in variants)
    if total <= 0:
        raise ValueError("variant weights must add up to more than zero")
    ranges = []
    cumulative = 0.0
    start = 0
    for variant in variants:
        cumulative += variant.weight
        end = round(BUCKETS * cumulative / total)
        ranges.append((variant.name, start, end))
        start = end
    return ranges


def choose_variant(variants: Sequence[Variant], variant_bucket: int) -> str:
    """The name of the variant whose bucket range holds ``variant_bucket``."""
    for name, start, end in bucket_ranges(variants):
        if start <= variant_bucket < end:
            return name
    raise ValueError(f"bucket {variant_bucket} outside 0..{BUCKETS - 1}")


def in_traffic(traffic_allocation: float, traffic_bucket: int) -> bool:
    """Whether a traffic bucket falls inside the allocated share (monotone in the share)."""
    return traffic_bucket < round(traffic_allocation * BUCKETS)
