"""Unguessable hex strings for ids, drawn from the OS in batches.

``os.urandom`` releases the GIL around its system call. Under load another thread is
always waiting for the GIL, so each call on the request path (or the event shipper)
hands the GIL over and waits to get it back: a context switch or two per id, which cost
more than the randomness itself. Reading a few kilobytes at once and slicing them keeps
the same source (the OS's CSPRNG) with one such call per ``batch`` ids.
"""

import os
import weakref
from collections import deque


class RandomHex:
    """``next()`` gives ``chars`` hex characters of fresh OS randomness; thread- and fork-safe."""

    def __init__(self, chars: int, batch: int = 256) -> None:
        if chars <= 0 or chars % 2:
            raise ValueError("chars must be a positive even number")
        self._chars = chars
        self._batch = batch
        self._ready: deque[str] = deque()  # popleft is atomic: no two threads get the same string
        _instances.add(self)

    def next(self) -> str:
        try:
            return self._ready.popleft()
        except IndexError:
            pool = os.urandom(self._chars // 2 * self._batch).hex()
            fresh = [pool[start:start + self._chars] for start in range(0, len(pool), self._chars)]
            self._ready.extend(fresh[1:])
            return fresh[0]


# A forked child must not hand out what its parent may also hand out.
_instances: "weakref.WeakSet[RandomHex]" = weakref.WeakSet()


def _forget_after_fork() -> None:
    for instance in list(_instances):
        instance._ready.clear()


os.register_at_fork(after_in_child=_forget_after_fork)
