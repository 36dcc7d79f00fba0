"""The models named in api.env, loaded once per worker from the model directory.

A model file is a joblib bundle ``{"estimator": ..., "metadata": {...}}`` written by
``scripts/train_models.py``; a bare scikit-learn estimator is accepted too (its version is
then the file name). Files are only ever loaded from inside ``MODEL_DIR``.
"""

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from ml_api.fast_predict import ProbaRow, single_row_proba

log = logging.getLogger(__name__)


class ModelError(Exception):
    """A model could not be loaded or failed to predict."""


@dataclass(frozen=True)
class Prediction:
    label: Any
    probability: float | None
    probabilities: dict[str, float] | None


@dataclass
class LoadedModel:
    name: str
    path: Path
    estimator: Any
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return str(self.metadata.get("version") or self.path.stem)

    @property
    def n_features(self) -> int | None:
        return getattr(self.estimator, "n_features_in_", None)

    @cached_property
    def _proba_row(self) -> ProbaRow:
        return single_row_proba(self.estimator)  # built once: forests skip sklearn's per-call overhead

    def predict(self, features: Sequence[float]) -> Prediction:
        """Predict one row; probabilities when the estimator has ``predict_proba``."""
        row = np.asarray(features, dtype=np.float64).reshape(1, -1)
        try:
            if hasattr(self.estimator, "predict_proba"):
                probabilities = self._proba_row(row)
                best = int(np.argmax(probabilities))
                classes = self.estimator.classes_
                return Prediction(
                    label=_plain(classes[best]),
                    probability=float(probabilities[best]),
                    probabilities={str(_plain(c)): float(p) for c, p in zip(classes, probabilities)},
                )
            value = _plain(self.estimator.predict(row)[0])
            return Prediction(label=value, probability=None, probabilities=None)
        except Exception as exc:  # any failure of third-party model code is a model failure
            raise ModelError(f"model {self.name!r} failed to predict: {exc}") from exc


def _plain(value: Any) -> Any:
    """numpy scalars to JSON-able Python values."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        raise ModelError(f"model returned a non-finite value {value!r}")
    return value


def resolve_model_path(model_dir: Path, file_name: str) -> Path:
    """The model file inside ``model_dir``; refuses anything that escapes it."""
    base = model_dir.resolve()
    path = (base / file_name).resolve()
    if not path.is_relative_to(base) or path == base:
        raise ModelError(f"model file {file_name!r} is outside the model directory {base}")
    return path


def load_model(name: str, model_dir: Path, file_name: str) -> LoadedModel:
    """Load one model bundle (or bare estimator) from the model directory."""
    path = resolve_model_path(model_dir, file_name)
    if not path.is_file():
        raise ModelError(f"model {name!r}: file {path.name!r} not found in {model_dir}")
    try:
        loaded = joblib.load(path)
    except Exception as exc:  # a corrupt or incompatible file can raise almost anything
        raise ModelError(f"model {name!r}: cannot load {path.name!r}: {exc}") from exc
    if isinstance(loaded, Mapping) and "estimator" in loaded:
        estimator, metadata = loaded["estimator"], dict(loaded.get("metadata") or {})
    else:
        estimator, metadata = loaded, {}
    if not hasattr(estimator, "predict"):
        raise ModelError(f"model {name!r}: {path.name!r} holds no estimator with predict()")
    return LoadedModel(name=name, path=path, estimator=estimator, metadata=metadata)


class ModelRegistry:
    """All configured models of this worker, with the load error of each that failed."""

    def __init__(self, model_dir: Path, model_files: Mapping[str, str]) -> None:
        self.model_dir = model_dir
        self.models: dict[str, LoadedModel] = {}
        self.errors: dict[str, str] = {}
        for name, file_name in model_files.items():
            try:
                self.models[name] = load_model(name, model_dir, file_name)
            except ModelError as exc:
                self.errors[name] = str(exc)
                log.error("%s", exc)

    @property
    def names(self) -> set[str]:
        """Every configured model name, loaded or not."""
        return set(self.models) | set(self.errors)

    def get(self, name: str) -> LoadedModel:
        model = self.models.get(name)
        if model is None:
            raise ModelError(self.errors.get(name, f"model {name!r} is not configured in api.env"))
        return model
