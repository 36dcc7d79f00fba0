"""``python -m ml_api.cli models list|validate``: which files serve, and whether a new file can be swapped in.

``validate`` loads every file in a separate process: a model file is a pickle that runs code
when loaded, and a file that crashes or hangs its loader must not take the command with it.
"""

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ml_api.config import Config
from ml_api.serving.model_info import describe_model, describe_registry, sample_features
from ml_api.serving.models import ModelError, ModelRegistry, load_model

INSPECT_TIMEOUT_SECONDS = 120


class Refused(Exception):
    """A model file that must not be swapped in; the message says why."""


def add_commands(sub: Any) -> None:
    models = sub.add_parser("models", help="list the configured models, or validate a model file")
    commands = models.add_subparsers(dest="models_command", required=True)
    commands.add_parser("list", help="every configured model: file, version, sha256, features, load time")
    validate = commands.add_parser("validate", help="load a file in a separate process and predict a sample row")
    validate.add_argument("file", nargs="?", type=Path, help="a model file (default: every file api.env names)")
    validate.add_argument("--name", help="the model name it would serve: its inputs must match the current file's")
    inspect = commands.add_parser("inspect")  # the child process of validate
    inspect.add_argument("file", type=Path)


def run(args: argparse.Namespace, config: Config) -> object:
    match args.models_command:
        case "list":
            return describe_registry(ModelRegistry(config.model_dir, config.model_files,
                                                   trusted_types=config.skops_trusted_types))
        case "inspect":
            return inspect(args.file, config.skops_trusted_types)
        case "validate" if args.file is None:
            return [validate(config.model_dir / file, name, None) for name, file in sorted(config.model_files.items())]
        case "validate":
            current = config.model_files.get(args.name) if args.name else None
            return validate(args.file, args.name or args.file.stem, config.model_dir / current if current else None)
    raise AssertionError(args.models_command)


def inspect(path: Path, trusted_types: Sequence[str]) -> dict[str, Any]:
    """Load ``path`` in this process, describe it and predict a sample row (the child of ``validate``)."""
    model = load_model(path.stem, path.parent, path.name, trusted_types)
    sample = sample_features(model)
    model.inputs.check(model.name, sample)
    prediction = model.predict(sample)
    return {**describe_model(model), "sample": {"features": sample, "prediction": prediction.label}}


def inspect_elsewhere(path: Path) -> dict[str, Any]:
    """``inspect`` in a child process; Refused with the child's reason when it fails."""
    try:
        child = subprocess.run([sys.executable, "-m", "ml_api.cli", "models", "inspect", str(path.resolve())],
                               capture_output=True, text=True, timeout=INSPECT_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise Refused(f"{path.name}: loading and predicting took longer than {INSPECT_TIMEOUT_SECONDS} s") from None
    if child.returncode != 0:
        reason = (child.stderr.strip() or child.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise Refused(f"{path.name}: {reason[0].removeprefix('refused: ')}")
    return json.loads(child.stdout)


def validate(path: Path, name: str, current: Path | None) -> dict[str, Any]:
    """The file's description; Refused when it fails to load or predict, or takes other inputs than ``current``."""
    found = inspect_elsewhere(path)
    if current is not None and current.resolve() != path.resolve():
        serving = inspect_elsewhere(current)
        if inputs_of(found) != inputs_of(serving):
            raise Refused(f"{path.name} takes {describe_inputs(found)}, but the experiments using {name!r} send "
                          f"what {current.name} takes: {describe_inputs(serving)}")
    return found


def inputs_of(described: dict[str, Any]) -> tuple:
    return described["feature_count"], [(f["name"], f["type"]) for f in described.get("features", [])]


def describe_inputs(described: dict[str, Any]) -> str:
    features = described.get("features")
    if not features:
        return f"a list of {described['feature_count']} numbers"
    return "the columns " + ", ".join(f"{f['name']} ({f['type']})" for f in features)


__all__ = ["ModelError", "Refused", "add_commands", "run"]
