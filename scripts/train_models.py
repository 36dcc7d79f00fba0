"""Train the demo models: iris (ships with scikit-learn) and synthetic telecom churn (fixed seed).

Writes joblib bundles ``{"estimator", "metadata"}`` into the model directory, with name,
version, feature names (and types), classes, training date and hold-out accuracy:

* ``iris-models``: control ``iris-logreg-v1.joblib`` (LogisticRegression), variation
  ``iris-forest-v1.joblib`` (RandomForestClassifier), fitted on a bare array (list features);
* ``churn-models``: control ``churn-logreg-v1.joblib``, variation ``churn-boost-v1.joblib``,
  Pipelines (imputation, scaling, one-hot encoding, then LogisticRegression or
  GradientBoostingClassifier) fitted on a DataFrame (named features).

    python scripts/train_models.py [--out-dir models] [--if-missing]
    python scripts/train_models.py --model forest --version v2    # a new version: iris-forest-v2.joblib
    python scripts/train_models.py --model churn_boost --version v2 --format skops   # churn-boost-v2.skops
"""

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import joblib
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

if __package__ in (None, ""):  # run as a file (python scripts/train_models.py): the project's packages too
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts import demo_data  # noqa: E402

SEED = 42


@dataclass(frozen=True)
class DemoModel:
    name: str  # the model name of api.env (MODEL_<NAME>)
    stem: str  # the file is <stem>-<version>.joblib
    data: Callable[[int], demo_data.Split]
    make: Callable[[int], Any]  # seed -> unfitted estimator


DEMO_MODELS = [
    DemoModel("logreg", "iris-logreg", demo_data.iris, lambda seed: LogisticRegression(max_iter=1000, random_state=seed)),
    DemoModel("forest", "iris-forest", demo_data.iris,
              lambda seed: RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1)),
    DemoModel("churn_logreg", "churn-logreg", demo_data.churn,
              lambda seed: make_pipeline(demo_data.churn_preprocessing(), LogisticRegression(max_iter=1000))),
    DemoModel("churn_boost", "churn-boost", demo_data.churn,
              lambda seed: make_pipeline(demo_data.churn_preprocessing(),
                                         GradientBoostingClassifier(n_estimators=150, max_depth=3, random_state=seed))),
]

DEMO_BY_NAME = {model.name: model for model in DEMO_MODELS}


FORMATS = ("joblib", "skops")


def train_one(model: DemoModel, out_dir: Path, version: str = "v1", seed: int = SEED,
              file_format: str = "joblib") -> Path:
    """Fit one demo model on its data (split with ``SEED``, so every version sees the same rows) and save it
    (``skops``: a file the gateway reads without running code, see SKOPS_TRUSTED_TYPES)."""
    split = model.data(SEED)
    estimator = model.make(seed).fit(split.x_train, split.y_train)
    metadata = {
        "name": model.name,
        "version": version,
        "algorithm": type(estimator[-1] if hasattr(estimator, "steps") else estimator).__name__,
        "feature_names": split.feature_names,
        "classes": [str(c) for c in estimator.classes_],
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "holdout_accuracy": float(estimator.score(split.x_test, split.y_test)),
        "training_rows": len(split.x_train),
        "seed": seed,
    }
    if split.feature_types:
        metadata["feature_types"] = split.feature_types
    path = out_dir / f"{model.stem}-{version}.{file_format}"
    bundle = {"estimator": estimator, "metadata": metadata}
    if file_format == "skops":
        import skops.io  # only here: importing it lists every scikit-learn estimator (seconds)

        skops.io.dump(bundle, path)
    else:
        joblib.dump(bundle, path)
    print(f"trained {model.name} {version}: hold-out accuracy {metadata['holdout_accuracy']:.3f} -> {path}")
    return path


def train(out_dir: Path, if_missing: bool = False) -> list[Path]:
    """Fit and save every demo model's v1; with ``if_missing``, keep files that exist."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return [train_one(model, out_dir) for model in DEMO_MODELS
            if not (if_missing and (out_dir / f"{model.stem}-v1.joblib").exists())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent.parent / "models")
    parser.add_argument("--if-missing", action="store_true", help="only train models whose file is missing")
    parser.add_argument("--model", choices=list(DEMO_BY_NAME), help="train only this model")
    parser.add_argument("--version", default="v1", help="version written into the bundle and the file name")
    parser.add_argument("--seed", type=int, help="the estimator's random seed (default: 42 for v1, else derived "
                                                 "from the version, so a new version is a different model)")
    parser.add_argument("--format", choices=FORMATS, default="joblib",
                        help="joblib (a pickle) or skops (read without running code)")
    args = parser.parse_args(argv)
    if args.model is None and args.version == "v1" and args.format == "joblib":
        train(args.out_dir, args.if_missing)
        return 0
    args.out_dir.mkdir(parents=True, exist_ok=True)
    seed = args.seed if args.seed is not None else SEED + (0 if args.version == "v1" else sum(map(ord, args.version)))
    for model in [DEMO_BY_NAME[args.model]] if args.model else DEMO_MODELS:
        train_one(model, args.out_dir, args.version, seed, args.format)
    return 0


if __name__ == "__main__":
    sys.exit(main())
