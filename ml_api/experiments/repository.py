"""Reading and changing experiment definitions in MySQL, with an append-only history.

Every change runs in one transaction that locks the experiment row, applies the change,
bumps ``version`` (which every worker polls) and appends a row to ``experiment_changes``
with the definition before and after. Once it has committed, the same change goes to the
repository's listener (``changes.Committed``): the gateway and the CLI turn it into an
``experiment_change`` event, so every path that changes an experiment reports it the same way.
"""

import json
import secrets
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from mysql.connector.abstracts import MySQLConnectionAbstract

from assigner import Experiment, ExperimentStatus
from ml_api.errors import InvalidDefinition, UnknownExperiment
from ml_api.experiments.changes import Committed, Listener, notify
from ml_api.experiments.definitions import (
    ACTION_OF_STATUS,
    VariantSpec,
    check_name,
    describe,
    parse_allocation,
    parse_guardrails,
    parse_salt,
    parse_status,
    parse_weight,
    parse_weights,
    to_experiment,
)
from ml_api.experiments.metrics import (
    MetricSet,
    check_primary_kept,
    metrics_snapshot,
    parse_metrics,
    read_metrics,
    write_metrics,
)
from ml_api.experiments.plans import Plan, fix_plan, parse_plan, plan_snapshot, read_plan, write_plan
from ml_api.experiments.verdicts import verdicts_snapshot
from ml_api.infra.database import Database
from ml_api.rollout.store import resume_rollout, rollout_snapshot


def load_experiments(conn: MySQLConnectionAbstract) -> dict[str, Experiment]:
    """Every experiment definition, with variants and overrides, keyed by name."""
    cursor = conn.cursor(dictionary=True)
    cursor.execute("SELECT id, name, status, salt, traffic_allocation, default_variant FROM experiments")
    rows = cursor.fetchall()
    cursor.execute("SELECT experiment_id, name, weight, model_name FROM variants ORDER BY experiment_id, position")
    variants = defaultdict(list)
    for variant in cursor.fetchall():
        variants[variant["experiment_id"]].append(variant)
    cursor.execute("SELECT experiment_id, user_id, variant FROM overrides")
    overrides: dict[int, dict[str, str]] = defaultdict(dict)
    for override in cursor.fetchall():
        overrides[override["experiment_id"]][override["user_id"]] = override["variant"]
    cursor.close()
    return {row["name"]: to_experiment(row, variants[row["id"]], overrides[row["id"]]) for row in rows}


def definitions_version(conn: MySQLConnectionAbstract) -> tuple[int, int]:
    """A cheap fingerprint that changes whenever any definition changes."""
    cursor = conn.cursor()
    cursor.execute("SELECT COUNT(*), COALESCE(SUM(version), 0) FROM experiments")
    count, total = cursor.fetchone()
    cursor.close()
    return int(count), int(total)


class ExperimentRepository:
    """Experiment CRUD for the CLI and the admin API; ``known_models`` guards model names, and
    ``on_change`` hears of every committed change."""

    def __init__(self, db: Database, known_models: Iterable[str], on_change: Listener | None = None) -> None:
        self._db = db
        self._known_models = set(known_models)
        self._on_change = on_change

    def all(self) -> dict[str, Experiment]:
        with self._db.connection() as conn:
            return load_experiments(conn)

    def get(self, name: str) -> Experiment:
        experiment = self.all().get(name)
        if experiment is None:
            raise UnknownExperiment(name)
        return experiment

    def create(
        self,
        name: str,
        variants: list[VariantSpec],
        actor: str,
        default_variant: str | None = None,
        traffic_allocation: float = 1.0,
        salt: str | None = None,
        status: ExperimentStatus | str = ExperimentStatus.DRAFT,
        metrics: Any = None,
    ) -> Experiment:
        """Create an experiment; the default variant is the first (the control) unless named.
        ``metrics``: a declaration (``experiments.metrics.parse_metrics``), None for the default metrics."""
        check_name("experiment", name)
        status = parse_status(status)
        declared = parse_metrics(metrics) if metrics is not None else None
        default_variant = variants[0].name if default_variant is None else check_name("default variant", default_variant)
        if default_variant not in {v.name for v in variants}:
            raise InvalidDefinition(f"default_variant {default_variant!r} is not one of the variants")
        for variant in variants:  # the CLI builds specs itself: validate them here too
            check_name("variant", variant.name)
            parse_weight(variant.name, variant.weight)
        if sum(v.weight for v in variants) <= 0:
            raise InvalidDefinition("variant weights must add up to more than zero")
        unknown = {v.model for v in variants} - self._known_models
        if unknown:
            raise InvalidDefinition(f"unknown model(s) {sorted(unknown)}; configured: {sorted(self._known_models)}")
        traffic_allocation = parse_allocation(traffic_allocation)
        with self._db.transaction() as conn:
            cursor = conn.cursor()
            cursor.execute("SELECT id FROM experiments WHERE name = %s", (name,))
            if cursor.fetchone():
                raise InvalidDefinition(f"an experiment named {name!r} already exists")
            cursor.execute(
                "INSERT INTO experiments (name, status, salt, traffic_allocation, default_variant, started_at)"
                " VALUES (%s, %s, %s, %s, %s, IF(%s = 'running', CURRENT_TIMESTAMP(3), NULL))",
                (name, status.value, secrets.token_hex(8) if salt is None else parse_salt(salt), traffic_allocation,
                 default_variant, status.value),
            )
            experiment_id = cursor.lastrowid
            cursor.executemany(
                "INSERT INTO variants (experiment_id, name, position, weight, model_name) VALUES (%s, %s, %s, %s, %s)",
                [(experiment_id, v.name, i, v.weight, v.model) for i, v in enumerate(variants)],
            )
            if declared is not None:
                write_metrics(conn, experiment_id, declared)
            if status is ExperimentStatus.RUNNING:
                fix_plan(conn, experiment_id)
            after = _load_one(conn, name)
            after_state = _snapshot(conn, after)
            _append_change(conn, experiment_id, actor, "create", None, after_state)
        notify(self._on_change, Committed(name, "create", actor, None, after_state))
        return after

    def set_weights(self, name: str, weights: Any, actor: str) -> Experiment:
        """New weights for the existing variants; assigned users keep their variant."""

        def change(conn: MySQLConnectionAbstract, before: Experiment) -> None:
            parsed = parse_weights(weights, before.variant_names)
            conn.cursor().executemany(
                "UPDATE variants SET weight = %s WHERE experiment_id = %s AND name = %s",
                [(weight, before.id, variant) for variant, weight in parsed.items()],
            )

        return self.apply_change(name, "set_weights", actor, change)

    def set_traffic_allocation(self, name: str, allocation: Any, actor: str) -> Experiment:
        def change(conn: MySQLConnectionAbstract, before: Experiment) -> None:
            conn.cursor().execute(
                "UPDATE experiments SET traffic_allocation = %s WHERE id = %s", (parse_allocation(allocation), before.id)
            )

        return self.apply_change(name, "set_traffic_allocation", actor, change)

    def set_status(self, name: str, status: Any, actor: str) -> Experiment:
        """Start, pause or stop. A stopped experiment stays stopped."""
        new_status = parse_status(status)

        def change(conn: MySQLConnectionAbstract, before: Experiment) -> None:
            if before.status is ExperimentStatus.STOPPED and new_status is not ExperimentStatus.STOPPED:
                raise InvalidDefinition(f"experiment {name!r} is stopped; create a new experiment instead")
            if new_status is ExperimentStatus.DRAFT and before.status is not ExperimentStatus.DRAFT:
                raise InvalidDefinition("an experiment that has started cannot go back to draft")
            if new_status is ExperimentStatus.RUNNING and before.status is not ExperimentStatus.RUNNING:
                resume_rollout(conn, before.id)  # clears a guardrail pause, restarts the ramp step
                fix_plan(conn, before.id)  # tau2 is fixed from the first start on
            conn.cursor().execute(
                "UPDATE experiments SET status = %s,"
                " started_at = COALESCE(started_at, IF(%s = 'running', CURRENT_TIMESTAMP(3), NULL)) WHERE id = %s",
                (new_status.value, new_status.value, before.id),
            )

        # The history names the change with the API's and the CLI's verb (start, pause, stop).
        return self.apply_change(name, ACTION_OF_STATUS.get(new_status, new_status.value), actor, change)

    def set_salt(self, name: str, salt: Any, actor: str) -> Experiment:
        """A new salt reshuffles every user, so it is allowed only before the experiment starts."""

        def change(conn: MySQLConnectionAbstract, before: Experiment) -> None:
            if before.status is not ExperimentStatus.DRAFT:
                raise InvalidDefinition(
                    f"experiment {name!r} has started: changing its salt would move every user; create a new experiment"
                )
            conn.cursor().execute("UPDATE experiments SET salt = %s WHERE id = %s", (parse_salt(salt), before.id))

        return self.apply_change(name, "set_salt", actor, change)

    def set_guardrails(self, name: str, guardrails: Any, actor: str) -> Experiment:
        """Replace the guardrail thresholds (see definitions.GUARDRAIL_LIMITS)."""

        def change(conn: MySQLConnectionAbstract, before: Experiment) -> None:
            conn.cursor().execute(
                "UPDATE experiments SET guardrails = %s WHERE id = %s",
                (json.dumps(parse_guardrails(guardrails)), before.id),
            )

        return self.apply_change(name, "set_guardrails", actor, change)

    def set_plan(self, name: str, plan: Any, actor: str) -> Experiment:
        """Set what the experiment is planned to detect (tau2 follows), or switch stop_variations.

        Baseline rate and MDE are refused once the experiment has started: tau2 is fixed then."""

        def change(conn: MySQLConnectionAbstract, before: Experiment) -> None:
            write_plan(conn, before.id, parse_plan(plan, read_plan(conn, before.id) or Plan()))

        return self.apply_change(name, "set_plan", actor, change)

    def set_metrics(self, name: str, metrics: Any, actor: str) -> Experiment:
        """Declare the experiment's metrics (see ``experiments.metrics``); the primary is fixed once started."""
        parsed = parse_metrics(metrics)

        def change(conn: MySQLConnectionAbstract, before: Experiment) -> None:
            check_primary_kept(read_metrics(conn, before.id), parsed, before.status is not ExperimentStatus.DRAFT)
            write_metrics(conn, before.id, parsed)

        return self.apply_change(name, "set_metrics", actor, change)

    def metrics(self, name: str) -> MetricSet:
        """The declared metrics, or the default ones."""
        with self._db.connection() as conn:
            return read_metrics(conn, self.get(name).id)

    def plan(self, name: str) -> Plan:
        """The stored plan, or the default one an experiment gets at its start when it sets none."""
        with self._db.connection() as conn:
            return read_plan(conn, self.get(name).id) or Plan()

    def guardrails(self, name: str) -> dict[str, float]:
        """The stored guardrail thresholds ({} when none were set)."""
        with self._db.connection() as conn:
            cursor = conn.cursor()
            cursor.execute("SELECT guardrails FROM experiments WHERE name = %s", (name,))
            row = cursor.fetchone()
        if row is None:
            raise UnknownExperiment(name)
        return json.loads(row[0]) if row[0] else {}

    def force_variant(self, name: str, user_id: str, variant: str, actor: str) -> Experiment:
        """Force ``variant`` for one user (QA); such users are excluded from the statistics."""

        def change(conn: MySQLConnectionAbstract, before: Experiment) -> None:
            if variant not in before.variant_names:
                raise InvalidDefinition(f"unknown variant {variant!r}; variants: {list(before.variant_names)}")
            conn.cursor().execute(
                "INSERT INTO overrides (experiment_id, user_id, variant) VALUES (%s, %s, %s)"
                " ON DUPLICATE KEY UPDATE variant = VALUES(variant)",
                (before.id, user_id, variant),
            )

        return self.apply_change(name, "force_variant", actor, change)

    def clear_override(self, name: str, user_id: str, actor: str) -> Experiment:
        def change(conn: MySQLConnectionAbstract, before: Experiment) -> None:
            conn.cursor().execute("DELETE FROM overrides WHERE experiment_id = %s AND user_id = %s", (before.id, user_id))

        return self.apply_change(name, "clear_override", actor, change)

    def history(self, name: str) -> list[dict[str, Any]]:
        """Every change of an experiment, oldest first."""
        with self._db.connection() as conn:
            cursor = conn.cursor(dictionary=True)
            cursor.execute(
                "SELECT c.id, c.changed_at, c.actor, c.action, c.before_state, c.after_state"
                " FROM experiment_changes c JOIN experiments e ON e.id = c.experiment_id"
                " WHERE e.name = %s ORDER BY c.id",
                (name,),
            )
            rows = cursor.fetchall()
        return [
            {
                "id": row["id"],
                "changed_at": row["changed_at"].isoformat() + "Z",
                "actor": row["actor"],
                "action": row["action"],
                "before": json.loads(row["before_state"]) if row["before_state"] else None,
                "after": json.loads(row["after_state"]) if row["after_state"] else None,
            }
            for row in rows
        ]

    def apply_change(
        self, name: str, action: str, actor: str, apply: Callable[[MySQLConnectionAbstract, Experiment], None]
    ) -> Experiment:
        """Run ``apply`` in one transaction that locks the experiment, bumps its version and
        appends a history row with the definition before and after; returns the new one.

        A deadlock or lock wait timeout runs the whole transaction again (``Database.retrying``);
        the listener hears of the change once, after the commit."""
        after, change = self._db.retrying(lambda: self._apply_once(name, action, actor, apply))
        notify(self._on_change, change)
        return after

    def _apply_once(
        self, name: str, action: str, actor: str, apply: Callable[[MySQLConnectionAbstract, Experiment], None]
    ) -> tuple[Experiment, Committed]:
        with self._db.transaction() as conn:
            cursor = conn.cursor()
            cursor.execute("SELECT id FROM experiments WHERE name = %s FOR UPDATE", (name,))
            if cursor.fetchone() is None:
                raise UnknownExperiment(name)
            before = _load_one(conn, name)
            before_state = _snapshot(conn, before)
            apply(conn, before)
            cursor.execute(
                "UPDATE experiments SET version = version + 1, updated_at = CURRENT_TIMESTAMP(3) WHERE id = %s",
                (before.id,),
            )
            after = _load_one(conn, name)
            after_state = _snapshot(conn, after)
            _append_change(conn, before.id, actor, action, before_state, after_state)
        return after, Committed(name, action, actor, before_state, after_state)


def _load_one(conn: MySQLConnectionAbstract, name: str) -> Experiment:
    # Loading all is fine here: changes are rare and the table is small.
    return load_experiments(conn)[name]


def _snapshot(conn: MySQLConnectionAbstract, experiment: Experiment) -> dict[str, Any]:
    """The full definition for the history: what the assigner uses, the guardrails, the rollout, the plan,
    the declared metrics and the verdicts given (the last three once there are any)."""
    cursor = conn.cursor()
    cursor.execute("SELECT guardrails FROM experiments WHERE id = %s", (experiment.id,))
    (guardrails,) = cursor.fetchone()
    return (describe(experiment) | {"guardrails": json.loads(guardrails) if guardrails else {}}
            | rollout_snapshot(conn, experiment.id) | plan_snapshot(conn, experiment.id)
            | metrics_snapshot(conn, experiment.id) | verdicts_snapshot(conn, experiment.id))


def _append_change(
    conn: MySQLConnectionAbstract, experiment_id: int, actor: str, action: str, before: Any, after: Any
) -> None:
    conn.cursor().execute(
        "INSERT INTO experiment_changes (experiment_id, actor, action, before_state, after_state)"
        " VALUES (%s, %s, %s, %s, %s)",
        (experiment_id, actor[:128], action, json.dumps(before) if before else None, json.dumps(after)),
    )
