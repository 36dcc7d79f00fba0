"""Estimators that misbehave on purpose, saved with joblib by tests (importable by workers)."""

import shutil
import time
from pathlib import Path

import joblib
import numpy as np

from ml_api.config import PROJECT_ROOT


class FailingModel:
    """Raises on every prediction, like a model with a broken dependency."""

    n_features_in_ = 4
    classes_ = np.array(["setosa", "versicolor", "virginica"])

    def predict(self, rows):
        raise RuntimeError("feature store unreachable")

    def predict_proba(self, rows):
        raise RuntimeError("feature store unreachable")


class SlowModel(FailingModel):
    """Answers, but only after ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def predict_proba(self, rows):
        time.sleep(self.seconds)
        return np.array([[1.0, 0.0, 0.0]])


class SpinningModel(FailingModel):
    """Answers after holding the CPU for ``seconds`` in Python code (it never sleeps, never yields to gevent)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def predict_proba(self, rows):
        deadline = time.perf_counter() + self.seconds
        while time.perf_counter() < deadline:
            pass
        return np.array([[1.0, 0.0, 0.0]])


def with_models(overrides: dict[str, str], model_dir: Path, tmp_path: Path, **estimators: object) -> dict[str, str]:
    """Settings whose model directory and api.env copy also hold ``estimators`` as models (name -> estimator)."""
    models = tmp_path / "models"
    shutil.copytree(model_dir, models)
    lines = []
    for name, estimator in estimators.items():
        joblib.dump(estimator, models / f"{name}.joblib")
        lines.append(f"MODEL_{name.upper()}={name}.joblib")
    env_file = tmp_path / "api.env"
    env_file.write_text((PROJECT_ROOT / "api.env").read_text() + "\n" + "\n".join(lines) + "\n")
    return {**overrides, "MODEL_DIR": str(models), "API_ENV_FILE": str(env_file)}
