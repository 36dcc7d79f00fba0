"""Reading a fitted model's inputs (``serving.inputs.ModelInputs``) once, when it is loaded.

Walks what scikit-learn keeps after fitting, without calling the model: the column names
(``feature_names_in_``, else the bundle's ``feature_names``), the steps of a Pipeline up to
its ColumnTransformer (an imputer there makes every column nullable), and per column the
transformer that takes it: an encoder with string ``categories_`` makes it a category column
(its categories kept when it refuses unknown ones), an imputer makes it nullable.
"""

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

from ml_api.serving.inputs import ANY, CATEGORY, NUMBER, Column, ModelInputs

# handle_unknown settings under which an encoder answers for a category it never saw.
TOLERATES_UNKNOWN = {"ignore", "infrequent_if_exist", "use_encoded_value", "warn"}


def inputs_of(estimator: Any, metadata: Mapping[str, Any], fast_path: bool) -> ModelInputs:
    """The input ``estimator`` takes; ``fast_path``: it has a single-row path that takes a float array."""
    fitted_names = getattr(estimator, "feature_names_in_", None)
    names = [str(n) for n in fitted_names] if fitted_names is not None else metadata.get("feature_names")
    count = getattr(estimator, "n_features_in_", None)
    if not names:
        return ModelInputs(columns=None, count=count, takes_list=True, needs_frame=False)
    facts = column_facts(estimator, names)
    declared = metadata.get("feature_types") or {}
    columns = tuple(_column(name, facts.get(name), declared.get(name)) for name in names)
    by_name = fitted_names is not None
    plain = all(c.kind == NUMBER for c in columns) and (fast_path or not by_name)
    return ModelInputs(columns=columns, count=len(columns), takes_list=not by_name, needs_frame=not plain)


def _column(name: str, facts: Column | None, declared: str | None) -> Column:
    column = facts or Column(name)
    if declared in (NUMBER, CATEGORY):
        return Column(name, declared, column.nullable, column.categories if declared == CATEGORY else None)
    return column


def column_facts(estimator: Any, names: list[str]) -> dict[str, Column]:
    """What the steps before the final estimator tell about each named column."""
    nullable_all = False
    for step in _steps(estimator):
        if isinstance(step, ColumnTransformer):
            return {column.name: _with_nullable(column, nullable_all) for column in _transformed(step, names)}
        if _is_imputer(step):
            nullable_all = True
            continue
        break  # a step that may change the columns: nothing more is known
    return {name: Column(name, NUMBER, nullable_all) for name in names}


def _with_nullable(column: Column, nullable: bool) -> Column:
    return column if not nullable or column.nullable else Column(column.name, column.kind, True, column.categories)


def _steps(estimator: Any) -> list[Any]:
    return [step for _, step in estimator.steps] if isinstance(estimator, Pipeline) else [estimator]


def _transformed(transformer: ColumnTransformer, names: list[str]) -> Iterator[Column]:
    """One Column per input column of a fitted ColumnTransformer, from the transformer that takes it."""
    for _, step, selected in transformer.transformers_:
        columns = _selected_names(selected, names)
        if step == "drop":
            yield from (Column(name, ANY, True) for name in columns)
        elif step == "passthrough":
            yield from (Column(name, NUMBER) for name in columns)
        else:
            yield from _through(step, columns)


def _selected_names(selected: Any, names: list[str]) -> list[str]:
    """The column names a transformer was given: names, positions, a boolean mask or a slice."""
    if isinstance(selected, str):
        return [selected]
    if isinstance(selected, slice):
        return names[selected]
    items = np.asarray(selected).tolist()  # numpy scalars to Python ones
    if items and all(isinstance(item, bool) for item in items):
        return [name for name, keep in zip(names, items) if keep]
    return [names[item] if isinstance(item, int) else str(item) for item in items]


def _through(step: Any, columns: list[str]) -> Iterator[Column]:
    """The columns as one transformer (or a pipeline of them) sees them: imputed, encoded."""
    steps = _steps(step)
    nullable = any(_is_imputer(s) for s in steps)
    encoder = next((s for s in steps if hasattr(s, "categories_")), None)
    for index, name in enumerate(columns):
        if encoder is None or index >= len(encoder.categories_):
            yield Column(name, NUMBER, nullable)
            continue
        categories = encoder.categories_[index]
        if categories.dtype.kind not in "OUS":
            yield Column(name, NUMBER, nullable)
            continue
        known = [c for c in categories.tolist() if isinstance(c, str)]
        missing_known = len(known) < len(categories)  # NaN among the fitted categories: null is a category
        refuses = getattr(encoder, "handle_unknown", "error") not in TOLERATES_UNKNOWN
        yield Column(name, CATEGORY, nullable or missing_known, frozenset(known) if refuses else None)


def _is_imputer(step: Any) -> bool:
    return type(step).__name__.endswith("Imputer")
