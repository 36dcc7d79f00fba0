"""An experiment's statistical plan (``experiment_plans``): what it is planned to detect, and tau2.

The always-valid test is fastest at detecting effects of about tau, so tau is the effect the
experiment is planned for: tau2 = (baseline_rate * mde) ** 2 (``experiment_stats.tau2_for_mde``).
It must not change once data is being judged (the evidence of every look is one test), so
it is fixed in the transaction that first starts the experiment; before that the plan can
be changed freely. Whether a variation with a final ``stop`` verdict loses its traffic
automatically (``stop_variations``) can be switched at any time.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from mysql.connector.abstracts import MySQLConnectionAbstract

from experiment_stats import tau2_for_mde
from ml_api.errors import InvalidDefinition

ALPHA = 0.05  # two-sided, every experiment; Holm-adjusted across variations
POWER = 0.8  # the power the users-needed figure is planned for
# The plan an experiment gets unless it sets its own: a 10 % baseline and a +10 % relative MDE
# give tau2 = 1e-4, the constant every experiment used before plans existed.
DEFAULT_BASELINE_RATE = 0.1
DEFAULT_MDE = 0.1
PLAN_LIMITS = {"baseline_rate": (0.0001, 0.9999), "mde": (0.001, 10.0)}

SELECT_PLAN = (
    "SELECT baseline_rate, mde, tau2, alpha, stop_variations, fixed_at FROM experiment_plans WHERE experiment_id = %s"
)
UPSERT_PLAN = (
    "INSERT INTO experiment_plans (experiment_id, baseline_rate, mde, tau2, alpha, stop_variations, fixed_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE baseline_rate = VALUES(baseline_rate),"
    " mde = VALUES(mde), tau2 = VALUES(tau2), alpha = VALUES(alpha), stop_variations = VALUES(stop_variations),"
    " fixed_at = VALUES(fixed_at)"
)
FIX_PLAN = "UPDATE experiment_plans SET fixed_at = CURRENT_TIMESTAMP(3) WHERE experiment_id = %s AND fixed_at IS NULL"


@dataclass(frozen=True)
class Plan:
    """What the experiment is planned to detect, and the mixing variance that follows from it."""

    baseline_rate: float = DEFAULT_BASELINE_RATE
    mde: float = DEFAULT_MDE  # relative to the baseline rate: 0.1 = +10 %
    tau2: float = tau2_for_mde(DEFAULT_BASELINE_RATE, DEFAULT_MDE)
    alpha: float = ALPHA
    stop_variations: bool = False
    fixed_at: datetime | None = None  # None: not started yet, tau2 may still change

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (API answers, history, results)."""
        return {"baseline_rate": self.baseline_rate, "mde": self.mde, "tau2": self.tau2, "alpha": self.alpha,
                "stop_variations": self.stop_variations,
                "fixed_at": self.fixed_at.isoformat(timespec="milliseconds") + "Z" if self.fixed_at else None}


def planned(baseline_rate: float, mde: float, stop_variations: bool = False) -> Plan:
    """A plan with tau2 derived from its baseline rate and relative MDE."""
    return Plan(baseline_rate, mde, tau2_for_mde(baseline_rate, mde), ALPHA, stop_variations)


def parse_plan(raw: Any, current: Plan) -> Plan:
    """Validate ``{"baseline_rate", "mde", "stop_variations"}`` (any of them) over the current plan.

    Once the experiment has started its tau2 is fixed, so baseline_rate and mde can no longer change."""
    if not isinstance(raw, Mapping) or not raw or set(raw) - {*PLAN_LIMITS, "stop_variations"}:
        raise InvalidDefinition(f"plan must be an object with any of {sorted([*PLAN_LIMITS, 'stop_variations'])}")
    values = {"baseline_rate": current.baseline_rate, "mde": current.mde}
    for key, (low, high) in PLAN_LIMITS.items():
        if key in raw:
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise InvalidDefinition(f"plan {key} must be a number between {low:g} and {high:g}, got {value!r}")
            values[key] = float(value)
    stop = raw.get("stop_variations", current.stop_variations)
    if not isinstance(stop, bool):
        raise InvalidDefinition(f"plan stop_variations must be true or false, got {stop!r}")
    if values["baseline_rate"] * (1 + values["mde"]) > 1:
        raise InvalidDefinition("the planned MDE would take the rate above 100 %")
    moved = (values["baseline_rate"], values["mde"]) != (current.baseline_rate, current.mde)
    if current.fixed_at is not None and moved:
        raise InvalidDefinition("the experiment has started: its baseline rate and MDE (and so tau2) are fixed; "
                                "create a new experiment to plan differently")
    fresh = planned(values["baseline_rate"], values["mde"], stop)
    return fresh if current.fixed_at is None else replace(current, stop_variations=stop)


def read_plan(conn: MySQLConnectionAbstract, experiment_id: int) -> Plan | None:
    """The stored plan (None: the experiment never set one and has not started)."""
    cursor = conn.cursor()
    cursor.execute(SELECT_PLAN, (experiment_id,))
    row = cursor.fetchone()
    cursor.close()
    if row is None:
        return None
    baseline, mde, tau2, alpha, stop, fixed_at = row
    return Plan(float(baseline), float(mde), float(tau2), float(alpha), bool(stop), fixed_at)


def write_plan(conn: MySQLConnectionAbstract, experiment_id: int, plan: Plan) -> None:
    conn.cursor().execute(UPSERT_PLAN, (experiment_id, plan.baseline_rate, plan.mde, plan.tau2, plan.alpha,
                                        int(plan.stop_variations), plan.fixed_at))


def fix_plan(conn: MySQLConnectionAbstract, experiment_id: int) -> None:
    """At a start: store the plan (if none was set: the default baseline and the guardrails' ``mde``, where
    experiments kept it before plans existed) and fix its tau2 from now on."""
    if read_plan(conn, experiment_id) is None:
        cursor = conn.cursor()
        cursor.execute("SELECT guardrails FROM experiments WHERE id = %s", (experiment_id,))
        (guardrails,) = cursor.fetchone()
        try:
            mde = float(json.loads(guardrails).get("mde", DEFAULT_MDE)) if guardrails else DEFAULT_MDE
            plan = planned(DEFAULT_BASELINE_RATE, mde)
        except (ValueError, TypeError, AttributeError):  # a hand-edited value: the results say why
            plan = Plan()
        write_plan(conn, experiment_id, plan)
    conn.cursor().execute(FIX_PLAN, (experiment_id,))


def plan_snapshot(conn: MySQLConnectionAbstract, experiment_id: int) -> dict[str, Any]:
    """``{"plan": ...}`` for the change history; {} for an experiment without a stored plan."""
    plan = read_plan(conn, experiment_id)
    return {"plan": plan.as_dict()} if plan else {}
