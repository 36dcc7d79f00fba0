"""The demo models' data: iris (ships with scikit-learn) and synthetic telecom churn (fixed seed, no download).

The churn rows look like the telecom churn data that churn APIs are usually built on:
named numeric and categorical columns, a few missing ``TotalCharges`` (new customers, as
in the real data), and a churn probability that rises with month-to-month contracts, fibre,
electronic checks and high charges and falls with tenure, with an interaction a tree
ensemble can find and a linear model cannot.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split

CHURN_ROWS = 6000
CONTRACTS = ["Month-to-month", "One year", "Two year"]
INTERNET = ["DSL", "Fiber optic", "No"]
PAYMENT = ["Electronic check", "Mailed check", "Bank transfer (automatic)", "Credit card (automatic)"]
CHURN_NUMERIC = ["tenure", "MonthlyCharges", "TotalCharges", "SeniorCitizen"]
CHURN_CATEGORICAL = ["Contract", "InternetService", "PaymentMethod", "PaperlessBilling"]


@dataclass(frozen=True)
class Split:
    """A hold-out split and what the bundle metadata says about its columns."""

    x_train: Any
    x_test: Any
    y_train: Any
    y_test: Any
    feature_names: list[str]
    feature_types: dict[str, str] | None  # None: every column is a number


def iris(seed: int) -> Split:
    data = load_iris()
    labels = data.target_names[data.target]
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, labels, test_size=0.3, random_state=seed, stratify=labels)
    return Split(x_train, x_test, y_train, y_test, list(data.feature_names), None)


def churn_frame(rows: int, seed: int) -> tuple[Any, np.ndarray]:
    """Synthetic customers (a DataFrame) and whether each churned ("Yes"/"No")."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    contract = rng.choice(CONTRACTS, rows, p=[0.55, 0.25, 0.2])
    internet = rng.choice(INTERNET, rows, p=[0.35, 0.45, 0.2])
    payment = rng.choice(PAYMENT, rows, p=[0.35, 0.2, 0.22, 0.23])
    paperless = rng.choice(["Yes", "No"], rows, p=[0.6, 0.4])
    senior = (rng.random(rows) < 0.16).astype(int)
    tenure = np.where(contract == "Month-to-month", rng.integers(0, 40, rows), rng.integers(0, 73, rows))
    base = np.select([internet == "Fiber optic", internet == "DSL"], [75.0, 50.0], 22.0)
    monthly = np.round(base + rng.normal(0, 12, rows).clip(-18, 40), 2)
    total = np.round(monthly * tenure + rng.normal(0, 20, rows), 2).clip(0, None)
    total = np.where(tenure == 0, np.nan, total)  # new customers have no total yet, as in the real data
    score = (-1.4 + 1.3 * (contract == "Month-to-month") - 0.9 * (contract == "Two year")
             + 0.7 * (internet == "Fiber optic") + 0.6 * (payment == "Electronic check")
             + 0.9 * ((internet == "Fiber optic") & (contract == "Month-to-month") & (tenure < 12))
             + 0.3 * (paperless == "Yes") + 0.4 * senior - 0.035 * tenure + 0.012 * (monthly - 60))
    churned = rng.random(rows) < 1 / (1 + np.exp(-score))
    frame = pd.DataFrame({
        "tenure": tenure, "MonthlyCharges": monthly, "TotalCharges": total, "SeniorCitizen": senior,
        "Contract": contract, "InternetService": internet, "PaymentMethod": payment, "PaperlessBilling": paperless,
    })
    return frame, np.where(churned, "Yes", "No")


def churn(seed: int) -> Split:
    frame, labels = churn_frame(CHURN_ROWS, seed)
    x_train, x_test, y_train, y_test = train_test_split(
        frame, labels, test_size=0.25, random_state=seed, stratify=labels)
    types = {name: "number" for name in CHURN_NUMERIC} | {name: "category" for name in CHURN_CATEGORICAL}
    return Split(x_train, x_test, y_train, y_test, list(frame.columns), types)


def churn_preprocessing() -> Any:
    """Impute, scale the numbers and one-hot encode the categories (unknown categories are ignored)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    return ColumnTransformer([
        ("numbers", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), CHURN_NUMERIC),
        ("categories", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                     OneHotEncoder(handle_unknown="ignore")), CHURN_CATEGORICAL),
    ])
