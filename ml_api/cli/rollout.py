"""Safe-rollout subcommands of ``python -m ml_api.cli`` (each change lands in the history).

    python -m ml_api.cli rollout checkout                      # shadow, ramp, guardrails (live window)
    python -m ml_api.cli shadow checkout forest 10             # mirror 10 % of users to model "forest"
    python -m ml_api.cli unshadow checkout
    python -m ml_api.cli ramp checkout 0.05:3600 0.25:3600 0.5:3600 1.0
    python -m ml_api.cli unramp checkout
    python -m ml_api.cli guardrails checkout '{"max_fallback_rate": 0.05, "min_requests": 200}'
    python -m ml_api.cli start checkout                        # resume after a guardrail pause
"""

import argparse
import json
from typing import Any

from ml_api.config import Config
from ml_api.experiments.repository import ExperimentRepository
from ml_api.infra.database import Database
from ml_api.rollout.changes import RolloutRepository
from ml_api.rollout.report import describe_rollout

COMMANDS = ("rollout", "shadow", "unshadow", "ramp", "unramp", "guardrails")


def parse_step(text: str) -> dict[str, float]:
    """``allocation:min_seconds`` (or a bare allocation for the last step)."""
    try:
        allocation, _, seconds = text.partition(":")
        return {"allocation": float(allocation), "min_seconds": float(seconds or 0)}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected allocation:min_seconds, got {text!r}") from None


def parse_json(text: str) -> Any:
    """A JSON value from the command line (the same form the admin API takes)."""
    try:
        return json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected JSON, got {text!r}") from None


def add_commands(sub: Any) -> None:
    """Add the rollout subcommands to the CLI's subparsers."""
    sub.add_parser("rollout", help="show shadow, ramp and guardrail state").add_argument("name")
    shadow = sub.add_parser("shadow", help="mirror a share of users to a shadow model (off the request path)")
    shadow.add_argument("name")
    shadow.add_argument("model", help="a model named in api.env")
    shadow.add_argument("percent", type=float, help="share of users mirrored, 0 < percent <= 100")
    sub.add_parser("unshadow", help="stop mirroring").add_argument("name")
    ramp = sub.add_parser("ramp", help="ramp the traffic allocation up in timed steps")
    ramp.add_argument("name")
    ramp.add_argument("steps", type=parse_step, nargs="+", help="allocation:min_seconds ... (e.g. 0.05:3600 1.0)")
    sub.add_parser("unramp", help="stop the ramp; the allocation stays").add_argument("name")
    guardrails = sub.add_parser("guardrails", help="set the guardrails that pause the experiment when breached")
    guardrails.add_argument("name")
    guardrails.add_argument("thresholds", type=parse_json, help='e.g. \'{"max_fallback_rate": 0.05}\'')


def run(args: argparse.Namespace, repo: ExperimentRepository, config: Config) -> object:
    """Run one rollout subcommand; answers the rollout state."""
    rollouts = RolloutRepository(repo, Database(config.mysql), config.model_files)
    match args.command:
        case "shadow":
            rollouts.set_shadow(args.name, args.model, args.percent, args.actor)
        case "unshadow":
            rollouts.clear_shadow(args.name, args.actor)
        case "ramp":
            rollouts.set_ramp(args.name, args.steps, args.actor)
        case "unramp":
            rollouts.clear_ramp(args.name, args.actor)
        case "guardrails":
            repo.set_guardrails(args.name, args.thresholds, args.actor)
    return describe_rollout(rollouts, args.name)
