"""Train the demo models on the iris data set that ships with scikit-learn.

Writes joblib bundles ``{"estimator", "metadata"}`` into the model directory:
control ``iris-logreg-v1.joblib`` (LogisticRegression) and variation
``iris-forest-v1.joblib`` (RandomForestClassifier), with name, version, feature names,
training date and hold-out accuracy.

    python scripts/train_models.py [--out-dir models] [--if-missing]
"""

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

import joblib
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

SEED = 42
DEMO_MODELS = {
    "iris-logreg-v1.joblib": ("logreg", "v1", lambda: LogisticRegression(max_iter=1000, random_state=SEED)),
    "iris-forest-v1.joblib": ("forest", "v1", lambda: RandomForestClassifier(n_estimators=100, random_state=SEED, n_jobs=1)),
}


def train(out_dir: Path, if_missing: bool = False) -> list[Path]:
    """Fit and save every demo model; with ``if_missing``, keep files that exist."""
    iris = load_iris()
    labels = iris.target_names[iris.target]
    x_train, x_test, y_train, y_test = train_test_split(
        iris.data, labels, test_size=0.3, random_state=SEED, stratify=labels
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, (name, version, make) in DEMO_MODELS.items():
        path = out_dir / file_name
        if if_missing and path.exists():
            continue
        estimator = make().fit(x_train, y_train)
        metadata = {
            "name": name,
            "version": version,
            "algorithm": type(estimator).__name__,
            "feature_names": list(iris.feature_names),
            "classes": [str(c) for c in estimator.classes_],
            "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "holdout_accuracy": float(estimator.score(x_test, y_test)),
            "training_rows": len(x_train),
        }
        joblib.dump({"estimator": estimator, "metadata": metadata}, path)
        written.append(path)
        print(f"trained {name} {version}: hold-out accuracy {metadata['holdout_accuracy']:.3f} -> {path}")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent.parent / "models")
    parser.add_argument("--if-missing", action="store_true", help="only train models whose file is missing")
    args = parser.parse_args(argv)
    train(args.out_dir, args.if_missing)
    return 0


if __name__ == "__main__":
    sys.exit(main())
