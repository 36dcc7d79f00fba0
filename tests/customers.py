"""Synthetic churn customers as /predict features (named), from the demo data generator."""

import math

from scripts.demo_data import churn_frame


def customers(count: int, seed: int = 11) -> list[dict]:
    """``count`` customers as JSON-able feature objects (a missing TotalCharges is null)."""
    frame, _ = churn_frame(count, seed)
    rows = []
    for record in frame.to_dict(orient="records"):
        rows.append({key: None if isinstance(value, float) and math.isnan(value)
                     else value.item() if hasattr(value, "item") else value for key, value in record.items()})
    return rows
