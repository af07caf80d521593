"""The fitted regressors as plain arrays: what a loaded predictor predicts with.

Why: a query loads the predictor once and predicts a handful of rows. Rebuilding the
fitted scikit-learn objects for that (a 10 MB skops archive of pipelines and ~1,500
HistGradientBoosting trees, each a Python object) took ~3 s and pulled in every
scikit-learn estimator module; the numbers they predict with are a few arrays. So the
model file stores those arrays (:func:`compact_state`), and a loaded predictor predicts
with the two small classes below, which do the same floating-point operations in the
same order as scikit-learn (their tests compare them bit for bit):

* :class:`LinearPipeline` -- StandardScaler then Ridge/Lasso: ``((X - mean) / scale) @ coef
  + intercept``; it keeps the Pipeline's public face (``named_steps['scale'].transform``,
  ``named_steps['reg'].coef_``), which the explanations read;
* :class:`TreeEnsemble` -- HistGradientBoostingRegressor (squared error, numeric features):
  every tree's nodes concatenated into flat arrays, all trees walked at once, the leaf
  values added tree by tree onto the baseline, as scikit-learn adds them.

A fitted scikit-learn regressor converts with :func:`compact_state` (at save time, and
when an older skops model file is read); :func:`compact_from_state` rebuilds the classes
from the arrays. Nothing here imports scikit-learn.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

#: rows x trees walked at once: bounds the index arrays of a large batch (~8 MB each)
_CELLS_PER_CHUNK = 1 << 20


def _checked(X: Any, n_features: int, name: str) -> np.ndarray:
    """X as a float64 matrix with ``n_features`` columns; NaN/inf refused for the linear
    models (scikit-learn's input check refuses them too, with a ValueError)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != n_features:
        raise ValueError(f"X has {X.shape[-1] if X.ndim else 0} features, but {name} is "
                         f"expecting {n_features} features as input.")
    return X


class Standardiser:
    """StandardScaler's ``transform``: subtract the training mean, divide by the scale."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray) -> None:
        self.mean_ = np.asarray(mean, dtype=np.float64)
        self.scale_ = np.asarray(scale, dtype=np.float64)

    def transform(self, X: Any) -> np.ndarray:
        X = _checked(X, len(self.mean_), "StandardScaler").copy()
        X -= self.mean_
        X /= self.scale_
        return X


class LinearCoefficients:
    """A linear model's ``predict``: ``X @ coef_ + intercept_``."""

    def __init__(self, coef: np.ndarray, intercept: float, name: str = "linear model") -> None:
        self.coef_ = np.asarray(coef, dtype=np.float64)
        self.intercept_ = float(intercept)
        self.name = name

    def predict(self, X: Any) -> np.ndarray:
        X = _checked(X, len(self.coef_), self.name)
        if not np.isfinite(X).all():
            raise ValueError(f"Input X contains {'NaN' if np.isnan(X).any() else 'infinity'}"
                             f" ({self.name} needs finite features).")
        return X @ self.coef_ + self.intercept_


class LinearPipeline:
    """StandardScaler + Ridge/Lasso, with the Pipeline's ``named_steps``."""

    def __init__(self, scale: Standardiser, reg: LinearCoefficients) -> None:
        self.named_steps = {"scale": scale, "reg": reg}

    def predict(self, X: Any) -> np.ndarray:
        return self.named_steps["reg"].predict(self.named_steps["scale"].transform(X))


class TreeEnsemble:
    """The trees of a HistGradientBoostingRegressor as flat node arrays.

    ``roots[t]`` is tree t's root in the concatenated arrays; ``left``/``right`` are
    indices into them. A row goes left when its value is NaN and the node sends missing
    values left, or when it is ``<= threshold``; the prediction is ``baseline + leaf_0 +
    leaf_1 + ...`` summed in tree order (``np.cumsum`` is sequential, as scikit-learn's
    loop is)."""

    def __init__(self, baseline: float, roots: np.ndarray, feature: np.ndarray,
                 threshold: np.ndarray, missing_left: np.ndarray, left: np.ndarray,
                 right: np.ndarray, is_leaf: np.ndarray, value: np.ndarray,
                 n_features: int) -> None:
        self.baseline = float(baseline)
        self.roots = np.asarray(roots, dtype=np.int64)
        self.feature = np.asarray(feature, dtype=np.int64)
        self.threshold = np.asarray(threshold, dtype=np.float64)
        self.missing_left = np.asarray(missing_left, dtype=bool)
        self.left = np.asarray(left, dtype=np.int64)
        self.right = np.asarray(right, dtype=np.int64)
        self.is_leaf = np.asarray(is_leaf, dtype=bool)
        self.value = np.asarray(value, dtype=np.float64)
        self.n_features = int(n_features)
        n = len(self.value)
        if not (len(self.feature) == len(self.threshold) == len(self.missing_left) == n
                == len(self.left) == len(self.right) == len(self.is_leaf)):
            raise ValueError("tree arrays of different lengths")
        inner = ~self.is_leaf
        for name, idx in (("roots", self.roots), ("left", self.left[inner]),
                          ("right", self.right[inner])):
            if len(idx) and (idx.min() < 0 or idx.max() >= n):
                raise ValueError(f"tree node index out of range in {name}")
        if inner.any() and (self.feature[inner].min() < 0
                            or self.feature[inner].max() >= self.n_features):
            raise ValueError("tree feature index out of range")
        # a leaf points at itself, so walking past it stays put
        self.left = np.where(inner, self.left, np.arange(n))
        self.right = np.where(inner, self.right, np.arange(n))
        self.feature = np.where(inner, self.feature, 0)

    def leaves(self, X: np.ndarray) -> np.ndarray:
        """The leaf each row reaches in each tree (rows x trees)."""
        node = np.broadcast_to(self.roots, (len(X), len(self.roots))).copy()
        rows = np.arange(len(X))[:, None]
        for _ in range(len(self.value)):  # a walk is never longer than the node count
            active = ~self.is_leaf[node]
            if not active.any():
                return node
            x = X[rows, self.feature[node]]
            go_left = np.where(np.isnan(x), self.missing_left[node], x <= self.threshold[node])
            node = np.where(active, np.where(go_left, self.left[node], self.right[node]), node)
        raise ValueError("a tree has a cycle")

    def predict(self, X: Any) -> np.ndarray:
        X = _checked(X, self.n_features, "HistGradientBoostingRegressor")
        out = np.empty(len(X))
        step = max(1, _CELLS_PER_CHUNK // max(1, len(self.roots)))
        for s in range(0, len(X), step):
            vals = self.value[self.leaves(X[s:s + step])]
            # 0 + baseline, then each tree's leaf in tree order: scikit-learn's sums
            start = np.zeros((len(vals), 1)) + self.baseline
            out[s:s + step] = np.cumsum(np.hstack([start, vals]), axis=1)[:, -1]
        return out


def _sklearn_linear_state(reg: Any) -> dict[str, Any]:
    scale, lin = reg.named_steps["scale"], reg.named_steps["reg"]
    if not (scale.with_mean and scale.with_std) or np.ndim(lin.coef_) != 1:
        raise ValueError("only StandardScaler (with mean and std) + a single-output linear "
                         "model converts to arrays")
    return {"kind": "linear", "name": type(lin).__name__,
            "mean": np.asarray(scale.mean_, np.float64),
            "scale": np.asarray(scale.scale_, np.float64),
            "coef": np.asarray(lin.coef_, np.float64), "intercept": float(lin.intercept_)}


def _sklearn_trees_state(reg: Any) -> dict[str, Any]:
    # the trees live in private attributes (``_predictors``, ``_baseline_prediction``):
    # scikit-learn has no public view of them; a version that renames them fails here, at
    # save or conversion time, never with a silently different prediction
    if reg.loss != "squared_error" or reg.n_trees_per_iteration_ != 1 \
            or getattr(reg, "_preprocessor", None) is not None:
        raise ValueError("only a squared-error HistGradientBoostingRegressor on numeric "
                         "features converts to arrays")
    trees = [it[0].nodes for it in reg._predictors]
    if any(t["is_categorical"].any() for t in trees):
        raise ValueError("categorical splits do not convert to arrays")
    sizes = np.array([len(t) for t in trees], dtype=np.int64)
    offset = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    nodes = np.concatenate(trees) if trees else np.zeros(0, dtype=[("value", "f8")])
    shift = np.repeat(offset, sizes)
    return {"kind": "trees", "baseline": float(np.ravel(reg._baseline_prediction)[0]),
            "n_features": int(reg.n_features_in_), "roots": offset,
            "feature": nodes["feature_idx"].astype(np.int64),
            "threshold": nodes["num_threshold"].astype(np.float64),
            "missing_left": nodes["missing_go_to_left"].astype(bool),
            "left": nodes["left"].astype(np.int64) + shift,
            "right": nodes["right"].astype(np.int64) + shift,
            "is_leaf": nodes["is_leaf"].astype(bool),
            "value": nodes["value"].astype(np.float64)}


def compact_state(reg: Any) -> dict[str, Any]:
    """The plain arrays of a fitted regressor: a scikit-learn linear pipeline or
    HistGradientBoostingRegressor, or one of the classes here (already compact)."""
    if isinstance(reg, LinearPipeline):
        scale, lin = reg.named_steps["scale"], reg.named_steps["reg"]
        return {"kind": "linear", "name": lin.name, "mean": scale.mean_, "scale": scale.scale_,
                "coef": lin.coef_, "intercept": lin.intercept_}
    if isinstance(reg, TreeEnsemble):
        return {"kind": "trees", "baseline": reg.baseline, "n_features": reg.n_features,
                "roots": reg.roots, "feature": reg.feature, "threshold": reg.threshold,
                "missing_left": reg.missing_left, "left": reg.left, "right": reg.right,
                "is_leaf": reg.is_leaf, "value": reg.value}
    if hasattr(reg, "named_steps"):
        return _sklearn_linear_state(reg)
    if hasattr(reg, "_predictors"):
        return _sklearn_trees_state(reg)
    raise ValueError(f"cannot store a {type(reg).__name__} as arrays")


def compact_from_state(state: Any) -> LinearPipeline | TreeEnsemble:
    """The predictor of :func:`compact_state`'s arrays; an older skops file's fitted
    scikit-learn regressor is converted on the way (so every loaded model predicts alike)."""
    if not isinstance(state, Mapping):
        return compact_from_state(compact_state(state))
    if state.get("kind") == "linear":
        return LinearPipeline(Standardiser(state["mean"], state["scale"]),
                              LinearCoefficients(state["coef"], state["intercept"],
                                                 str(state.get("name", "linear model"))))
    if state.get("kind") == "trees":
        return TreeEnsemble(**{k: state[k] for k in (
            "baseline", "roots", "feature", "threshold", "missing_left", "left", "right",
            "is_leaf", "value", "n_features")})
    raise ValueError(f"unknown regressor state kind {state.get('kind')!r}")
