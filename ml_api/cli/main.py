"""Experiments from the command line; every change lands in the change history.

    python -m ml_api.cli list
    python -m ml_api.cli create checkout-model --variant control:logreg:70 --variant variation:forest:30 --start
    python -m ml_api.cli set-weights checkout-model control=50 variation=50
    python -m ml_api.cli set-traffic checkout-model 0.2
    python -m ml_api.cli start|pause|stop checkout-model
    python -m ml_api.cli force checkout-model user-42 variation
    python -m ml_api.cli unforce checkout-model user-42
    python -m ml_api.cli history checkout-model
    python -m ml_api.cli metrics checkout-model ['{"primary": {...}, "secondary": [...], "guardrails": [...]}']
    python -m ml_api.cli rollout|shadow|unshadow|ramp|unramp|guardrails ...   # see ml_api/cli/rollout.py
    python -m ml_api.cli init-db          # apply the schema, seed the default experiment
    python -m ml_api.cli shell-env        # settings as shell assignments, for scripts
    python -m ml_api.cli models list      # every configured model: file, version, sha256, features
    python -m ml_api.cli models validate [FILE] [--name NAME]   # load in a separate process, predict a sample row
"""

import argparse
import getpass
import json
import os
import shlex
import sys
from collections.abc import Sequence

from assigner import ExperimentStatus
from ml_api.cli import models as models_cli
from ml_api.cli import rollout as rollout_cli
from ml_api.cli.failure import report_failure
from ml_api.config import Config, load_config, read_settings
from ml_api.errors import GatewayError
from ml_api.experiments.definitions import STATUS_OF_ACTION, VariantSpec, describe
from ml_api.infra.database import Database, apply_schema
from ml_api.serving.requests import checked_user_id
from ml_api.cli.changes import open_events, repository
from ml_api.telemetry.events import EventEmitter

DEMO_VARIANTS = [VariantSpec("control", 50, "logreg"), VariantSpec("variation", 50, "forest")]
# The iris demo's metrics: the default outcome conversion (primary) and its mean, plus a revenue mean the load
# test posts; the primary is the default one, so an iris-models created before metrics existed can declare these.
DEMO_METRICS = {"primary": {"name": "outcome", "type": "conversion"},
                "secondary": [{"name": "outcome_value", "type": "mean", "source": "outcome"},
                              {"name": "revenue", "type": "mean", "cap": {"quantile": 0.99}}]}
CHURN_EXPERIMENT = "churn-models"  # the named-feature demo: Pipelines on telecom-style columns
CHURN_VARIANTS = [VariantSpec("control", 50, "churn_logreg"), VariantSpec("variation", 50, "churn_boost")]


def parse_variant(text: str) -> VariantSpec:
    """``name:model:weight`` from the command line."""
    try:
        name, model, weight = text.split(":")
        return VariantSpec(name, float(weight), model)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected name:model:weight, got {text!r}") from None


def parse_weight(text: str) -> tuple[str, float]:
    try:
        name, weight = text.split("=")
        return name, float(weight)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected variant=weight, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ml_api.cli", description="Manage experiments.")
    parser.add_argument("--actor", default=f"cli:{getpass.getuser()}", help="who makes the change (history)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("init-db", help="apply mysql/schema.sql and seed the default experiment")
    sub.add_parser("shell-env", help="print every setting as a shell assignment")
    sub.add_parser("list", help="list experiments")
    for command in ("show", "history", "start", "pause", "stop"):
        sub.add_parser(command).add_argument("name")
    create = sub.add_parser("create", help="create an experiment (draft unless --start)")
    create.add_argument("name")
    create.add_argument("--variant", type=parse_variant, action="append", required=True, help="name:model:weight")
    create.add_argument("--default", help="default variant (the first one if omitted)")
    create.add_argument("--traffic", type=float, default=1.0, help="share of users in the experiment, 0..1")
    create.add_argument("--start", action="store_true", help="start it right away")
    create.add_argument("--metrics", type=rollout_cli.parse_json,
                        help="the metrics declaration (JSON, as the admin API takes it)")
    metrics = sub.add_parser("metrics", help="show the experiment's metrics, or declare them (JSON)")
    metrics.add_argument("name")
    metrics.add_argument("declaration", type=rollout_cli.parse_json, nargs="?",
                         help='e.g. \'{"primary": {"name": "converted", "type": "conversion"}}\'')
    weights = sub.add_parser("set-weights")
    weights.add_argument("name")
    weights.add_argument("weights", type=parse_weight, nargs="+", help="variant=weight ...")
    traffic = sub.add_parser("set-traffic")
    traffic.add_argument("name")
    traffic.add_argument("allocation", type=float)
    force = sub.add_parser("force", help="force a user's variant (QA); excluded from statistics")
    force.add_argument("name")
    force.add_argument("user_id")
    force.add_argument("variant")
    unforce = sub.add_parser("unforce")
    unforce.add_argument("name")
    unforce.add_argument("user_id")
    rollout_cli.add_commands(sub)
    models_cli.add_commands(sub)
    return parser


def init_db(config: Config, events: EventEmitter) -> None:
    """Apply the schema and create the demo experiments that do not exist (churn-models only when its models are named)."""
    db = Database(config.mysql)
    with db.connection() as conn:
        apply_schema(conn)
    repo = repository(config, events, db)
    existing = repo.all()
    for name, variants in {config.default_experiment: DEMO_VARIANTS, CHURN_EXPERIMENT: CHURN_VARIANTS}.items():
        if name in existing or not {v.model for v in variants} <= set(config.model_files):
            continue
        repo.create(name, variants, actor="init-db", status=ExperimentStatus.RUNNING,
                    metrics=DEMO_METRICS if name == config.default_experiment else None)
        models = ", ".join(f"{v.name}: {v.model}" for v in variants)
        print(f"created experiment {name!r} ({models}, 50/50)")
    print(f"schema applied to {config.mysql.database} on {config.mysql.host}:{config.mysql.port}")


def run(args: argparse.Namespace, config: Config, events: EventEmitter) -> object:
    repo = repository(config, events)
    actor = args.actor
    match args.command:
        case "list":
            return [describe(e) | {"salt": "<hidden>"} for e in sorted(repo.all().values(), key=lambda e: e.name)]
        case "show":
            return describe(repo.get(args.name))
        case "history":
            return repo.history(args.name)
        case "create":
            status = ExperimentStatus.RUNNING if args.start else ExperimentStatus.DRAFT
            created = repo.create(args.name, args.variant, actor, args.default, args.traffic, status=status,
                                  metrics=args.metrics)
            return describe(created) | {"metrics": repo.metrics(args.name).as_dict()}
        case "metrics":
            if args.declaration is not None:
                repo.set_metrics(args.name, args.declaration, actor)
            return repo.metrics(args.name).as_dict()
        case "start" | "pause" | "stop":
            return describe(repo.set_status(args.name, STATUS_OF_ACTION[args.command], actor))
        case "set-weights":
            return describe(repo.set_weights(args.name, dict(args.weights), actor))
        case "set-traffic":
            return describe(repo.set_traffic_allocation(args.name, args.allocation, actor))
        case "force":  # the same user id rules as the API's
            user_id = checked_user_id(args.user_id, config.max_user_id_length)
            return describe(repo.force_variant(args.name, user_id, args.variant, actor))
        case "unforce":
            user_id = checked_user_id(args.user_id, config.max_user_id_length)
            return describe(repo.clear_override(args.name, user_id, actor))
        case command if command in rollout_cli.COMMANDS:
            return rollout_cli.run(args, repo, config)
    raise AssertionError(args.command)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "shell-env":
        for key, value in read_settings(os.environ).items():
            print(f"{key}={shlex.quote(value)}")
        return 0
    config = load_config(os.environ)
    if args.command == "models":  # no MySQL needed
        try:
            print(json.dumps(models_cli.run(args, config), indent=2, default=str))
            return 0
        except (models_cli.Refused, models_cli.ModelError, GatewayError) as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return 1
    events = open_events(config)
    try:
        if args.command == "init-db":
            init_db(config, events)
            return 0
        print(json.dumps(run(args, config, events), indent=2, default=str))
        return 0
    except GatewayError as exc:  # unknown experiment, refused definition, MySQL away
        return report_failure(exc)
    finally:
        events.close()  # delivered, or kept in the disk buffer the gateway's workers drain

