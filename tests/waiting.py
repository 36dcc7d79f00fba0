"""Waiting in tests: poll for the condition itself against a deadline, never sleep a fixed time.

CI runs on a loaded two-core machine, where "it surely happened by now" is sometimes false.
A deadline that is generous costs nothing when things go well: the wait ends as soon as the
condition holds.
"""

import reprlib
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float = 30.0, interval: float = 0.1,
               message: str | Callable[[], str] = "the condition never held") -> T:
    """Call ``condition`` until it returns something truthy, and return that.

    After ``timeout`` seconds raise AssertionError with ``message`` (a string, or a function
    that describes the state at the deadline) and the condition's last answer. The last check
    is made at or after the deadline, so one slow check cannot fail the wait by itself.
    """
    deadline = time.monotonic() + timeout
    while True:
        answer = condition()
        if answer:
            return answer
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"{text} (waited {timeout:g} s; last answer: {reprlib.repr(answer)})")
        time.sleep(interval)


def wait_until_moment(moment: float) -> None:
    """Wait until ``time.monotonic()`` reaches ``moment``: for the few tests where the passage of time is
    itself what is tested (a quiet period, a promised bound, a request schedule). A late wake-up only
    moves later, which such tests allow; it never shortens the time that passed."""
    wait_until(lambda: time.monotonic() >= moment, timeout=max(0.0, moment - time.monotonic()) + 30,
               interval=min(0.05, max(0.001, moment - time.monotonic())), message="the clock never reached the moment")
