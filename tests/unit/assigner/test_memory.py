"""The bounded two-generation memory of confirmed assignments."""

import threading

import pytest

from assigner.memory import StickyMemory


def test_recall_what_was_remembered_per_experiment():
    memory = StickyMemory(10)
    memory.remember(1, "u", "control")
    memory.remember(2, "u", "variation")
    assert (memory.recall(1, "u"), memory.recall(2, "u"), memory.recall(1, "other")) == ("control", "variation", None)


def test_size_stays_bounded_and_recent_users_are_kept():
    memory = StickyMemory(1000)
    for n in range(10_000):
        memory.remember(1, f"u{n}", "control")
    assert len(memory) <= 1000
    assert all(memory.recall(1, f"u{n}") == "control" for n in range(9_500, 10_000))
    assert memory.recall(1, "u0") is None


def test_a_user_in_use_survives_any_number_of_newcomers():
    memory = StickyMemory(100)
    memory.remember(1, "regular", "variation")
    for n in range(5_000):
        memory.remember(1, f"u{n}", "control")
        if n % 40 == 0:  # comes back more often than a generation fills
            assert memory.recall(1, "regular") == "variation"
    assert memory.recall(1, "regular") == "variation"


def test_too_small_a_memory_is_refused():
    with pytest.raises(ValueError):
        StickyMemory(1)


def test_threads_never_see_a_wrong_variant():
    memory = StickyMemory(200)
    wrong = []

    def work(worker: int) -> None:
        for n in range(20_000):
            user = f"u{(n * 7 + worker) % 1000}"
            memory.remember(1, user, f"v{hash(user) % 3}")
            seen = memory.recall(1, user)
            if seen not in (None, f"v{hash(user) % 3}"):
                wrong.append((user, seen))

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == [] and len(memory) <= 200 + 2 * 4  # a race may overfill each generation by a thread's entry
