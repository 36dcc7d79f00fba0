"""Pure assignment library: hash users into buckets, buckets into variants, keep them sticky.

Nothing here knows about HTTP, Flask, MySQL or the environment; the sticky store is
handed in by the caller.
"""

from assigner.allocation import choose_variant, in_traffic
from assigner.assign import assign, assign_many
from assigner.domain import Assignment, AssignmentSource, Experiment, ExperimentStatus, Variant
from assigner.hashing import BUCKETS, bucket, traffic_bucket
from assigner.store import (
    AssignmentStore,
    InMemoryAssignmentStore,
    RedisAssignmentStore,
    StoreUnavailable,
)

__all__ = [
    "BUCKETS",
    "Assignment",
    "AssignmentSource",
    "AssignmentStore",
    "Experiment",
    "ExperimentStatus",
    "InMemoryAssignmentStore",
    "RedisAssignmentStore",
    "StoreUnavailable",
    "Variant",
    "assign",
    "assign_many",
    "bucket",
    "choose_variant",
    "in_traffic",
    "traffic_bucket",
]
