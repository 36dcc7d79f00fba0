"""What a loaded model is, for GET /models and ``python -m ml_api.cli models list|validate``."""

from typing import Any

from ml_api.serving.inputs import CATEGORY, Features
from ml_api.serving.models import LoadedModel, ModelRegistry


def describe_model(model: LoadedModel) -> dict[str, Any]:
    """Name, file, version, sha256, class, inputs, classes and load time of one loaded model."""
    estimator = model.estimator
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    classes = getattr(estimator, "classes_", None)
    return {
        "name": model.name, "file": model.path.name, "version": model.version, "sha256": model.sha256,
        "class": type(estimator).__name__, "estimator": type(final).__name__,
        **model.inputs.describe(),
        "classes": None if classes is None else [str(c) for c in classes],
        "loaded_at": model.loaded_at,
    }


def describe_registry(registry: ModelRegistry) -> list[dict[str, Any]]:
    """Every configured model name: its description, and its load error when the named file failed."""
    described = []
    for name in sorted(registry.names):
        model, error = registry.models.get(name), registry.errors.get(name)
        entry = describe_model(model) if model is not None else {"name": name}
        if error is not None:
            entry["error"] = error
        described.append(entry)
    return described


def sample_features(model: LoadedModel) -> Features:
    """A row the model must take: zeros, and a known (else any) category where it wants categories."""
    inputs = model.inputs
    if inputs.columns is None or inputs.takes_list:
        return [0.0] * (inputs.count or 0)
    return {c.name: (sorted(c.categories)[0] if c.categories else "unknown") if c.kind == CATEGORY else 0.0
            for c in inputs.columns}
