"""Experiment definitions: validation, and their dict form for the API and the history."""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from assigner import Experiment, ExperimentStatus, Variant
from ml_api.errors import InvalidDefinition

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# The verbs of the admin API and the CLI, and the status each one sets.
STATUS_OF_ACTION = {"start": ExperimentStatus.RUNNING, "pause": ExperimentStatus.PAUSED,
                    "stop": ExperimentStatus.STOPPED}
ACTION_OF_STATUS = {status: action for action, status in STATUS_OF_ACTION.items()}


@dataclass(frozen=True)
class VariantSpec:
    name: str
    weight: float
    model: str


def check_name(kind: str, name: Any) -> str:
    """A name of an experiment or a variant: 1-64 letters, digits, '_', '.', '-'."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InvalidDefinition(f"{kind} name must be 1-64 characters of letters, digits, '_', '.', '-', got {name!r}")
    return name


# Weights are stored as DECIMAL(9, 4): four decimals, below 100,000.
MAX_WEIGHT = 10_000.0


def parse_weight(variant: str, raw: Any) -> float:
    """One weight, rounded to the four decimals MySQL keeps, from 0 to MAX_WEIGHT."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not 0 <= raw <= MAX_WEIGHT:
        raise InvalidDefinition(f"weight of {variant!r} must be a number from 0 to {MAX_WEIGHT:g}, got {str(raw)[:40]}")
    return round(float(raw), 4)


def parse_variants(raw: Any, known_models: Iterable[str]) -> list[VariantSpec]:
    """Validate a list of ``{"name", "weight", "model"}``: unique names, positive weights, known models."""
    if not isinstance(raw, list) or len(raw) < 2:
        raise InvalidDefinition("variants must be a list of at least two {name, weight, model} objects")
    known = set(known_models)
    specs: list[VariantSpec] = []
    for item in raw:
        if not isinstance(item, Mapping):
            raise InvalidDefinition("each variant must be an object with name, weight and model")
        name = check_name("variant", item.get("name"))
        weight = parse_weight(name, item.get("weight"))
        model = item.get("model")
        if not isinstance(model, str) or model not in known:
            raise InvalidDefinition(f"variant {name!r}: unknown model {model!r}; configured models: {sorted(known)}")
        specs.append(VariantSpec(name, weight, model))
    if len({s.name for s in specs}) != len(specs):
        raise InvalidDefinition("variant names must be unique")
    if sum(s.weight for s in specs) <= 0:
        raise InvalidDefinition("variant weights must add up to more than zero")
    return specs


def parse_weights(raw: Any, variant_names: Iterable[str]) -> dict[str, float]:
    """Validate new weights: one positive number for every existing variant, nothing else."""
    names = set(variant_names)
    if not isinstance(raw, Mapping) or set(raw) != names:
        raise InvalidDefinition(f"weights must give a number for exactly these variants: {sorted(names)}")
    weights = {name: parse_weight(name, weight) for name, weight in raw.items()}
    if sum(weights.values()) <= 0:
        raise InvalidDefinition("weights must add up to more than zero")
    return weights


def parse_allocation(raw: Any) -> float:
    """Traffic allocation: a share of users between 0 and 1, in steps of 0.0001 (one bucket)."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not 0 <= raw <= 1:
        raise InvalidDefinition(f"traffic_allocation must be a number between 0 and 1, got {str(raw)[:40]}")
    return round(float(raw), 4)


GUARDRAIL_LIMITS = {
    # key: (lowest, highest) allowed value
    "max_error_rate": (0.0, 1.0),
    "max_fallback_rate": (0.0, 1.0),
    "max_p95_latency_ms": (0.0, 600_000.0),
    "min_requests": (0.0, 1e12),
    "mde": (0.0, 10.0),
}


def parse_guardrails(raw: Any) -> dict[str, float]:
    """Guardrail thresholds: an object with any of GUARDRAIL_LIMITS' keys, each in range."""
    if not isinstance(raw, Mapping):
        raise InvalidDefinition(f"guardrails must be an object with keys among {sorted(GUARDRAIL_LIMITS)}")
    unknown = set(raw) - set(GUARDRAIL_LIMITS)
    if unknown:
        raise InvalidDefinition(f"unknown guardrail(s) {sorted(unknown)}; known: {sorted(GUARDRAIL_LIMITS)}")
    parsed = {}
    for key, value in raw.items():
        low, high = GUARDRAIL_LIMITS[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise InvalidDefinition(f"guardrail {key} must be a number between {low:g} and {high:g}, got {value!r}")
        parsed[key] = value
    return parsed


def parse_salt(raw: Any) -> str:
    if not isinstance(raw, str) or not 1 <= len(raw) <= 64 or not raw.isprintable():
        raise InvalidDefinition("salt must be 1-64 printable characters")
    return raw


def parse_status(raw: Any) -> ExperimentStatus:
    try:
        return ExperimentStatus(raw)
    except ValueError:
        allowed = ", ".join(s.value for s in ExperimentStatus)
        raise InvalidDefinition(f"status must be one of {allowed}, got {raw!r}") from None


def to_experiment(row: Mapping[str, Any], variants: Iterable[Mapping[str, Any]], overrides: Mapping[str, str]) -> Experiment:
    """Build the assigner's view of an experiment from database rows."""
    return Experiment(
        id=int(row["id"]),
        name=row["name"],
        salt=row["salt"],
        status=ExperimentStatus(row["status"]),
        traffic_allocation=float(row["traffic_allocation"]),
        default_variant=row["default_variant"],
        variants=tuple(Variant(v["name"], float(v["weight"]), v["model_name"]) for v in variants),
        overrides=dict(overrides),
    )


def from_description(data: Mapping[str, Any]) -> Experiment:
    """The inverse of ``describe`` (with ``id``): rebuilds a definition from its JSON form."""
    variants = ({"name": v["name"], "weight": v["weight"], "model_name": v["model"]} for v in data["variants"])
    return to_experiment(data, variants, data.get("overrides") or {})


def describe(experiment: Experiment) -> dict[str, Any]:
    """The JSON form of a definition (API answers, change history before/after)."""
    return {
        "name": experiment.name,
        "status": experiment.status.value,
        "salt": experiment.salt,
        "traffic_allocation": experiment.traffic_allocation,
        "default_variant": experiment.default_variant,
        "variants": [{"name": v.name, "weight": v.weight, "model": v.model} for v in experiment.variants],
        "overrides": dict(sorted(experiment.overrides.items())),
    }
