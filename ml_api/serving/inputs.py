"""What a model takes as input, and a request's features checked and shaped into it.

A request sends ``features`` as a list of numbers (models fitted without column names) or
as an object ``{column: value}`` (numbers, strings, booleans, null). Which columns a model
takes, and of which kind, is read once from the fitted model: ``feature_names_in_`` (or the
bundle's ``metadata.feature_names``), and, for a Pipeline whose ColumnTransformer encodes
some columns, which columns hold categories (the encoder's ``categories_``), which ones are
imputed (null allowed) and which categories an encoder that refuses unknown ones knows.
Bundle metadata ``feature_types`` (``{column: "number" | "category"}``) overrides what is
inferred. Every mismatch is an ``InvalidRequest`` that names the column, raised before the
exposure is recorded, so bad input is a 400, never a model failure (503).
"""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ml_api.errors import InvalidRequest

FeatureValue = float | int | str | bool | None
Features = list[float] | dict[str, FeatureValue]

NUMBER, CATEGORY, ANY = "number", "category", "any"
# Categories quoted in an error message at most (a column may know thousands).
QUOTED_CATEGORIES = 10


@dataclass(frozen=True)
class Column:
    """One input column: its kind, whether null (missing) is imputed, and the categories it knows."""

    name: str
    kind: str = NUMBER
    nullable: bool = False
    categories: frozenset[str] | None = None  # set when unknown categories are refused


@dataclass(frozen=True)
class ModelInputs:
    """The input a model takes: named columns, or a bare count of numbers, and whether it needs a DataFrame."""

    columns: tuple[Column, ...] | None
    count: int | None
    takes_list: bool  # fitted without column names: the list form is its own
    needs_frame: bool  # selects columns by name (a Pipeline fitted on a DataFrame): one-row DataFrame

    @property
    def names(self) -> list[str] | None:
        return None if self.columns is None else [column.name for column in self.columns]

    def describe(self) -> dict[str, Any]:
        """For /models, /ready and the CLI: the columns with their kinds, or the count."""
        if self.columns is None:
            return {"feature_count": self.count}
        return {"feature_count": len(self.columns),
                "features": [{"name": c.name, "type": c.kind, "nullable": c.nullable} for c in self.columns]}

    def check(self, model: str, features: Features) -> None:
        """Refuse ``features`` this model cannot take, naming the column (InvalidRequest)."""
        if isinstance(features, list):
            self._check_list(model, features)
        else:
            self._check_named(model, features)

    def _check_list(self, model: str, features: list[float]) -> None:
        if not self.takes_list:
            raise InvalidRequest(f"model {model!r} takes named features: send features as an object with the "
                                 f"columns {', '.join(self.names or [])}")
        expected = self.count if self.columns is None else len(self.columns)
        if expected is not None and len(features) != expected:
            raise InvalidRequest(f"features must hold {expected} numbers for model {model!r}, got {len(features)}")

    def _check_named(self, model: str, features: Mapping[str, FeatureValue]) -> None:
        if self.columns is None:
            raise InvalidRequest(f"model {model!r} was fitted without column names: send features as a list of "
                                 f"{self.count if self.count is not None else 'the'} numbers")
        missing = [c.name for c in self.columns if c.name not in features]
        if missing:
            raise InvalidRequest(f"features is missing the column{'s' if len(missing) > 1 else ''} "
                                 f"{', '.join(map(json.dumps, missing))} for model {model!r}")
        if len(features) != len(self.columns):
            known = set(self.names or [])
            unknown = [name for name in features if name not in known]
            raise InvalidRequest(f"features has the column {json.dumps(unknown[0])}, which model {model!r} does "
                                 f"not take (its columns: {', '.join(self.names or [])})")
        for column in self.columns:
            check_value(model, column, features[column.name])

    def row(self, features: Features) -> Any:
        """The model's input for one checked request: a (1, n) float array, or a one-row DataFrame."""
        return self.rows([features])

    def rows(self, items: Sequence[Features]) -> Any:
        """The model's input for many checked requests of one form (a batch): one call per model."""
        if isinstance(items[0], list):
            return np.asarray(items, dtype=np.float64)
        if not self.needs_frame:
            return np.array([[_number(f[name]) for name in self.names or []] for f in items], dtype=np.float64)
        return frame(items, self.columns or ())


def check_value(model: str, column: Column, value: FeatureValue) -> None:
    """One named value against its column: null only when imputed, a number or a known category."""
    where = f"features[{json.dumps(column.name)}]"
    if value is None:
        if not column.nullable:
            raise InvalidRequest(f"{where} must not be null: model {model!r} does not impute missing values "
                                 "of this column")
        return
    if column.kind == NUMBER and isinstance(value, str):
        raise InvalidRequest(f"{where} must be a number: model {model!r} was fitted on numbers there, "
                             f"got {json.dumps(value)[:50]}")
    if column.kind == CATEGORY:
        if not isinstance(value, str):
            raise InvalidRequest(f"{where} must be a string: model {model!r} was fitted on categories there, "
                                 f"got {json.dumps(value)[:50]}")
        if column.categories is not None and value not in column.categories:
            known = sorted(column.categories)
            more = ", …" if len(known) > QUOTED_CATEGORIES else ""
            raise InvalidRequest(f"{where} must be one of {', '.join(map(json.dumps, known[:QUOTED_CATEGORIES]))}"
                                 f"{more} for model {model!r}, got {json.dumps(value)[:50]}")


def _number(value: FeatureValue) -> float:
    return float("nan") if value is None else float(value)  # bools are 0/1, as numpy makes them


def frame(items: Sequence[Mapping[str, FeatureValue]], columns: Sequence[Column]) -> Any:
    """A DataFrame with one row per item: numeric columns float64 (null is NaN), the others object."""
    import pandas as pd  # only models that select columns by name need it

    data = {}
    for column in columns:
        values = [item[column.name] for item in items]
        if column.kind == NUMBER or (column.kind == ANY and not any(isinstance(v, str) for v in values)):
            data[column.name] = np.array([_number(v) for v in values], dtype=np.float64)
        else:
            data[column.name] = np.array([np.nan if v is None else v for v in values], dtype=object)
    return pd.DataFrame(data, copy=False)
