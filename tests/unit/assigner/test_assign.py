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
    assign_many,
)
from assigner.memory import StickyMemory


class MemoryLedger:
    def __init__(self):
        self.records = {}

    def record_first(self, experiment, user_id, candidate):
        key = (experiment.id, user_id)
        if key in self.records:
            return self.records[key], AssignmentSource.MYSQL
        self.records[key] = candidate
        return candidate, AssignmentSource.NEW

    def record_first_many(self, exposures):
        return [self.record_first(*exposure) for exposure in exposures]


class DownStore:
    def claim(self, *args):
        raise StoreUnavailable("down")

    put = claim_many = put_many = claim


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


# --- the worker's memory of confirmed assignments ---


class DownLedger:
    """The durable record is away: the hash alone decides (not confirmed)."""

    def record_first(self, experiment, user_id, candidate):
        return candidate, AssignmentSource.HASH


@pytest.fixture
def memory():
    return StickyMemory(1000)


def test_memory_answers_a_confirmed_user_without_the_store(store, ledger, memory):
    first = assign(experiment(), "u1", store, ledger, memory)
    second = assign(experiment(), "u1", DownStore(), DownLedger(), memory)
    assert first.source is AssignmentSource.NEW
    assert (second.variant, second.in_experiment, second.source) == (first.variant, True, AssignmentSource.MEMORY)


def test_memory_keeps_users_through_a_weight_change_and_a_flush(store, ledger, memory):
    users = [f"u{i}" for i in range(400)]
    before = {u: assign(experiment((50, 50)), u, store, ledger, memory).variant for u in users}
    store.clear()
    after = {u: assign(experiment((100, 0)), u, store, ledger, memory) for u in users}
    assert {u: a.variant for u, a in after.items()} == before
    assert {a.source for a in after.values()} == {AssignmentSource.MEMORY}


def test_memory_learns_from_cache_hits_and_the_ledger(store, ledger):
    assign(experiment(), "u-cache", store, ledger)  # another worker's first exposure
    ledger.records[(1, "u-ledger")] = "variation"  # recorded earlier, cache flushed since
    worker = StickyMemory(1000)
    assert assign(experiment(), "u-cache", store, ledger, worker).source is AssignmentSource.REDIS
    assert assign(experiment((100, 0)), "u-ledger", store, ledger, worker).source is AssignmentSource.MYSQL
    assert worker.recall(1, "u-cache") == store.get(1, "u-cache")
    assert worker.recall(1, "u-ledger") == "variation"


def test_memory_never_keeps_a_guess(memory):
    guess = assign(experiment(), "u1", DownStore(), DownLedger(), memory)
    assert guess.source is AssignmentSource.HASH and memory.recall(1, "u1") is None


@pytest.mark.parametrize("change", [
    {"status": ExperimentStatus.PAUSED},
    {"overrides": {"u1": "third"}},
    {"traffic_allocation": 0.0},
])
def test_rules_before_stickiness_still_win_over_memory(store, ledger, memory, change):
    assign(experiment((0, 100)), "u1", store, ledger, memory)
    result = assign(experiment((0, 100, 0), **change), "u1", store, ledger, memory)
    assert result.source in (AssignmentSource.DEFAULT, AssignmentSource.OVERRIDE)
    assert assign(experiment((0, 100)), "u1", store, ledger, memory).source is AssignmentSource.MEMORY


def test_a_remembered_variant_the_experiment_lost_is_ignored(store, ledger, memory):
    memory.remember(1, "u1", "retired")
    result = assign(experiment((100, 0)), "u1", store, ledger, memory)
    assert result.variant == "control" and result.source is AssignmentSource.NEW
    assert memory.recall(1, "u1") == "control"


def test_memory_is_per_experiment(store, ledger, memory):
    assign(experiment((0, 100)), "u1", store, ledger, memory)
    other = assign(experiment((100, 0), id=2), "u1", store, ledger, memory)
    assert (other.variant, other.source) == ("control", AssignmentSource.NEW)


# --- a claim is a guess until the durable record holds it (rule 7) ---


def test_a_claim_stays_unconfirmed_until_the_record_holds_it(store):
    class Watching(MemoryLedger):
        def record_first(self, experiment, user_id, candidate):
            self.cached_while_recording = store.get(experiment.id, user_id)
            return super().record_first(experiment, user_id, candidate)

    ledger = Watching()
    first = assign(experiment(), "u1", store, ledger)
    assert ledger.cached_while_recording == "?" + first.variant
    assert store.get(1, "u1") == first.variant


def test_a_request_killed_between_its_claim_and_its_record_loses_no_exposure(store, ledger):
    store.claim(1, "u1", "?control")  # a request claimed (and may have answered), then its worker died
    retried = assign(experiment((0, 100)), "u1", store, ledger)  # the weights moved meanwhile
    assert (retried.variant, retried.source) == ("control", AssignmentSource.NEW)
    assert ledger.records[(1, "u1")] == "control" and store.get(1, "u1") == "control"


# --- guesses made while the durable record is away (rule 8) ---


class SwitchableLedger(MemoryLedger):
    """The durable record, which can be taken away and brought back."""

    def __init__(self):
        super().__init__()
        self.away = False
        self.asked = 0

    def record_first(self, experiment, user_id, candidate):
        self.asked += 1
        if self.away:
            return candidate, AssignmentSource.HASH
        return super().record_first(experiment, user_id, candidate)


def test_a_guess_after_a_flush_gives_way_to_the_older_record():
    """Redis flushed, MySQL away, weights changed since: the guess is served, never kept."""
    store, ledger = InMemoryAssignmentStore(), SwitchableLedger()
    ledger.records[(1, "u1")] = "variation"  # assigned before the weights went to 100/0
    ledger.away = True
    guess = assign(experiment((100, 0)), "u1", store, ledger)
    assert (guess.variant, guess.source) == ("control", AssignmentSource.HASH)
    assert store.get(1, "u1") == "?control"
    again = assign(experiment((100, 0)), "u1", store, ledger)  # still away: the same guess
    assert (again.variant, again.source) == ("control", AssignmentSource.HASH)
    assert ledger.asked == 2  # each request while it is away queues the guess (a replay is idempotent)

    ledger.away = False
    back = assign(experiment((100, 0)), "u1", store, ledger)
    assert (back.variant, back.source) == ("variation", AssignmentSource.MYSQL)
    assert store.get(1, "u1") == "variation"
    asked = ledger.asked
    assert assign(experiment((100, 0)), "u1", store, ledger).source is AssignmentSource.REDIS
    assert ledger.asked == asked  # confirmed: a cache hit again, no more questions


def test_a_user_first_seen_while_the_record_was_away_keeps_the_guess_they_were_served():
    store, ledger = InMemoryAssignmentStore(), SwitchableLedger()
    ledger.away = True
    served = assign(experiment((100, 0)), "u-new", store, ledger).variant
    assert served == "control"
    ledger.away = False  # ... and the weights changed meanwhile
    later = assign(experiment((0, 100)), "u-new", store, ledger)
    assert (later.variant, later.source) == ("control", AssignmentSource.NEW)
    assert ledger.records[(1, "u-new")] == "control" and store.get(1, "u-new") == "control"


def test_an_unconfirmed_cache_entry_is_never_remembered(memory):
    store, ledger = InMemoryAssignmentStore(), SwitchableLedger()
    ledger.away = True
    for _ in range(3):
        assert assign(experiment(), "u1", store, ledger, memory).source is AssignmentSource.HASH
    assert memory.recall(1, "u1") is None
    ledger.away = False
    assert assign(experiment(), "u1", store, ledger, memory).source is AssignmentSource.NEW
    assert memory.recall(1, "u1") == store.get(1, "u1")


def test_a_confirmed_entry_is_not_doubted_when_the_record_is_away():
    store, ledger = InMemoryAssignmentStore(), SwitchableLedger()
    first = assign(experiment(), "u1", store, ledger)
    ledger.away = True
    assert assign(experiment(), "u1", store, ledger).source is AssignmentSource.REDIS  # no question asked
    assert store.get(1, "u1") == first.variant


def test_a_batch_answers_every_rule_as_requests_one_by_one(store, ledger, memory):
    """Paused, forced, outside the allocation, remembered, new, and a user sent twice, in one batch."""
    forced = experiment(overrides={"qa-1": "variation"}, traffic_allocation=0.5)
    paused = experiment(status=ExperimentStatus.PAUSED)
    requests = [(forced, f"u{i}") for i in range(40)] + [(forced, "qa-1"), (paused, "u1"), (forced, "u3")]
    assign(forced, "u3", InMemoryAssignmentStore(), ledger, memory)  # remembered before the batch, if in
    expected = [assign(forced, u, InMemoryAssignmentStore(), MemoryLedger()) for _, u in requests]

    many = assign_many(requests, store, ledger, memory)

    assert [(a.variant, a.in_experiment) for a in many] == [(a.variant, a.in_experiment) for a in expected]
    assert many[-3].source is AssignmentSource.OVERRIDE and many[-2].source is AssignmentSource.DEFAULT
    assert {a.source for a in many[:40]} >= {AssignmentSource.DEFAULT, AssignmentSource.NEW}
    assert many[-1].source is (AssignmentSource.MEMORY if many[3].in_experiment else AssignmentSource.DEFAULT)
    assert set(ledger.records) == {(1, u) for (_, u), a in zip(requests, many) if a.in_experiment}


def test_a_batch_with_the_store_down_asks_the_ledger_once_per_user(ledger):
    many = assign_many([(experiment(), "u1"), (experiment(), "u1"), (experiment(), "u2")], DownStore(), ledger)
    assert [a.source for a in many] == [AssignmentSource.NEW, AssignmentSource.MEMORY, AssignmentSource.NEW]
    assert many[0].variant == many[1].variant
