"""The models named in api.env, loaded once per worker from the model directory.

A model file is a joblib bundle ``{"estimator": ..., "metadata": {...}}`` written by
``scripts/train_models.py``; a bare scikit-learn estimator is accepted too (its version is
then the file name). A ``.skops`` file holds the same, read by skops without running code:
every type in it must be one skops trusts by default or one of ``SKOPS_TRUSTED_TYPES``.
Files are only ever loaded from inside ``MODEL_DIR``.
"""

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import joblib
import numpy as np

from ml_api.infra.native_threads import BudgetPool
from ml_api.serving.fast_predict import ProbaRow, has_fast_path, single_row_proba
from ml_api.serving.inputs import Features, ModelInputs
from ml_api.serving.introspect import inputs_of

log = logging.getLogger(__name__)
T = TypeVar("T")


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
    sha256: str | None = None  # of the file, to tell which bytes serve (GET /models)
    loaded_at: str | None = None

    @property
    def version(self) -> str:
        return str(self.metadata.get("version") or self.path.stem)

    @cached_property
    def inputs(self) -> ModelInputs:
        """The columns (or the count) this model takes, read once from the fitted model."""
        return inputs_of(self.estimator, self.metadata, has_fast_path(self.estimator))

    @cached_property
    def _proba_row(self) -> ProbaRow:
        return single_row_proba(self.estimator)  # built once: forests skip sklearn's per-call overhead

    @cached_property
    def _class_labels(self) -> tuple[list[Any], list[str]]:
        """The classes as JSON-able labels and as probability keys, converted once."""
        labels = [_plain(c) for c in self.estimator.classes_]
        return labels, [str(label) for label in labels]

    def predict(self, features: Features) -> Prediction:
        """Predict one checked request (``inputs.check``); probabilities when the estimator has ``predict_proba``."""
        try:
            row = self.inputs.row(features)
            if hasattr(self.estimator, "predict_proba"):
                return self._from_probabilities(self._proba_row(row))
            return Prediction(label=_plain(self.estimator.predict(row)[0]), probability=None, probabilities=None)
        except Exception as exc:  # any failure of third-party model code is a model failure
            raise ModelError(f"model {self.name!r} failed to predict: {exc}") from exc

    def predict_many(self, items: Sequence[Features]) -> list[Prediction]:
        """Predict many checked requests of one form in one call of the estimator (a batch)."""
        try:
            rows = self.inputs.rows(items)
            if hasattr(self.estimator, "predict_proba"):
                return [self._from_probabilities(p) for p in np.asarray(self.estimator.predict_proba(rows))]
            return [Prediction(label=_plain(v), probability=None, probabilities=None)
                    for v in self.estimator.predict(rows)]
        except Exception as exc:  # any failure of third-party model code is a model failure
            raise ModelError(f"model {self.name!r} failed to predict: {exc}") from exc

    def _from_probabilities(self, probabilities: np.ndarray) -> Prediction:
        if not np.isfinite(probabilities).all():
            raise ValueError("the model returned non-finite probabilities")
        best, values = int(np.argmax(probabilities)), probabilities.tolist()
        labels, keys = self._class_labels
        return Prediction(label=labels[best], probability=values[best], probabilities=dict(zip(keys, values)))


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


SKOPS_SUFFIX = ".skops"


def read_model_file(path: Path, trusted_types: Sequence[str] = ()) -> Any:
    """What the file holds: a ``.skops`` file read by skops (refused, naming them, when it holds types not
    trusted), anything else by joblib (a pickle: it runs the file's code, so only files you made or trust)."""
    if path.suffix != SKOPS_SUFFIX:
        return joblib.load(path)
    import skops.io  # here, not at the top: it imports every scikit-learn estimator (seconds of boot) to list them

    untrusted = sorted(set(skops.io.get_untrusted_types(file=path)) - set(trusted_types))
    if untrusted:
        raise ModelError(f"{path.name!r} holds types SKOPS_TRUSTED_TYPES does not list: {', '.join(untrusted)}"
                         " (add them to SKOPS_TRUSTED_TYPES in api.env only if you trust the file's origin)")
    return skops.io.load(path, trusted=list(trusted_types))


def load_model(name: str, model_dir: Path, file_name: str, trusted_types: Sequence[str] = ()) -> LoadedModel:
    """Load one model bundle (or bare estimator) from the model directory."""
    path = resolve_model_path(model_dir, file_name)
    if not path.is_file():
        raise ModelError(f"model {name!r}: file {path.name!r} not found in {model_dir}")
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        loaded = read_model_file(path, trusted_types)
    except ModelError as exc:
        raise ModelError(f"model {name!r}: refused: {exc}") from None
    except Exception as exc:  # a corrupt or incompatible file can raise almost anything
        raise ModelError(f"model {name!r}: cannot load {path.name!r}: {exc}") from exc
    if isinstance(loaded, Mapping) and "estimator" in loaded:
        estimator, metadata = loaded["estimator"], dict(loaded.get("metadata") or {})
    else:
        estimator, metadata = loaded, {}
    if not hasattr(estimator, "predict"):
        raise ModelError(f"model {name!r}: {path.name!r} holds no estimator with predict()")
    model = LoadedModel(name=name, path=path, estimator=estimator, metadata=metadata, sha256=digest,
                        loaded_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    try:
        model.inputs  # read now: a model whose inputs cannot be read fails its load, not its requests
    except Exception as exc:
        raise ModelError(f"model {name!r}: cannot read the inputs of {path.name!r}: {exc}") from exc
    return model


class ModelRegistry:
    """All configured models of this worker.

    Each successful load is remembered in a small state file (``MODEL_STATE_PATH``). When
    the file api.env names cannot be loaded (a reload with a broken or missing file), the
    last file that loaded for that name keeps serving, and the error stays visible in
    ``errors`` (shown by /ready and sent as an event).
    """

    def __init__(self, model_dir: Path, model_files: Mapping[str, str], state_path: Path | None = None,
                 timeout_seconds: float = 0.0, max_parallel: int = 4, trusted_types: Sequence[str] = ()) -> None:
        self.model_dir = model_dir
        self._trusted_types = tuple(trusted_types)
        self.models: dict[str, LoadedModel] = {}
        self.errors: dict[str, str] = {}
        self._state_path = state_path
        self._timeout = timeout_seconds
        # Native threads under either worker class: a model past its budget is abandoned, never waited for.
        self._pool = BudgetPool(max_parallel, "model") if timeout_seconds else None
        last_good = self._read_state()
        for name, file_name in model_files.items():
            try:
                self.models[name] = load_model(name, model_dir, file_name, self._trusted_types)
                last_good[name] = file_name
            except ModelError as exc:
                self.errors[name] = str(exc)
                log.error("%s", exc)
                self._load_last_good(name, file_name, last_good.get(name))
        self._write_state(last_good)

    def _load_last_good(self, name: str, wanted: str, previous: str | None) -> None:
        if previous is None or previous == wanted:
            return
        try:
            self.models[name] = load_model(name, self.model_dir, previous, self._trusted_types)
            self.errors[name] += f"; still serving the last good file {previous!r}"
        except ModelError as exc:
            log.error("the last good file of model %r failed too: %s", name, exc)

    def _read_state(self) -> dict[str, str]:
        if self._state_path is None:
            return {}
        try:
            return dict(json.loads(self._state_path.read_text()))
        except (OSError, ValueError):
            return {}

    def _write_state(self, last_good: dict[str, str]) -> None:
        if self._state_path is None:
            return
        try:
            self._state_path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self._state_path.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_text(json.dumps(last_good, sort_keys=True))
            temporary.replace(self._state_path)
        except OSError as exc:
            log.warning("could not write the model state file %s: %s", self._state_path, exc)

    @property
    def names(self) -> set[str]:
        """Every configured model name, loaded or not."""
        return set(self.models) | set(self.errors)

    def get(self, name: str) -> LoadedModel:
        model = self.models.get(name)
        if model is None:
            raise ModelError(self.errors.get(name, f"model {name!r} is not configured in api.env"))
        return model

    def predict_within_budget(self, model: LoadedModel, features: Features) -> Prediction:
        """Predict, but give up after MODEL_TIMEOUT_MS (the call may finish in the background).

        Used for variations only: the caller falls back to control, so a hanging model
        costs its users at most the budget. The pool is bounded, so hanging calls cannot
        pile up threads; requests beyond it wait and time out as well.
        """
        return self._within_budget(model, model.predict, features)

    def predict_many_within_budget(self, model: LoadedModel, items: Sequence[Features]) -> list[Prediction]:
        """``predict_many`` within MODEL_TIMEOUT_MS (a batch's variation group; control answers beyond it)."""
        return self._within_budget(model, model.predict_many, items)

    def _within_budget(self, model: LoadedModel, call: Callable[[Any], T], argument: Any) -> T:
        if self._pool is None:
            return call(argument)
        try:
            return self._pool.call(call, argument, self._timeout)
        except TimeoutError:
            raise ModelError(
                f"model {model.name!r} exceeded its time budget of {self._timeout * 1000:.0f} ms"
            ) from None
