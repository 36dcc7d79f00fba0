"""Single-row probabilities without scikit-learn's per-call overhead, same numbers.

``RandomForestClassifier.predict_proba`` on one row spends almost all of its time in
joblib dispatch and input validation around 100 tiny tree walks (``make bench`` prints the
figures). For forests, :func:`single_row_proba` flattens every tree into shared node arrays
once and walks all trees together with numpy, doing exactly what scikit-learn does:

* the row is cast to float32 (scikit-learn's tree dtype) and a node sends it left when
  ``x[feature] <= threshold`` (compared in float64, as the Cython tree does);
* each tree's leaf value (class fractions) is added in estimator order into float64
  zeros, then divided by the number of trees.

For logistic regression (``predict_proba`` on one row is nearly all input validation),
:class:`_LinearRow` computes what scikit-learn computes after validating:
``row @ coef_.T + intercept_``, then its softmax (more than two classes) or the logistic
function and ``[1 - p, p]`` (two).

Same operations in the same order give bit-identical probabilities (see
``tests/unit/ml_api/serving/test_fast_predict.py``). Any other estimator keeps its own
``predict_proba``.
"""

from collections.abc import Callable

import numpy as np
from scipy.special import expit
from sklearn.ensemble._forest import ForestClassifier
from sklearn.linear_model import LogisticRegression

ProbaRow = Callable[[np.ndarray], np.ndarray]
FLOAT32_LIMITS = "Input X contains infinity or a value too large for dtype('float32')."


def has_fast_path(estimator: object) -> bool:
    """Whether ``estimator`` gets a numpy single-row path (it then takes a float array, never a DataFrame)."""
    return ((isinstance(estimator, ForestClassifier) and _is_plain_forest(estimator))
            or (type(estimator) is LogisticRegression and _is_plain_linear(estimator)))


def single_row_proba(estimator: object) -> ProbaRow:
    """A function ``row (1, n_features) -> probabilities (n_classes,)`` for ``estimator``."""
    if isinstance(estimator, ForestClassifier) and _is_plain_forest(estimator):
        return _FlatForest(estimator)
    if type(estimator) is LogisticRegression and _is_plain_linear(estimator):
        return _LinearRow(estimator)
    return lambda row: estimator.predict_proba(row)[0]


def _is_plain_linear(model: LogisticRegression) -> bool:
    # Dense float64 coefficients, one row per class (or one for two classes): the numpy path.
    coef = getattr(model, "coef_", None)
    return (isinstance(coef, np.ndarray) and coef.dtype == np.float64 and coef.ndim == 2
            and len(model.classes_) >= 2 and coef.shape[0] == (1 if len(model.classes_) == 2 else len(model.classes_)))


def _is_plain_forest(forest: ForestClassifier) -> bool:
    # One output and fitted trees: then predict_proba reduces to a sum of leaf values.
    trees = getattr(forest, "estimators_", None)
    return bool(trees) and forest.n_outputs_ == 1 and all(hasattr(tree, "tree_") for tree in trees)


class _FlatForest:
    """All trees of a forest in flat arrays, walked level by level for one row."""

    def __init__(self, forest: ForestClassifier) -> None:
        trees = [estimator.tree_ for estimator in forest.estimators_]
        sizes = [tree.node_count for tree in trees]
        self._roots = np.cumsum([0, *sizes[:-1]])
        left = np.concatenate([tree.children_left for tree in trees])
        right = np.concatenate([tree.children_right for tree in trees])
        offsets = np.repeat(self._roots, sizes)
        is_leaf = left < 0
        here = np.arange(left.size)
        # A leaf points at itself, so trees of different depths can walk in lock step.
        self._children = np.stack(
            [np.where(is_leaf, here, left + offsets), np.where(is_leaf, here, right + offsets)], axis=1
        )
        self._feature = np.where(is_leaf, 0, np.concatenate([tree.feature for tree in trees]))
        self._threshold = np.concatenate([tree.threshold for tree in trees])
        self._value = np.concatenate([tree.value[:, 0, :forest.n_classes_] for tree in trees]).astype(np.float64)
        self._depth = max(tree.max_depth for tree in trees)
        self._n_features = forest.n_features_in_
        self._n_trees = len(trees)

    def __call__(self, row: np.ndarray) -> np.ndarray:
        if row.shape != (1, self._n_features):
            raise ValueError(f"X has shape {row.shape}, the forest expects (1, {self._n_features})")
        with np.errstate(over="ignore"):
            x = row[0].astype(np.float32)
        if not np.isfinite(x).all():
            raise ValueError(FLOAT32_LIMITS)  # what scikit-learn's own check raises
        x = x.astype(np.float64)
        node = self._roots
        for _ in range(self._depth):
            goes_right = x[self._feature[node]] > self._threshold[node]
            node = self._children[node, goes_right.view(np.int8)]
        # add.accumulate adds row after row, the order of scikit-learn's per-tree sum.
        return np.add.accumulate(self._value[node], axis=0)[-1] / self._n_trees


class _LinearRow:
    """Logistic regression's probabilities for one row, without the per-call validation."""

    def __init__(self, model: LogisticRegression) -> None:
        self._coef_t = model.coef_.T  # the same transposed view scikit-learn multiplies by
        self._intercept = model.intercept_
        self._binary = len(model.classes_) == 2
        self._n_features = model.coef_.shape[1]

    def __call__(self, row: np.ndarray) -> np.ndarray:
        if row.shape != (1, self._n_features):
            raise ValueError(f"X has shape {row.shape}, the model expects (1, {self._n_features})")
        if not np.isfinite(row).all():
            raise ValueError("Input X contains NaN or infinity.")
        scores = row @ self._coef_t + self._intercept
        if self._binary:  # LinearClassifierMixin._predict_proba_lr on a (1,) decision
            positive = scores.reshape(-1)
            expit(positive, out=positive)
            return np.stack([1 - positive, positive], axis=1)[0]
        scores -= scores.max(axis=1).reshape((-1, 1))  # sklearn.utils.extmath.softmax, in place
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1).reshape((-1, 1))
        return scores[0]
