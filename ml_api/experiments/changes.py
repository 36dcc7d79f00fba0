"""A committed experiment change, as told to whoever listens (the event shipper).

The repository appends every change to the history in MySQL; once that transaction has
committed it hands the same change (``Committed``) to its listener, so the CLI, the admin
API, the rollout engine and verdict recording report changes through one path.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

Snapshot = dict[str, Any]


@dataclass(frozen=True)
class Committed:
    """One change as the history holds it: who did what, the definition before (None for a creation) and after."""

    experiment: str
    action: str
    actor: str
    before: Snapshot | None
    after: Snapshot


Listener = Callable[[Committed], None]


def notify(listener: Listener | None, change: Committed) -> None:
    """Tell the listener; its failure is logged, never raised: the change is committed already."""
    if listener is None:
        return
    try:
        listener(change)
    except Exception:  # an event that cannot be built must not turn a committed change into an error
        log.exception("change of %r (%s) committed but not reported", change.experiment, change.action)
