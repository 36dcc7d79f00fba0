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

from collections.abc import Callable, Sequence
from functools import partial
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

    def record_first_many(
        self, exposures: Sequence[tuple[Experiment, str, str]]
    ) -> list[tuple[str, AssignmentSource]]:
        """``record_first`` for each ``(experiment, user_id, candidate)`` of distinct users, in one round trip."""


# Answers that may be remembered: confirmed by the cache or the durable record. A HASH
# answer is not: the record could not be checked and may yet say otherwise.
CONFIRMED = frozenset({AssignmentSource.REDIS, AssignmentSource.MYSQL, AssignmentSource.NEW})


def assign(
    experiment: Experiment, user_id: str, store: AssignmentStore, ledger: ExposureLedger,
    memory: StickyMemory | None = None,
) -> Assignment:
    """Decide the variant of ``user_id`` in ``experiment`` (see the module docstring)."""
    early = _without_store(experiment, user_id, memory)
    if early is not None:
        return early
    assignment = _sticky(experiment, user_id, store, ledger)
    if memory is not None and assignment.source in CONFIRMED:
        memory.remember(experiment.id, user_id, assignment.variant)
    return assignment


def assign_many(
    requests: Sequence[tuple[Experiment, str]], store: AssignmentStore, ledger: ExposureLedger,
    memory: StickyMemory | None = None,
) -> list[Assignment]:
    """``assign`` for each ``(experiment, user_id)``, in order, with one round trip per store for them all.

    The same rules as one ``assign`` per request: the claims go to the store in one batch,
    the exposures they did not find to the ledger in one batch, and the confirmations back to
    the store in one batch. A user asked for twice gets one variant: the first request is
    decided, and the later ones repeat it, as the worker's memory would (``MEMORY``; a
    ``HASH`` answer stays a ``HASH``: nothing confirmed it)."""
    answers: list[Assignment | None] = [_without_store(experiment, user_id, memory) for experiment, user_id in requests]
    first_of: dict[tuple[int, str], int] = {}
    repeats: list[tuple[int, int]] = []
    for index, (experiment, user_id) in enumerate(requests):
        if answers[index] is None:
            first = first_of.setdefault((experiment.id, user_id), index)
            if first != index:
                repeats.append((index, first))
    firsts = list(first_of.values())
    for index, assignment in zip(firsts, _sticky_many([requests[i] for i in firsts], store, ledger)):
        answers[index] = assignment
        experiment, user_id = requests[index]
        if memory is not None and assignment.source in CONFIRMED:
            memory.remember(experiment.id, user_id, assignment.variant)
    for index, first in repeats:
        decided = answers[first]
        if decided is not None:  # always: every first request was decided above
            source = AssignmentSource.HASH if decided.source is AssignmentSource.HASH else AssignmentSource.MEMORY
            answers[index] = Assignment(decided.variant, True, source)
    return [answer for answer in answers if answer is not None]


def _without_store(experiment: Experiment, user_id: str, memory: StickyMemory | None) -> Assignment | None:
    """The answer of rules 1 to 4, which need no store; None when the stores must be asked."""
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
    return None


def _candidate(experiment: Experiment, user_id: str) -> str:
    """The variant the hash proposes under the current weights."""
    return choose_variant(experiment.variants, bucket(experiment.salt, user_id))


def _to_record(experiment: Experiment, cached: str | None, candidate: str) -> str | None:
    """What to record for a claim that answered ``cached``: None when the cache knew the user (a hit)."""
    if cached is not None and cached in experiment.variant_names:
        return None
    guess = unconfirmed(cached)
    return guess if guess in experiment.variant_names else candidate  # a guess was claimed by an earlier request


def _sticky(experiment: Experiment, user_id: str, store: AssignmentStore, ledger: ExposureLedger) -> Assignment:
    """The user's first variant, from the sticky store, else the durable record, else the hash."""
    candidate = _candidate(experiment, user_id)
    try:
        cached = store.claim(experiment.id, user_id, UNCONFIRMED + candidate)
    except StoreUnavailable:
        variant, source = ledger.record_first(experiment, user_id, candidate)
        return Assignment(variant, True, source)
    to_record = _to_record(experiment, cached, candidate)
    if to_record is None:
        return Assignment(cached, True, AssignmentSource.REDIS)
    variant, source = ledger.record_first(experiment, user_id, to_record)
    if source is not AssignmentSource.HASH:
        _correct_cache(partial(store.put, experiment.id, user_id, variant))  # recorded: the next request hits
    return Assignment(variant, True, source)


def _sticky_many(
    requests: list[tuple[Experiment, str]], store: AssignmentStore, ledger: ExposureLedger
) -> list[Assignment]:
    """``_sticky`` for distinct users: one batch of claims, one of exposures, one of confirmations."""
    candidates = [_candidate(experiment, user_id) for experiment, user_id in requests]
    try:
        cached = store.claim_many([(experiment.id, user_id, UNCONFIRMED + candidate)
                                   for (experiment, user_id), candidate in zip(requests, candidates)])
    except StoreUnavailable:
        recorded = ledger.record_first_many([(e, u, c) for (e, u), c in zip(requests, candidates)])
        return [Assignment(variant, True, source) for variant, source in recorded]
    answers: list[Assignment | None] = []
    pending: list[tuple[int, str]] = []
    for index, ((experiment, _), hit, candidate) in enumerate(zip(requests, cached, candidates)):
        to_record = _to_record(experiment, hit, candidate)
        if to_record is None:
            answers.append(Assignment(hit, True, AssignmentSource.REDIS))
        else:
            answers.append(None)
            pending.append((index, to_record))
    recorded = ledger.record_first_many([(*requests[index], variant) for index, variant in pending])
    confirmed = []
    for (index, _), (variant, source) in zip(pending, recorded):
        answers[index] = Assignment(variant, True, source)
        if source is not AssignmentSource.HASH:
            experiment, user_id = requests[index]
            confirmed.append((experiment.id, user_id, variant))
    if confirmed:
        _correct_cache(partial(store.put_many, confirmed))
    return [answer for answer in answers if answer is not None]


def _correct_cache(write: Callable[[], None]) -> None:
    # A correction of the cache that fails waits for the next request; the durable record,
    # or the hash, already answered this one.
    try:
        write()
    except StoreUnavailable:
        pass
