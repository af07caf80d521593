"""The learners of the unseen-target model: the standardised deviation from the system
mean, predicted from the features.

Why standardised: one (model, method) pair -- a *system* -- is one score scale (SumEval
accuracy ~82, me5-small probe macro-F1 ~50), so a learner predicts
z = (score - mean_mm) / sd_mm, and one slope serves every system in its own units while
the system's level is never shrunk by regularisation:

* ``ridge`` -- StandardScaler + Ridge(alpha), alpha chosen by nested CV;
* ``lasso`` -- StandardScaler + Lasso(alpha): a sparse linear model. Why: an unseen target
  is learnt from 14-21 other targets, and a ridge over ~70 correlated columns spreads its
  weight over all of them; the lasso keeps the few that carry the target's level
  (pretraining size, label-free entropy, a distance or two). alpha is in units of the
  standardised deviation, so one grid serves every system;
* ``hgb``   -- HistGradientBoosting (interactions, e.g. pretraining x distance).

Why a cached feature matrix and not raw rows: nested cross-validation fits hundreds of
models, and featurising (URIEL look-ups) once per outer fold instead of once per fit is
what makes it affordable on two cores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from predictor.models.baselines import GroupMean
from predictor.models.compact import compact_from_state, compact_state

LEARNED = ("ridge", "lasso", "hgb")
BASES = ("mm", "mm_class")
SCOPES = ("pooled", "design")

# the nested-CV grid: small on purpose (two shared cores), each value a real alternative
GRID: dict[str, list[dict[str, Any]]] = {
    "ridge": [{"alpha": a} for a in (100.0, 1000.0, 10000.0)],
    "lasso": [{"alpha": a} for a in (0.01, 0.03, 0.1, 0.3)],
    # the second (larger) HGB only for the measured-target model: within-target deviations
    # with pair memory have many rows per target; unseen targets have 15-22 groups
    "hgb": [{"max_leaf_nodes": 7, "min_samples_leaf": 100, "learning_rate": 0.1,
             "max_iter": 150, "l2_regularization": 1.0},
            {"max_leaf_nodes": 15, "min_samples_leaf": 20, "learning_rate": 0.1,
             "max_iter": 300, "l2_regularization": 1.0}],
}

# The within-target stage of the unseen-target model (``ZModel(within=...)``): declared
# once, not tuned (the nested CV decides per system only whether to use it). The larger tree
# of the measured-target grid, because the within-target structure it learns (which sources
# suit which target) is what that grid's trees learn for measured targets.
WITHIN_HGB: dict[str, Any] = {"max_leaf_nodes": 15, "min_samples_leaf": 20,
                              "learning_rate": 0.1, "max_iter": 300, "l2_regularization": 1.0}


def make_regressor(family: str, params: Mapping[str, Any], random_state: int = 0) -> Any:
    """An unfitted sklearn regressor on the feature matrix.

    scikit-learn's estimators are imported here, not at the top: only fitting builds
    them, and a query (which predicts with :mod:`predictor.models.compact`) starts ~0.1 s
    sooner without their modules."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import Lasso, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if family == "ridge":
        return Pipeline([("scale", StandardScaler()), ("reg", Ridge(alpha=params["alpha"]))])
    if family == "lasso":
        return Pipeline([("scale", StandardScaler()),
                         ("reg", Lasso(alpha=params["alpha"], max_iter=5000))])
    if family == "hgb":
        return HistGradientBoostingRegressor(random_state=random_state, **params)
    raise ValueError(f"unknown learner {family!r}; choose one of {LEARNED}")


def spec_name(family: str, params: Mapping[str, Any], base: str | None = None,
              scope: str | None = None) -> str:
    """'ridge(alpha=100)|base=mm_class|per-design' -- how a grid point is written in the card."""
    inner = ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in sorted(params.items()))
    s = f"{family}({inner})"
    if base is not None:
        s += f"|base={base}"
    if scope is not None:
        s += "|per-design" if scope == "design" else "|pooled"
    return s


def _base_name(base: str) -> str:
    return "mm_class_mean" if base == "mm_class" else "mm_mean"


class ZModel:
    """base + sd_mm * regressor(X) [+ sd_mm * within(X)]: a learner of the standardised
    deviation per system, optionally followed by a within-target stage.

    ``base`` 'mm' is the system mean, 'mm_class' the (system, pretraining class) mean
    (backing off to 'mm'); sd_mm is the system's score SD. ``scope`` 'pooled' fits one
    regressor on every system (slopes shared in SD units), 'design' one per system --
    nothing shared between score scales.

    ``within`` (HGB parameters, e.g. :data:`WITHIN_HGB`, or None): per system, a tree
    ensemble fitted on the first stage's residuals *centred within each training target*.
    Why: the first stage is fitted mostly on differences between targets (a target's level
    moves 10-30 points, its configurations 1-3), so its slopes say little about which
    source set suits a given target; the centred residuals hold only that within-target
    part, learnt from every other target, and a new target's configurations are ordered
    by it without moving the target's level (the centring keeps the stage's mean near 0).
    """

    def __init__(self, family: str, params: Mapping[str, Any], random_state: int = 0,
                 base: str = "mm", scope: str = "pooled",
                 within: Mapping[str, Any] | None = None,
                 within_designs: Sequence[str] | None = None) -> None:
        self.family = family
        self.params = dict(params)
        self.random_state = random_state
        self.base = base
        self.scope = scope
        self.within = dict(within) if within else None
        # the systems that get the within-target stage (None: every system); a spec chosen
        # for some systems only need not grow trees for the others
        self.within_designs = None if within_designs is None else set(map(str, within_designs))

    def fit(self, X: np.ndarray, y: np.ndarray, meta: pd.DataFrame) -> ZModel:
        y = np.asarray(y, float)
        mm = meta["mm"].astype(str).to_numpy()
        g = pd.Series(y).groupby(mm)
        self.sd_ = {str(k): float(v) if v > 1e-9 else 1.0
                    for k, v in g.std(ddof=0).fillna(1.0).items()}
        self.base_ = GroupMean(_base_name(self.base)).fit(None, y, meta)
        z = (y - self.base_.predict(None, meta)) / self._sd(mm)
        self.regs_ = {}
        if self.scope == "design":
            for m in np.unique(mm):
                sel = mm == m
                self.regs_[str(m)] = make_regressor(self.family, self.params,
                                                    self.random_state).fit(X[sel], z[sel])
        else:
            self.regs_["*"] = make_regressor(self.family, self.params,
                                             self.random_state).fit(X, z)
        self.within_regs_ = {}
        if self.within:
            self._fit_within(X, z, mm, meta)
        return self

    def _fit_within(self, X: np.ndarray, z: np.ndarray, mm: np.ndarray,
                    meta: pd.DataFrame) -> None:
        """The within-target stage on the first stage's in-sample residuals (in SD units),
        centred per (system, target); a system with fewer than two targets has none to
        learn from."""
        resid = z - self._stage1_z(X, mm)
        tg = meta["target"].astype(str).to_numpy()
        centred = resid - pd.Series(resid).groupby([mm, tg]).transform("mean").to_numpy()
        for m in np.unique(mm):
            sel = mm == m
            if len(np.unique(tg[sel])) < 2 or (self.within_designs is not None
                                               and str(m) not in self.within_designs):
                continue
            self.within_regs_[str(m)] = make_regressor(
                "hgb", self.within, self.random_state).fit(X[sel], centred[sel])

    def _sd(self, mm: np.ndarray) -> np.ndarray:
        codes, uniq = pd.factorize(np.asarray(mm, dtype=object))
        if (codes < 0).any():
            return np.array([self.sd_.get(str(m), 1.0) for m in mm])
        return np.array([self.sd_.get(str(m), 1.0) for m in uniq.tolist()], dtype=float)[codes] \
            if len(mm) else np.zeros(0)

    def _stage1_z(self, X: np.ndarray, mm: np.ndarray) -> np.ndarray:
        z = np.zeros(len(mm))
        if "*" in self.regs_:
            z = self.regs_["*"].predict(X) if len(mm) else z
        else:
            for m in np.unique(mm):
                if str(m) in self.regs_:
                    sel = mm == m
                    z[sel] = self.regs_[str(m)].predict(X[sel])
        return z

    def predict(self, X: np.ndarray, meta: pd.DataFrame, *, within: bool = True) -> np.ndarray:
        """Predictions; ``within=False`` leaves the within-target stage out (what the
        first stage alone says: the nested CV compares both from one fit)."""
        mm = meta["mm"].astype(str).to_numpy()
        z = self._stage1_z(X, mm)
        if within and self.within_regs_:
            for m in np.unique(mm):
                reg = self.within_regs_.get(str(m))
                if reg is not None:
                    sel = mm == m
                    z[sel] = z[sel] + reg.predict(X[sel])
        return self.base_.predict(None, meta) + self._sd(mm) * z

    # plain state (numbers, strings, arrays: predictor.persist stores it without pickle)
    def to_state(self) -> dict[str, Any]:
        """The fitted model as plain data; each regressor as its arrays
        (:func:`predictor.models.compact.compact_state`)."""
        return {"family": self.family, "params": dict(self.params), "base": self.base,
                "scope": self.scope, "sd": dict(self.sd_),
                "regs": {k: compact_state(r) for k, r in self.regs_.items()},
                "within": dict(self.within) if self.within else None,
                "within_regs": {k: compact_state(r) for k, r in self.within_regs_.items()},
                "base_tables": self.base_.to_tables(), "base_global": self.base_.global_}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ZModel:
        """The model of :meth:`to_state`, predicting with the compact regressors (an older
        model file's scikit-learn regressors are converted to them)."""
        m = cls(str(state["family"]), dict(state["params"]), base=str(state["base"]),
                scope=str(state["scope"]), within=state["within"])
        m.sd_ = dict(state["sd"])
        m.regs_ = {k: compact_from_state(r) for k, r in state["regs"].items()}
        m.within_regs_ = {k: compact_from_state(r) for k, r in state["within_regs"].items()}
        m.base_ = GroupMean.from_tables(_base_name(m.base), state["base_tables"],
                                        state["base_global"])
        return m
