"""``python -m ml_api.cli models list|validate``: which files serve, and whether a new file can be swapped in.

``validate`` loads the files in a child process (one for them all; one per file when one takes
it down): a joblib model file is a pickle that runs code when loaded, and a file that crashes
or hangs its loader must not take the command with it. It also reads the experiments from
MySQL, to refuse a file that does not take what the experiments using its name send.
"""

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mysql.connector

from assigner import Experiment
from ml_api.config import Config
from ml_api.errors import DatabaseUnavailable
from ml_api.experiments.repository import load_experiments
from ml_api.infra.database import Database
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
    validate.add_argument("--name", help="the model name it would serve: it must take what the experiments using "
                                         "that name send (default: the file's stem)")
    inspect = commands.add_parser("inspect")  # the child process of validate
    inspect.add_argument("file", type=Path, nargs="+")


def run(args: argparse.Namespace, config: Config) -> object:
    match args.models_command:
        case "list":
            return describe_registry(ModelRegistry(config.model_dir, config.model_files,
                                                   trusted_types=config.skops_trusted_types))
        case "inspect":
            return inspect_all(args.file, config.skops_trusted_types)
        case "validate" if args.file is None:
            return validate_configuration(config)
        case "validate":
            name = args.name or args.file.stem
            current = config.model_files.get(name)
            return validate_file(args.file, name, config, config.model_dir / current if current else None)
    raise AssertionError(args.models_command)


def inspect(path: Path, trusted_types: Sequence[str]) -> dict[str, Any]:
    """Load ``path`` in this process, describe it and predict a sample row (the child of ``validate``)."""
    model = load_model(path.stem, path.parent, path.name, trusted_types)
    sample = sample_features(model)
    model.inputs.check(model.name, sample)
    prediction = model.predict(sample)
    return {**describe_model(model), "sample": {"features": sample, "prediction": prediction.label}}


def inspect_all(paths: Sequence[Path], trusted_types: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``inspect`` each file (the child of ``validate``): its description, or ``{"refused": reason}``."""
    found: dict[str, dict[str, Any]] = {}
    for path in paths:
        try:
            found[str(path)] = inspect(path, trusted_types)
        except Exception as exc:  # whatever a model file's code raises: the file is refused, the others go on
            found[str(path)] = {"refused": str(exc)}
    return found


def inspect_elsewhere(paths: Sequence[Path]) -> dict[Path, dict[str, Any] | Refused]:
    """``inspect_all`` in one child process (one import of scikit-learn for them all); a file that takes the
    child down (a crash, a hang) is found by inspecting each file in a child of its own."""
    resolved = [path.resolve() for path in paths]
    try:
        child = subprocess.run([sys.executable, "-m", "ml_api.cli", "models", "inspect", *map(str, resolved)],
                               capture_output=True, text=True, timeout=INSPECT_TIMEOUT_SECONDS * len(paths))
    except subprocess.TimeoutExpired:
        child = None
    if child is None or child.returncode != 0:
        if len(paths) > 1:
            return {path: result for one in paths for path, result in inspect_elsewhere([one]).items()}
        if child is None:
            return {paths[0]: Refused(f"{paths[0].name}: loading and predicting took longer than "
                                      f"{INSPECT_TIMEOUT_SECONDS} s")}
        reason = (child.stderr.strip() or child.stdout.strip()).splitlines()[-1:] or ["no output"]
        return {paths[0]: Refused(f"{paths[0].name}: {reason[0].removeprefix('refused: ')}")}
    found = json.loads(child.stdout)
    return {path: Refused(f"{path.name}: {entry['refused']}") if "refused" in entry else entry
            for path, entry in zip(paths, (found[str(r)] for r in resolved))}


class Inspections:
    """``inspect_elsewhere`` once per file; ``prefetch`` inspects many in one child process (each child costs
    an import of scikit-learn)."""

    def __init__(self) -> None:
        self._found: dict[Path, dict[str, Any] | Refused] = {}

    def prefetch(self, paths: Sequence[Path]) -> None:
        wanted = list({path.resolve(): path for path in paths if path.resolve() not in self._found}.values())
        if wanted:
            self._found.update({path.resolve(): result for path, result in inspect_elsewhere(wanted).items()})

    def __call__(self, path: Path) -> dict[str, Any]:
        self.prefetch([path])
        result = self._found[path.resolve()]
        if isinstance(result, Refused):
            raise result
        return result


def validate_file(path: Path, name: str, config: Config, serving: Path | None) -> dict[str, Any]:
    """The file's description; Refused when it fails to load or predict, or does not fit the experiments using
    ``name`` with the other files api.env names (or, for an experiment of this model alone, ``serving``)."""
    inspected = Inspections()
    files = {**configured_files(config), name: path}
    inspected.prefetch([path, *files.values(), *([serving] if serving else [])])
    found = inspected(path)
    check_fit(name, files, using(read_experiments(config), name), inspected, serving)
    return found


def validate_configuration(config: Config) -> list[dict[str, Any]]:
    """Every file api.env names (the check of ``make reload``): each loads and predicts, and each fits the
    experiments using its name, beside the other files api.env names and against the file it replaces."""
    inspected = Inspections()
    files, serving = configured_files(config), last_good_files(config)
    inspected.prefetch([*files.values(), *(path for path in serving.values() if path.is_file())])
    described = [inspected(files[name]) for name in sorted(files)]
    experiments = read_experiments(config)
    for name in sorted(files):
        check_fit(name, files, using(experiments, name), inspected, serving.get(name))
    return described


def check_fit(name: str, files: dict[str, Path], experiments: list[Experiment] | None,
              inspected: Inspections, serving: Path | None) -> None:
    """Refused unless ``files[name]`` takes what each experiment using ``name`` sends: what its other models take
    (as ``files`` has them), or for an experiment of this model alone, what ``serving`` takes. Without the
    experiments (MySQL away) the file must take what ``serving`` takes."""
    path = files[name]
    found = inspected(path)
    alone = experiments is None or any(set(v.model for v in e.variants) == {name} for e in experiments)
    if alone and serving is not None and serving.resolve() != path.resolve() and serving.is_file():
        before = inspected(serving)
        if inputs_of(found) != inputs_of(before):
            raise Refused(f"{path.name} takes {describe_inputs(found)}, but the experiments using {name!r} send "
                          f"what {serving.name} takes: {describe_inputs(before)}")
    for experiment in experiments or []:
        for partner in sorted({v.model for v in experiment.variants} - {name}):
            if partner not in files:
                continue  # not configured: that experiment's own problem, not this file's
            try:
                theirs = inspected(files[partner])
            except Refused:
                continue  # a broken partner is refused on its own
            if inputs_of(found) != inputs_of(theirs):
                raise Refused(f"{path.name} takes {describe_inputs(found)}, but experiment {experiment.name!r} "
                              f"also answers with {partner!r} ({files[partner].name}), which takes "
                              f"{describe_inputs(theirs)}: every model of an experiment must take the same request")


def configured_files(config: Config) -> dict[str, Path]:
    return {name: config.model_dir / file for name, file in config.model_files.items()}


def read_experiments(config: Config) -> list[Experiment] | None:
    """Every experiment in MySQL, any status; None (and a warning) when MySQL cannot be read."""
    db = Database(config.mysql)
    try:
        with db.connection() as conn:
            return list(load_experiments(conn).values())
    except (DatabaseUnavailable, mysql.connector.Error) as exc:  # away, or refusing these credentials
        print(f"warning: cannot read the experiments ({exc}); each file is checked against the file it replaces "
              "only", file=sys.stderr)
        return None
    finally:
        db.close()


def using(experiments: list[Experiment] | None, name: str) -> list[Experiment] | None:
    """The experiments with a variant served by ``name`` (None: not known)."""
    if experiments is None:
        return None
    return [e for e in experiments if any(v.model == name for v in e.variants)]


def last_good_files(config: Config) -> dict[str, Path]:
    """The file each model name last loaded from in the running workers (MODEL_STATE_PATH), if known."""
    try:
        state = json.loads(config.model_state_path.read_text())
    except (OSError, ValueError):
        return {}
    return {name: config.model_dir / file for name, file in dict(state).items()}


def inputs_of(described: dict[str, Any]) -> tuple:
    return described["feature_count"], [(f["name"], f["type"]) for f in described.get("features", [])]


def describe_inputs(described: dict[str, Any]) -> str:
    features = described.get("features")
    if not features:
        return f"a list of {described['feature_count']} numbers"
    return "the columns " + ", ".join(f"{f['name']} ({f['type']})" for f in features)


__all__ = ["ModelError", "Refused", "add_commands", "run"]
