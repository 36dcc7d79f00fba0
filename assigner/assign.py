"""The assignment facade: one call from the gateway decides a user's variant.

Stickiness rules, in order:

1. An experiment that is not running serves its default variant to everyone.
2. A forced override (QA) wins; such users are not exposures.
3. Users outside the traffic allocation get the default variant; not exposures.
4. A variant this worker already confirmed for the user is answered from its memory
   (``assigner.memory``), with no round trip; the memory is optional.
5. Otherwise the hash proposes a *candidate* under the current weights, and the sticky
   store keeps the first variant it ever recorded for the user. On a cache miss the
   durable ledger is asked before the candidate is accepted, so a flushed cache, or a
   change of weights, never moves a user who was already assigned.
6. With the cache unreachable, the ledger alone decides; the request never fails
   because of the cache.
7. A claim stores the candidate *unconfirmed*; it becomes the cached truth (``put``) only
   once the ledger has recorded it. A request that dies between its claim and its record
   (a killed worker) leaves an entry the next request does not trust: that request asks
   the ledger, which records the exposure then.
8. With the ledger unreachable, the hash (or the unconfirmed guess in the cache) answers,
   and the exposure is queued for the ledger (again by each such request: a queued record
   is idempotent, and the request that claimed the guess may have died before queueing
   it). The entry stays unconfirmed: it is served as it is until the ledger answers again,
   and the next request after that asks the ledger, which may know an older first
   assignment (the cache was flushed, the weights changed since). A guess never becomes
   the cached or remembered truth.
"""

from collections.abc import Callable
from typing import Protocol

from assigner.allocation import choose_variant, in_traffic
from assigner.domain import Assignment, AssignmentSource, Experiment, ExperimentStatus
from assigner.hashing import bucket, traffic_bucket
from assigner.memory import StickyMemory
from assigner.store import UNCONFIRMED, AssignmentStore, StoreUnavailable, unconfirmed


class ExposureLedger(Protocol):
    """The durable record of first exposures (MySQL in production)."""

    def record_first(self, experiment: Experiment, user_id: str, candidate: str) -> tuple[str, AssignmentSource]:
        """Record ``candidate`` as the user's first exposure unless one exists.

        Returns the variant on record and where it came from: ``MYSQL`` when the user
        already had one, ``NEW`` when ``candidate`` was recorded, ``HASH`` when the record
        could not be checked (then it is queued, and checked when the ledger is back).
        """


# Answers that may be remembered: confirmed by the cache or the durable record. A HASH
# answer is not: the record could not be checked and may yet say otherwise.
CONFIRMED = frozenset({AssignmentSource.REDIS, AssignmentSource.MYSQL, AssignmentSource.NEW})


def assign(
    experiment: Experiment, user_id: str, store: AssignmentStore, ledger: ExposureLedger,
    memory: StickyMemory | None = None,
) -> Assignment:
    """Decide the variant of ``user_id`` in ``experiment`` (see the module docstring)."""
    if experiment.status is not ExperimentStatus.RUNNING:
        return Assignment(experiment.default_variant, False, AssignmentSource.DEFAULT)
    forced = experiment.overrides.get(user_id)
    if forced is not None:
        return Assignment(forced, False, AssignmentSource.OVERRIDE)
    if experiment.traffic_allocation < 1.0 and not in_traffic(  # everyone is in at 1.0: no hash needed
            experiment.traffic_allocation, traffic_bucket(experiment.salt, user_id)):
        return Assignment(experiment.default_variant, False, AssignmentSource.DEFAULT)

    if memory is not None:
        known = memory.recall(experiment.id, user_id)
        if known is not None and known in experiment.variant_names:
            return Assignment(known, True, AssignmentSource.MEMORY)
    assignment = _sticky(experiment, user_id, store, ledger)
    if memory is not None and assignment.source in CONFIRMED:
        memory.remember(experiment.id, user_id, assignment.variant)
    return assignment


def _sticky(experiment: Experiment, user_id: str, store: AssignmentStore, ledger: ExposureLedger) -> Assignment:
    """The user's first variant, from the sticky store, else the durable record, else the hash."""
    candidate = choose_variant(experiment.variants, bucket(experiment.salt, user_id))
    try:
        cached = store.claim(experiment.id, user_id, UNCONFIRMED + candidate)
    except StoreUnavailable:
        variant, source = ledger.record_first(experiment, user_id, candidate)
        return Assignment(variant, True, source)
    if cached is not None and cached in experiment.variant_names:
        return Assignment(cached, True, AssignmentSource.REDIS)
    guess = unconfirmed(cached)
    if guess in experiment.variant_names:
        candidate = guess  # claimed by an earlier request of this user, which may have answered it

    variant, source = ledger.record_first(experiment, user_id, candidate)
    if source is not AssignmentSource.HASH:
        _correct_cache(store.put, experiment.id, user_id, variant)  # recorded: the next request hits
    return Assignment(variant, True, source)


def _correct_cache(write: Callable[[int, str, str], None], experiment_id: int, user_id: str, variant: str) -> None:
    # A correction of the cache that fails waits for the next request; the durable record,
    # or the hash, already answered this one.
    try:
        write(experiment_id, user_id, variant)
    except StoreUnavailable:
        pass
