"""The metrics an experiment is judged on: one primary, secondary ones, and guardrail metrics.

A metric reads the outcomes posted to ``/feedback`` under a feedback metric name (its
``source``, by default its own name), summed per exposed user (users without outcomes
count as 0):

- ``conversion``: the share of exposed users whose sum is above 0;
- ``mean``: the mean per exposed user of the per-user sum, optionally capped (winsorised)
  at a value or at a quantile of the pooled per-user sums;
- ``ratio``: the sum over users of one feedback metric divided by the sum of another
  (revenue per order), compared with the delta method.

The primary metric decides the experiment (its verdicts); guardrail metrics are one-sided
non-inferiority tests with a margin, and a variation that fails one is stopped. An
experiment that declares nothing has the metrics every experiment had before names
existed: ``outcome`` (conversion, primary) and ``outcome_value`` (mean, secondary), both
read from the feedback metric ``outcome``.

Stored as JSON in ``experiment_metrics`` and kept in the change history with the rest of
the definition. Once the experiment has started its primary metric is fixed: choosing the
primary after seeing the data would make its verdict meaningless.
"""

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mysql.connector.abstracts import MySQLConnectionAbstract

from ml_api.errors import InvalidDefinition
from ml_api.experiments.definitions import check_name

DEFAULT_FEEDBACK_METRIC = "outcome"
METRIC_TYPES = ("conversion", "mean", "ratio")
DIRECTIONS = ("higher", "lower")
ROLES = ("primary", "secondary", "guardrail")
MAX_METRICS = 20
# Per-user sums are DOUBLEs of outcomes of magnitude at most 1e12 (serving.requests.MAX_ABS_OUTCOME).
MAX_ABS_SETTING = 1e12
COMMON_KEYS = {"name", "type", "direction", "mde"}
KEYS_OF_TYPE = {
    "conversion": COMMON_KEYS | {"source", "covariate"},
    "mean": COMMON_KEYS | {"source", "covariate", "cap"},
    "ratio": COMMON_KEYS | {"numerator", "denominator"},
}

SELECT_DECLARATION = "SELECT declaration FROM experiment_metrics WHERE experiment_id = %s"
SELECT_ALL_DECLARATIONS = "SELECT experiment_id, declaration FROM experiment_metrics"
UPSERT_DECLARATION = (
    "INSERT INTO experiment_metrics (experiment_id, declaration) VALUES (%s, %s)"
    " ON DUPLICATE KEY UPDATE declaration = VALUES(declaration)"
)


@dataclass(frozen=True)
class Cap:
    """Winsorise per-user sums from above: at a fixed value, or at a quantile of the pooled sums."""

    value: float | None = None
    quantile: float | None = None

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value} if self.value is not None else {"quantile": self.quantile}


@dataclass(frozen=True)
class MetricSpec:
    """One declared metric (see the module docstring for the types)."""

    name: str
    type: str
    role: str
    source: str | None = None  # conversion and mean: the feedback metric summed per user
    numerator: str | None = None  # ratio: feedback metric names
    denominator: str | None = None
    higher_is_better: bool = True
    cap: Cap | None = None
    covariate: str | None = None  # CUPED: a covariate name posted to /covariates
    margin: float | None = None  # guardrail: how much worse than control is still acceptable (absolute)
    mde: float | None = None  # absolute effect the always-valid test is tuned for (tau2 = mde^2)

    @property
    def feedback_names(self) -> tuple[str, ...]:
        """The feedback metric names this metric reads."""
        if self.type == "ratio":
            return self.numerator, self.denominator  # type: ignore[return-value]
        return (self.source,)  # type: ignore[return-value]

    def as_dict(self) -> dict[str, Any]:
        """The declaration's JSON form (only what was set, defaults filled in)."""
        data: dict[str, Any] = {"name": self.name, "type": self.type,
                                "direction": "higher" if self.higher_is_better else "lower"}
        if self.type == "ratio":
            data |= {"numerator": self.numerator, "denominator": self.denominator}
        else:
            data["source"] = self.source
        optional = {"cap": self.cap.as_dict() if self.cap else None, "covariate": self.covariate,
                    "margin": self.margin, "mde": self.mde}
        return data | {key: value for key, value in optional.items() if value is not None}


@dataclass(frozen=True)
class MetricSet:
    """An experiment's metrics, the primary first; ``declared`` is False for the default set."""

    metrics: tuple[MetricSpec, ...]
    declared: bool = True
    by_name: dict[str, MetricSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {m.name: m for m in self.metrics})

    @property
    def primary(self) -> MetricSpec:
        return self.metrics[0]

    @property
    def feedback_names(self) -> list[str]:
        """Every name /feedback accepts for this experiment."""
        return sorted({name for m in self.metrics for name in m.feedback_names})

    @property
    def covariates(self) -> list[str]:
        """Every covariate name /covariates accepts for this experiment."""
        return sorted({m.covariate for m in self.metrics if m.covariate})

    def of_role(self, role: str) -> list[MetricSpec]:
        return [m for m in self.metrics if m.role == role]

    def as_dict(self) -> dict[str, Any]:
        """The declaration's JSON form: what the admin API and the CLI take, and the history keeps."""
        return {"primary": self.primary.as_dict(),
                "secondary": [m.as_dict() for m in self.of_role("secondary")],
                "guardrails": [m.as_dict() for m in self.of_role("guardrail")]}


DEFAULT_METRICS = MetricSet((
    MetricSpec("outcome", "conversion", "primary", source=DEFAULT_FEEDBACK_METRIC),
    MetricSpec("outcome_value", "mean", "secondary", source=DEFAULT_FEEDBACK_METRIC),
), declared=False)


def parse_metrics(raw: Any) -> MetricSet:
    """Validate ``{"primary": {...}, "secondary": [...], "guardrails": [...]}`` into a MetricSet."""
    if not isinstance(raw, Mapping) or "primary" not in raw or set(raw) - {"primary", "secondary", "guardrails"}:
        raise InvalidDefinition('metrics must be an object {"primary": {...}, "secondary": [...], '
                                '"guardrails": [...]} (primary required)')
    specs = [parse_metric(raw["primary"], "primary")]
    for key, role in (("secondary", "secondary"), ("guardrails", "guardrail")):
        items = raw.get(key, [])
        if not isinstance(items, list):
            raise InvalidDefinition(f"metrics.{key} must be a list of metric objects")
        specs += [parse_metric(item, role) for item in items]
    if len(specs) > MAX_METRICS:
        raise InvalidDefinition(f"at most {MAX_METRICS} metrics per experiment, got {len(specs)}")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise InvalidDefinition(f"metric names must be unique, got {names}")
    return MetricSet(tuple(specs))


def parse_metric(raw: Any, role: str) -> MetricSpec:
    """One metric object; the message names the metric and what was wrong with it."""
    if not isinstance(raw, Mapping):
        raise InvalidDefinition(f"each {role} metric must be an object with name and type")
    name = check_name("metric", raw.get("name"))
    kind = raw.get("type")
    if kind not in METRIC_TYPES:
        raise InvalidDefinition(f"metric {name!r}: type must be one of {list(METRIC_TYPES)}, got {kind!r}")
    allowed = KEYS_OF_TYPE[kind] | ({"margin"} if role == "guardrail" else set())
    unknown = set(raw) - allowed
    if unknown:
        raise InvalidDefinition(f"metric {name!r} ({kind}, {role}): unknown or unsupported key(s) {sorted(unknown)};"
                                f" allowed: {sorted(allowed)}")
    direction = raw.get("direction", "higher")
    if direction not in DIRECTIONS:
        raise InvalidDefinition(f"metric {name!r}: direction must be 'higher' or 'lower' (is better), "
                                f"got {direction!r}")
    spec = MetricSpec(
        name, kind, role, higher_is_better=direction == "higher",
        cap=parse_cap(name, raw["cap"]) if "cap" in raw else None,
        covariate=check_name(f"metric {name!r}: covariate", raw["covariate"]) if "covariate" in raw else None,
        margin=positive(name, "margin", raw["margin"]) if "margin" in raw else None,
        mde=positive(name, "mde", raw["mde"]) if "mde" in raw else None,
        **_sources(name, kind, raw),
    )
    if role == "guardrail" and spec.margin is None:
        raise InvalidDefinition(f"guardrail metric {name!r} needs a margin: how much worse than control is still "
                                "acceptable, on the metric's scale (e.g. 0.01 = 1 pp for a conversion)")
    if role == "primary" and kind != "conversion" and spec.mde is None:
        raise InvalidDefinition(f"primary metric {name!r} ({kind}) needs mde: the absolute effect on its scale the "
                                "always-valid test is planned for (tau2 = mde^2); a conversion uses the plan's")
    return spec


def _sources(name: str, kind: str, raw: Mapping[str, Any]) -> dict[str, str]:
    """The feedback metric names a metric reads: ``source`` (default its name), or a ratio's two."""
    if kind != "ratio":
        return {"source": check_name(f"metric {name!r}: source", raw.get("source", name))}
    if "numerator" not in raw or "denominator" not in raw:
        raise InvalidDefinition(f"ratio metric {name!r} needs numerator and denominator (feedback metric names)")
    numerator = check_name(f"metric {name!r}: numerator", raw["numerator"])
    denominator = check_name(f"metric {name!r}: denominator", raw["denominator"])
    if numerator == denominator:
        raise InvalidDefinition(f"ratio metric {name!r}: numerator and denominator must differ")
    return {"numerator": numerator, "denominator": denominator}


def parse_cap(name: str, raw: Any) -> Cap:
    """``{"value": v}`` or ``{"quantile": q}`` with 0 < q < 1."""
    if not isinstance(raw, Mapping) or len(raw) != 1 or not set(raw) <= {"value", "quantile"}:
        raise InvalidDefinition(f'metric {name!r}: cap must be {{"value": number}} or {{"quantile": 0 < q < 1}}')
    if "value" in raw:
        return Cap(value=number(name, "cap.value", raw["value"]))
    quantile = number(name, "cap.quantile", raw["quantile"])
    if not 0 < quantile < 1:
        raise InvalidDefinition(f"metric {name!r}: cap.quantile must be between 0 and 1 (exclusive), got {quantile!r}")
    return Cap(quantile=quantile)


def number(name: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or abs(value) > MAX_ABS_SETTING:
        raise InvalidDefinition(f"metric {name!r}: {key} must be a finite number of magnitude at most "
                                f"{MAX_ABS_SETTING:g}, got {str(value)[:40]}")
    return float(value)


def positive(name: str, key: str, value: Any) -> float:
    parsed = number(name, key, value)
    if parsed <= 0:
        raise InvalidDefinition(f"metric {name!r}: {key} must be above 0, got {value!r}")
    return parsed


def from_json(text: str | None) -> MetricSet:
    """A stored declaration (None: the default metrics)."""
    return parse_metrics(json.loads(text)) if text else DEFAULT_METRICS


def read_metrics(conn: MySQLConnectionAbstract, experiment_id: int) -> MetricSet:
    cursor = conn.cursor()
    cursor.execute(SELECT_DECLARATION, (experiment_id,))
    row = cursor.fetchone()
    cursor.close()
    return from_json(row[0] if row else None)


def read_all_metrics(conn: MySQLConnectionAbstract) -> dict[int, MetricSet]:
    """Every declared metric set by experiment id (experiments without one are absent)."""
    cursor = conn.cursor()
    cursor.execute(SELECT_ALL_DECLARATIONS)
    rows = cursor.fetchall()
    cursor.close()
    return {int(experiment_id): from_json(text) for experiment_id, text in rows}


def write_metrics(conn: MySQLConnectionAbstract, experiment_id: int, metrics: MetricSet) -> None:
    conn.cursor().execute(UPSERT_DECLARATION, (experiment_id, json.dumps(metrics.as_dict())))


def check_primary_kept(before: MetricSet, after: MetricSet, started: bool) -> None:
    """Once started, the primary metric (what decides) cannot change."""
    if started and before.primary.as_dict() != after.primary.as_dict():
        raise InvalidDefinition("the experiment has started: its primary metric is fixed "
                                f"({json.dumps(before.primary.as_dict())}); secondary and guardrail metrics can "
                                "still change. Create a new experiment to decide on another metric")


def metrics_snapshot(conn: MySQLConnectionAbstract, experiment_id: int) -> dict[str, Any]:
    """``{"metrics": ...}`` for the change history; {} for an experiment with the default metrics."""
    metrics = read_metrics(conn, experiment_id)
    return {"metrics": metrics.as_dict()} if metrics.declared else {}
