"""Domain types of an experiment and an assignment (frozen, typed)."""

from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property


class ExperimentStatus(str, Enum):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


class AssignmentSource(str, Enum):
    """Where the variant of a request came from."""

    MEMORY = "memory"  # this worker had already confirmed the user's variant
    REDIS = "redis"  # the sticky cache already knew the user
    MYSQL = "mysql"  # the durable record knew the user (cache miss or cache down)
    NEW = "new"  # first exposure: the hash decided, the store recorded it
    HASH = "hash"  # no store reachable: the hash alone decided
    OVERRIDE = "override"  # a forced variant for this user (QA)
    DEFAULT = "default"  # not running, or outside the traffic allocation


@dataclass(frozen=True)
class Variant:
    name: str
    weight: float
    model: str


@dataclass(frozen=True)
class Experiment:
    """An experiment definition as the assigner needs it.

    ``traffic_allocation`` is the share of users (0..1) who take part; the others get
    ``default_variant`` and are not exposures. ``overrides`` maps user ids to forced
    variant names.
    """

    name: str
    salt: str
    variants: tuple[Variant, ...]
    default_variant: str
    status: ExperimentStatus = ExperimentStatus.RUNNING
    traffic_allocation: float = 1.0
    overrides: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    id: int = 0

    def variant(self, name: str) -> Variant:
        """The variant called ``name`` (KeyError when unknown)."""
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise KeyError(name)

    @cached_property  # read on every request; a frozen definition never changes
    def variant_names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variants)


@dataclass(frozen=True)
class Assignment:
    variant: str
    in_experiment: bool
    source: AssignmentSource

    @property
    def is_new_exposure(self) -> bool:
        """True only the first time a user in the experiment is seen."""
        return self.source is AssignmentSource.NEW
