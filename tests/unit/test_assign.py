"""The stickiness rules of ``assigner.assign`` with in-memory store and ledger."""

from collections import Counter

import pytest

from assigner import (
    AssignmentSource,
    Experiment,
    ExperimentStatus,
    InMemoryAssignmentStore,
    StoreUnavailable,
    Variant,
    assign,
)


class MemoryLedger:
    def __init__(self):
        self.records = {}

    def record_first(self, experiment, user_id, candidate):
        key = (experiment.id, user_id)
        if key in self.records:
            return self.records[key], AssignmentSource.MYSQL
        self.records[key] = candidate
        return candidate, AssignmentSource.NEW


class DownStore:
    def claim(self, *args):
        raise StoreUnavailable("down")

    def put(self, *args):
        raise StoreUnavailable("down")


def experiment(weights=(50, 50), **kwargs):
    variants = tuple(Variant(n, w, "m") for n, w in zip(["control", "variation", "third"], weights))
    return Experiment(**{"id": 1, "name": "e", "salt": "salt", "variants": variants, "default_variant": "control", **kwargs})


@pytest.fixture
def store():
    return InMemoryAssignmentStore()


@pytest.fixture
def ledger():
    return MemoryLedger()


def test_first_request_is_a_new_exposure_then_cached(store, ledger):
    first = assign(experiment(), "u1", store, ledger)
    again = assign(experiment(), "u1", store, ledger)
    assert first.source is AssignmentSource.NEW and first.in_experiment
    assert again.source is AssignmentSource.REDIS and again.variant == first.variant


def test_weight_change_keeps_assigned_users_and_moves_new_ones(store, ledger):
    users = [f"u{i}" for i in range(2000)]
    before = {u: assign(experiment((50, 50)), u, store, ledger).variant for u in users}
    after = {u: assign(experiment((0, 100)), u, store, ledger).variant for u in users}
    assert after == before
    newcomers = Counter(assign(experiment((0, 100)), f"new{i}", store, ledger).variant for i in range(500))
    assert newcomers == {"variation": 500}


def test_flushed_cache_is_rebuilt_from_the_ledger(store, ledger):
    users = [f"u{i}" for i in range(500)]
    before = {u: assign(experiment((50, 50)), u, store, ledger).variant for u in users}
    store.clear()
    after = {u: assign(experiment((100, 0)), u, store, ledger) for u in users}
    assert {u: a.variant for u, a in after.items()} == before
    assert all(a.source in (AssignmentSource.MYSQL,) for a in after.values())
    # ... and the cache holds the durable answer again
    assert all(assign(experiment((100, 0)), u, store, ledger).source is AssignmentSource.REDIS for u in users)


def test_store_down_falls_back_to_the_ledger(ledger):
    up = InMemoryAssignmentStore()
    first = assign(experiment(), "u1", up, ledger)
    down = assign(experiment((100, 0) if first.variant == "variation" else (0, 100)), "u1", DownStore(), ledger)
    assert down.variant == first.variant and down.source is AssignmentSource.MYSQL


@pytest.mark.parametrize("status", [ExperimentStatus.PAUSED, ExperimentStatus.STOPPED, ExperimentStatus.DRAFT])
def test_not_running_serves_the_default_without_exposure(store, ledger, status):
    result = assign(experiment((0, 100), status=status), "u1", store, ledger)
    assert (result.variant, result.in_experiment, result.source) == ("control", False, AssignmentSource.DEFAULT)
    assert ledger.records == {}


def test_override_wins_and_is_not_an_exposure(store, ledger):
    result = assign(experiment((100, 0), overrides={"qa-1": "variation"}), "qa-1", store, ledger)
    assert (result.variant, result.in_experiment, result.source) == ("variation", False, AssignmentSource.OVERRIDE)
    assert ledger.records == {}


def test_users_outside_the_allocation_get_the_default_and_are_not_counted(store, ledger):
    results = [assign(experiment((0, 100), traffic_allocation=0.2), f"u{i}", store, ledger) for i in range(5000)]
    inside = [r for r in results if r.in_experiment]
    outside = [r for r in results if not r.in_experiment]
    assert 800 < len(inside) < 1200
    assert all(r.variant == "variation" for r in inside)
    assert all(r.variant == "control" and r.source is AssignmentSource.DEFAULT for r in outside)
    assert len(ledger.records) == len(inside)


def test_raising_the_allocation_keeps_everyone_who_was_in(store, ledger):
    users = [f"u{i}" for i in range(3000)]
    at_5 = {u: assign(experiment(traffic_allocation=0.05), u, store, ledger) for u in users}
    at_50 = {u: assign(experiment(traffic_allocation=0.5), u, store, ledger) for u in users}
    for user, before in at_5.items():
        if before.in_experiment:
            assert at_50[user].in_experiment and at_50[user].variant == before.variant
