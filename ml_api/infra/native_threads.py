"""Work that must run on real OS threads, whichever gunicorn worker class serves.

Under gunicorn's gevent worker the standard library is monkey-patched: a ``threading.Thread``
or a ``ThreadPoolExecutor`` becomes a greenlet of the worker's one event loop. That is what the
background tasks want (they wait on sockets and timers), but not a model call under
``MODEL_TIMEOUT_MS``: a CPU-bound model in a greenlet cannot be abandoned at its budget, and
blocks every other request of the worker until it returns. Nor a blocking file operation (a
SQLite commit that fsyncs, or waits for another worker's lock), which stops the loop for as
long as it takes. Both go to gevent's pool of native threads there, while the calling greenlet
yields to the loop; under gthread they run as before.
"""

import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def event_loop_active() -> bool:
    """Whether gevent has monkey-patched this process (gunicorn's gevent worker did, after its fork)."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("socket")


def offload(call: Callable[..., T], *args: Any) -> T:
    """``call(*args)`` on one of gevent's native threads while the event loop runs; inline otherwise.

    For blocking work that touches no socket (a socket belongs to the loop that made it)."""
    if not event_loop_active():
        return call(*args)
    import gevent

    return gevent.get_hub().threadpool.apply(call, args)


class BudgetPool:
    """A bounded pool of native threads whose calls the caller abandons after a time budget.

    A call that overruns raises TimeoutError in the caller at its budget and finishes in the
    background; calls beyond the pool's size wait for a thread within the same budget."""

    def __init__(self, max_workers: int, name: str) -> None:
        self._gevent_pool = None
        self._executor = None
        if event_loop_active():
            from gevent.threadpool import ThreadPool

            self._gevent_pool = ThreadPool(max_workers)
        else:
            self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name)

    def call(self, call: Callable[[Any], T], argument: Any, timeout: float) -> T:
        """``call(argument)`` on a native thread; TimeoutError once ``timeout`` seconds have passed."""
        if self._executor is not None:
            return self._executor.submit(call, argument).result(timeout=timeout)
        import gevent

        # The timer covers the wait for a free thread too: ThreadPool.spawn waits for one.
        with gevent.Timeout(timeout, TimeoutError):
            return self._gevent_pool.spawn(call, argument).get()
