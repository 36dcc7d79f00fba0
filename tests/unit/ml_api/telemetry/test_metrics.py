"""Queued Prometheus samples end up exactly as prometheus_client's own inc/observe would write them."""

import random

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from ml_api.telemetry.metrics import LATENCY_BUCKETS, SampleQueue


def metrics(registry: CollectorRegistry, name: str) -> tuple[Counter, Histogram]:
    counter = Counter(f"{name}_total", "test", ["route"], registry=registry)
    histogram = Histogram(f"{name}_seconds", "test", ["model"], buckets=LATENCY_BUCKETS, registry=registry)
    return counter, histogram


def exposition(registry: CollectorRegistry) -> list[str]:
    """The samples without their (per-process) creation times."""
    return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_queued_samples_match_direct_ones(seed):
    rng = random.Random(seed)
    direct, queued = CollectorRegistry(), CollectorRegistry()
    direct_counter, direct_histogram = metrics(direct, "same")
    queued_counter, queued_histogram = metrics(queued, "same")
    samples = SampleQueue()
    # values on every bucket bound, just around them, zero, beyond the last bound
    values = [*LATENCY_BUCKETS, *(b * 1.0000001 for b in LATENCY_BUCKETS), 0.0, 7.5, 1e9]
    values += [rng.expovariate(200) for _ in range(2000)]
    rng.shuffle(values)
    increments = 0
    for value in values:
        label = rng.choice(["a", "b", "c"])
        direct_histogram.labels(label).observe(value)
        samples.observe(queued_histogram.labels(label), value)
        if rng.random() < 0.3:
            direct_counter.labels(label).inc()
            samples.inc(queued_counter.labels(label))
            increments += 1
    assert exposition(queued) != exposition(direct)  # nothing written before apply
    assert samples.apply() == len(values) + increments
    assert exposition(queued) == exposition(direct)
    assert samples.apply() == 0  # the queue is empty afterwards


def test_apply_adds_to_what_is_already_there():
    registry = CollectorRegistry()
    counter, histogram = metrics(registry, "again")
    samples = SampleQueue()
    for _ in range(2):
        samples.inc(counter.labels("x"))
        samples.observe(histogram.labels("m"), 0.003)
        samples.apply()
    assert registry.get_sample_value("again_total", {"route": "x"}) == 2
    assert registry.get_sample_value("again_seconds_bucket", {"model": "m", "le": "0.005"}) == 2
    assert registry.get_sample_value("again_seconds_bucket", {"model": "m", "le": "0.0025"}) == 0
    assert registry.get_sample_value("again_seconds_sum", {"model": "m"}) == pytest.approx(0.006)
