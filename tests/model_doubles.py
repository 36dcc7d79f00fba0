"""Estimators that misbehave on purpose, saved with joblib by tests (importable by workers)."""

import time

import numpy as np


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
