import pytest

from assigner import BUCKETS, Variant, choose_variant, in_traffic
from assigner.allocation import bucket_ranges


def variants(*weights):
    return [Variant(f"v{i}", w, "m") for i, w in enumerate(weights)]


@pytest.mark.parametrize("weights", [(50, 50), (70, 30), (34, 33, 33), (0.7, 0.3), (1, 0, 1), (1,) * 7])
def test_ranges_partition_every_bucket(weights):
    ranges = bucket_ranges(variants(*weights))
    assert ranges[0][1] == 0 and ranges[-1][2] == BUCKETS
    for (_, _, end), (_, start, _) in zip(ranges, ranges[1:]):
        assert end == start
    total = sum(weights)
    for (_, start, end), weight in zip(ranges, weights):
        assert abs((end - start) - BUCKETS * weight / total) <= 1


def test_70_30_split_by_bucket():
    vs = variants(70, 30)
    assert choose_variant(vs, 0) == "v0"
    assert choose_variant(vs, 6999) == "v0"
    assert choose_variant(vs, 7000) == "v1"
    assert choose_variant(vs, 9999) == "v1"


def test_zero_weight_variant_gets_no_bucket():
    vs = variants(1, 0, 1)
    assert {choose_variant(vs, b) for b in range(BUCKETS)} == {"v0", "v2"}


def test_bucket_out_of_range_is_refused():
    with pytest.raises(ValueError):
        choose_variant(variants(1, 1), BUCKETS)


def test_weights_must_add_up_to_something():
    with pytest.raises(ValueError):
        bucket_ranges(variants(0, 0))


def test_traffic_allocation_is_monotone():
    """A bucket inside a share stays inside every larger share (canary ramps rely on it)."""
    shares = [0, 0.01, 0.05, 0.25, 0.5, 0.999, 1.0]
    for b in range(BUCKETS):
        inside = [in_traffic(s, b) for s in shares]
        assert inside == sorted(inside)  # False...False, True...True
    assert sum(in_traffic(0.05, b) for b in range(BUCKETS)) == 500
    assert all(in_traffic(1.0, b) for b in range(BUCKETS))
    assert not any(in_traffic(0.0, b) for b in range(BUCKETS))
