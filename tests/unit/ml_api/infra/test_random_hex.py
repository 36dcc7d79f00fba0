"""Batched ids: the right shape, never repeated, not shared with a forked child."""

import os
import re
import threading

import pytest

from ml_api.infra.random_hex import RandomHex


def test_ids_are_hex_of_the_asked_length_and_unique_across_many_batches():
    source = RandomHex(20, batch=16)
    ids = [source.next() for _ in range(5000)]
    assert all(re.fullmatch(r"[0-9a-f]{20}", value) for value in ids)
    assert len(set(ids)) == len(ids)


def test_threads_never_get_the_same_id():
    source = RandomHex(32, batch=8)
    results: list[list[str]] = [[] for _ in range(8)]

    def take(into: list[str]) -> None:
        for _ in range(2000):
            into.append(source.next())

    threads = [threading.Thread(target=take, args=(into,)) for into in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [value for into in results for value in into]
    assert len(set(everything)) == len(everything) == 16000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_reuse_the_parents_batch():
    source = RandomHex(32, batch=64)
    source.next()  # the parent now holds 63 prepared ids
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id and leave at once
        os.write(write, source.next().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child_id = os.read(read, 64).decode()
    os.close(read)
    parent_ids = {source.next() for _ in range(63)}
    assert re.fullmatch(r"[0-9a-f]{32}", child_id)
    assert child_id not in parent_ids


@pytest.mark.parametrize("chars", [0, 3, -2])
def test_odd_or_empty_lengths_are_refused(chars):
    with pytest.raises(ValueError):
        RandomHex(chars)
