"""The single-row forest path returns exactly what ``predict_proba`` returns."""

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier

from ml_api.serving.fast_predict import single_row_proba
from ml_api.serving.models import LoadedModel
from scripts.train_models import DEMO_BY_NAME, SEED


@pytest.fixture(scope="module")
def iris_split() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The demo models' own train/test split (scripts/train_models.py)."""
    iris = load_iris()
    labels = iris.target_names[iris.target]
    x_train, x_test, y_train, _ = train_test_split(
        iris.data, labels, test_size=0.3, random_state=SEED, stratify=labels
    )
    return x_train, y_train, x_test


@pytest.fixture(scope="module")
def demo_forest(iris_split) -> RandomForestClassifier:
    x_train, y_train, _ = iris_split
    return DEMO_BY_NAME["forest"].make(SEED).fit(x_train, y_train)


def random_rows(x: np.ndarray, count: int, seed: int = 7) -> np.ndarray:
    """Rows spread over (and beyond) the training range, plus rows sitting on split thresholds."""
    rng = np.random.default_rng(seed)
    low, high = x.min(axis=0), x.max(axis=0)
    spread = rng.uniform(low - (high - low), high + (high - low), size=(count, x.shape[1]))
    return np.vstack([spread, rng.normal(0, 1e6, size=(count // 10, x.shape[1]))])


def threshold_rows(forest, x: np.ndarray) -> np.ndarray:
    """Typical rows with one feature set exactly to a split threshold (the ``<=`` edge)."""
    rows = []
    for tree in forest.estimators_[:10]:
        splits = tree.tree_.feature >= 0
        for feature, threshold in zip(tree.tree_.feature[splits], tree.tree_.threshold[splits]):
            row = np.median(x, axis=0)
            row[feature] = threshold
            rows.append(row)
    return np.asarray(rows)


def assert_same_as_sklearn(estimator, rows: np.ndarray) -> None:
    fast = single_row_proba(estimator)
    expected = estimator.predict_proba(rows)
    for row, want in zip(rows, expected):
        got = fast(row.reshape(1, -1))
        assert np.array_equal(got, want), (row, got, want)


def test_demo_forest_equals_predict_proba_on_the_iris_test_set(demo_forest, iris_split):
    assert_same_as_sklearn(demo_forest, iris_split[2])


def test_demo_forest_equals_predict_proba_on_random_and_threshold_rows(demo_forest, iris_split):
    assert_same_as_sklearn(demo_forest, random_rows(iris_split[0], 2000))
    assert_same_as_sklearn(demo_forest, threshold_rows(demo_forest, iris_split[0]))


@pytest.mark.parametrize("forest", [
    ExtraTreesClassifier(n_estimators=30, random_state=1),
    RandomForestClassifier(n_estimators=7, max_depth=3, class_weight="balanced", random_state=2),
    RandomForestClassifier(n_estimators=1, bootstrap=False, random_state=3),
], ids=["extra-trees", "shallow-weighted", "single-tree"])
def test_other_forests_and_integer_labels(forest, iris_split):
    x_train, y_train, x_test = iris_split
    forest.fit(x_train, np.unique(y_train, return_inverse=True)[1])
    assert_same_as_sklearn(forest, np.vstack([x_test, random_rows(x_train, 300)]))


def test_forests_take_the_flat_path(demo_forest):
    """Guards against the fast path silently not being used (the equality tests pass either way)."""
    assert type(single_row_proba(demo_forest)).__name__ == "_FlatForest"


def assert_row_by_row_as_sklearn(estimator, rows: np.ndarray) -> None:
    """One row at a time, as the gateway calls it: BLAS may round a batch differently in the last bit."""
    fast = single_row_proba(estimator)
    for row in rows:
        got, want = fast(row.reshape(1, -1)), estimator.predict_proba(row.reshape(1, -1))[0]
        assert np.array_equal(got, want), (row, got, want)


def test_demo_logistic_regression_equals_predict_proba(iris_split):
    x_train, y_train, x_test = iris_split
    model = DEMO_BY_NAME["logreg"].make(SEED).fit(x_train, y_train)
    assert type(single_row_proba(model)).__name__ == "_LinearRow"  # the fast path is really taken
    assert_row_by_row_as_sklearn(model, np.vstack([x_test, random_rows(x_train, 1000)]))


@pytest.mark.parametrize("make,classes", [
    (lambda: LogisticRegression(max_iter=1000), 2),
    (lambda: LogisticRegression(C=0.01, fit_intercept=False, max_iter=1000), 3),
    (lambda: LogisticRegression(class_weight="balanced", solver="newton-cg"), 3),
    (lambda: LogisticRegression(solver="liblinear"), 2),
], ids=["binary", "no-intercept", "balanced", "liblinear-binary"])
def test_other_logistic_regressions(iris_split, make, classes):
    x_train, y_train, x_test = iris_split
    labels = np.unique(y_train, return_inverse=True)[1] % classes  # integer labels, 2 or 3 classes
    model = make().fit(x_train, labels)
    assert type(single_row_proba(model)).__name__ == "_LinearRow"
    assert_row_by_row_as_sklearn(model, np.vstack([x_test, random_rows(x_train, 300)]))


def test_a_wide_binary_model():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 60))
    model = LogisticRegression(max_iter=2000).fit(x, x[:, 0] + rng.normal(size=400) > 0)
    assert_row_by_row_as_sklearn(model, rng.normal(0, 5, size=(300, 60)))


def test_other_estimators_keep_their_own_predict_proba(iris_split):
    x_train, y_train, x_test = iris_split
    model = KNeighborsClassifier().fit(x_train, y_train)
    fast = single_row_proba(model)
    assert type(fast).__name__ == "function"
    assert_row_by_row_as_sklearn(model, x_test)


def test_logistic_regression_refuses_what_sklearn_refuses(iris_split):
    x_train, y_train, _ = iris_split
    fast = single_row_proba(LogisticRegression(max_iter=1000).fit(x_train, y_train))
    with pytest.raises(ValueError):
        fast(np.ones((1, 3)))
    with pytest.raises(ValueError):
        fast(np.array([[np.nan, 1.0, 1.0, 1.0]]))


def test_wrong_width_and_float32_overflow_are_errors_like_sklearns(demo_forest):
    fast = single_row_proba(demo_forest)
    with pytest.raises(ValueError):
        fast(np.ones((1, 3)))
    with pytest.raises(ValueError):
        fast(np.array([[1e300, 1.0, 1.0, 1.0]]))  # finite in float64, infinite in float32
    with pytest.raises(ValueError), np.errstate(over="ignore"):
        demo_forest.predict_proba(np.array([[1e300, 1.0, 1.0, 1.0]]))


def test_loaded_model_uses_the_same_numbers(demo_forest, tmp_path):
    model = LoadedModel(name="forest", path=tmp_path / "forest.joblib", estimator=demo_forest)
    prediction = model.predict([5.9, 3.0, 5.1, 1.8])
    expected = demo_forest.predict_proba(np.array([[5.9, 3.0, 5.1, 1.8]]))[0]
    assert list(prediction.probabilities.values()) == [float(p) for p in expected]
