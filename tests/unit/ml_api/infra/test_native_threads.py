"""Native threads under both worker classes: abandoned at the budget, and never holding gevent's loop."""

import subprocess
import sys
import time

import pytest

from ml_api.config import PROJECT_ROOT
from ml_api.infra.native_threads import BudgetPool, event_loop_active, offload


def spin(seconds: float) -> str:
    """Hold the CPU in Python code for ``seconds``: no sleep, nothing gevent could switch on."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass
    return "done"


def test_without_gevent_calls_run_inline_or_on_a_thread_pool():
    assert not event_loop_active()
    assert offload(spin, 0.0) == "done"
    pool = BudgetPool(2, "test")
    assert pool.call(spin, 0.0, timeout=5) == "done"
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        pool.call(spin, 2.0, timeout=0.1)
    assert time.monotonic() - started < 1.0


# Monkey-patched as gunicorn's gevent worker does, in a process of its own. While a call spins on a
# native thread past its budget, a greenlet ticks every 10 ms: it would not tick once if the call
# held the event loop.
UNDER_GEVENT = """
from gevent import monkey
monkey.patch_all()
import time
import gevent
from ml_api.infra.native_threads import BudgetPool, event_loop_active, offload
from tests.unit.ml_api.infra.test_native_threads import spin

ticks = []
def tick():
    while True:
        ticks.append(time.monotonic())
        gevent.sleep(0.01)

assert event_loop_active()
ticker = gevent.spawn(tick)
gevent.sleep(0)
pool = BudgetPool(1, "test")
started = time.monotonic()
try:
    pool.call(spin, 2.0, timeout=0.2)
    raise SystemExit("the spinning call was not abandoned")
except TimeoutError:
    abandoned = time.monotonic() - started
queued_started = time.monotonic()
try:
    pool.call(spin, 0.0, timeout=0.2)  # the one thread still spins: waiting for it counts against the budget
    raise SystemExit("a call waiting for a busy pool was not abandoned")
except TimeoutError:
    queued = time.monotonic() - queued_started
ticks_before = len(ticks)
assert offload(spin, 1.0) == "done"
print(round(abandoned, 3), round(queued, 3), ticks_before, len(ticks) - ticks_before)
"""


def test_under_gevent_an_overrunning_call_is_abandoned_at_its_budget_and_the_loop_keeps_running():
    result = subprocess.run([sys.executable, "-c", UNDER_GEVENT], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=60, env={"PYTHONPATH": str(PROJECT_ROOT), "PATH": ""})
    assert result.returncode == 0, result.stderr[-2000:]
    abandoned, queued, ticks_during_budget, ticks_during_offload = result.stdout.split()
    assert float(abandoned) < 1.0 and float(queued) < 1.0, "past the budget, the caller gets TimeoutError"
    # Held by the spinning call, the loop would not tick at all; on a loaded 2-core machine it ticks
    # far less often than every 10 ms, but it does tick.
    assert int(ticks_during_budget) >= 3, "the loop ran while the model spun"
    assert int(ticks_during_offload) >= 3, "the loop ran while offloaded work spun"
