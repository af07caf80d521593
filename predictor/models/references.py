"""The strongest simple predictors we can think of, as estimators the learners must beat.

Why: a group mean is a weak comparator. A learner of unseen targets earns its complexity only
if it beats what a careful analyst would do with the same rows and no learning:

* ``chance_absent`` -- chance (100/3) for a target absent from the model's pretraining, the
  pretraining-class mean otherwise: what "nothing transfers there" predicts;
* ``class_config`` -- the class mean plus how *this configuration* scored on the other
  training targets (its mean deviation from their own means): a lookup of the configuration;
* ``relatives_<distance>`` -- the same configuration's measured scores on the nearest
  training targets (inverse-distance weighted, the 3 nearest), the distance named:
  URIEL ``geographic``, ``genetic``, ``featural``, or ``model`` (the targets' model-space
  profiles: tokenizer statistics and the reference probe's label-free estimates); a
  configuration none of them measured falls back to their target means;
* ``entropy_ols`` -- ordinary least squares on three features, per pretraining class:
  whether the target is supervised (in-language), and the mean and maximum per-source
  predicted-label entropy of the profile probes on the target's unlabelled pairs;
* ``litmus_gbm`` -- gradient-boosted trees on LITMUS's features (Srinivasan et al., 2021:
  typological distances between the target and the sources, the target's pretraining size,
  the number of languages and the data sizes).

Each is fitted per system on training rows only and follows the protocol of every model
here (``fit(X, y, meta) -> self``, ``predict(X, meta) -> ndarray``). The ones that read
features are made by :func:`make_references` from the feature names of the fold.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression

from measure.knowledge.nli import CHANCE
from predictor.features import pair_distances
from predictor.models.baselines import GroupMean

#: the URIEL distances a relatives baseline may use, and the model-space one
RELATIVE_DISTANCES = ("geographic", "genetic", "featural", "model")
#: how many measured relatives answer
RELATIVES_K = 3
#: target-level profile columns that place a target in the model's space (config-independent)
MODEL_SPACE_COLUMNS = ("prof_fertility", "prof_unk_rate", "prof_single_char_share",
                       "prof_confidence", "prof_label_entropy", "prof_atc", "prof_doc",
                       "target_log_pretrain", "target_absent_from_pretraining")
ENTROPY_COLUMNS = ("prof_src_entropy_mean", "prof_src_entropy_max")
LITMUS_PREFIXES = ("dist_",)
LITMUS_COLUMNS = ("target_log_pretrain", "target_absent_from_pretraining", "k",
                  "log_total_examples", "log_target_examples")


def config_keys(meta: pd.DataFrame) -> np.ndarray:
    """A stable string per row for its configuration ({ISO 639-3: n}), the same in every fold
    (``cfg_id`` is numbered per frame)."""
    memo: dict[int, str] = {}
    out = []
    for c in meta["config"].tolist():
        key = memo.get(id(c))
        if key is None:
            key = memo[id(c)] = json.dumps(c, sort_keys=True)
        out.append(key)
    return np.array(out, dtype=object)


def _per_system(meta: pd.DataFrame) -> dict[str, np.ndarray]:
    mm = meta["mm"].astype(str).to_numpy()
    return {m: np.flatnonzero(mm == m) for m in np.unique(mm)}


class ChanceForAbsent(BaseEstimator):
    """Chance for targets absent from pretraining, the system x class mean otherwise."""

    def fit(self, X: Any, y: np.ndarray, meta: pd.DataFrame) -> ChanceForAbsent:
        self.means_ = GroupMean("mm_class_mean").fit(None, y, meta)
        return self

    def predict(self, X: Any, meta: pd.DataFrame) -> np.ndarray:
        out = self.means_.predict(None, meta)
        return np.where(meta["pclass"].astype(str).to_numpy() == "absent", CHANCE, out)


class ConfigLookup(BaseEstimator):
    """The system x class mean plus the configuration's mean deviation from its training
    targets' means (targets of the same class when two or more measured it, else all)."""

    def fit(self, X: Any, y: np.ndarray, meta: pd.DataFrame) -> ConfigLookup:
        y = np.asarray(y, float)
        self.means_ = GroupMean("mm_class_mean").fit(None, y, meta)
        f = pd.DataFrame({"mm": meta["mm"].astype(str).to_numpy(),
                          "pclass": meta["pclass"].astype(str).to_numpy(),
                          "target": meta["target"].astype(str).to_numpy(),
                          "cfg": config_keys(meta), "y": y})
        f["dev"] = f["y"] - f.groupby(["mm", "target"])["y"].transform("mean")
        by_class = f.groupby(["mm", "pclass", "cfg"]).agg(dev=("dev", "mean"),
                                                          n=("target", "nunique"))
        self.class_dev_ = by_class[by_class["n"] >= 2]["dev"].to_dict()
        self.all_dev_ = f.groupby(["mm", "cfg"])["dev"].mean().to_dict()
        return self

    def predict(self, X: Any, meta: pd.DataFrame) -> np.ndarray:
        base = self.means_.predict(None, meta)
        mm = meta["mm"].astype(str).tolist()
        pcl = meta["pclass"].astype(str).tolist()
        dev = [self.class_dev_.get((m, p, c), self.all_dev_.get((m, c), 0.0))
               for m, p, c in zip(mm, pcl, config_keys(meta))]
        return base + np.asarray(dev, float)


class Relatives(BaseEstimator):
    """The same configuration's measured score on the ``k`` nearest training targets
    (inverse-distance weighted) by ``distance``; the relatives' target means where none of
    them measured the configuration; the system x class mean where no distance is known."""

    def __init__(self, distance: str = "geographic", k: int = RELATIVES_K,
                 names: Sequence[str] = ()) -> None:
        self.distance = distance
        self.k = k
        self.names = tuple(names)

    def _model_space(self, X: np.ndarray, meta: pd.DataFrame) -> pd.DataFrame:
        cols = [self.names.index(c) for c in MODEL_SPACE_COLUMNS if c in self.names]
        frame = pd.DataFrame(np.asarray(X, float)[:, cols])
        return frame.groupby(meta["target"].astype(str).to_numpy()).mean()

    def fit(self, X: Any, y: np.ndarray, meta: pd.DataFrame) -> Relatives:
        if self.distance not in RELATIVE_DISTANCES:
            raise ValueError(f"unknown distance {self.distance!r}; choose one of "
                             f"{RELATIVE_DISTANCES}")
        y = np.asarray(y, float)
        self.means_ = GroupMean("mm_class_mean").fit(None, y, meta)
        f = pd.DataFrame({"mm": meta["mm"].astype(str).to_numpy(),
                          "target": meta["target"].astype(str).to_numpy(),
                          "cfg": config_keys(meta), "y": y})
        self.scores_ = {m: g.groupby(["cfg", "target"])["y"].mean().unstack()
                        for m, g in f.groupby("mm")}
        self.levels_ = {m: g.groupby("target")["y"].mean() for m, g in f.groupby("mm")}
        if self.distance == "model":
            space = self._model_space(X, meta)
            self.centre_, self.scale_ = space.mean(), space.std(ddof=0).replace(0, 1.0)
            self.space_ = (space - self.centre_) / self.scale_
        return self

    def _distances(self, targets: list[str], known: list[str], X: Any,
                   meta: pd.DataFrame) -> np.ndarray:
        if self.distance != "model":
            return pair_distances(targets, known, self.distance)
        space = (self._model_space(X, meta) - self.centre_) / self.scale_
        a = space.reindex(targets).to_numpy(float)
        b = self.space_.reindex(known).to_numpy(float)
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).mean(axis=2))

    def predict(self, X: Any, meta: pd.DataFrame) -> np.ndarray:
        out = self.means_.predict(None, meta)
        cfg = config_keys(meta)
        tgt = meta["target"].astype(str).to_numpy()
        for m, idx in _per_system(meta).items():
            table = self.scores_.get(m)
            if table is None:
                continue
            targets = sorted(set(tgt[idx]))
            known = [t for t in table.columns if t not in targets] or list(table.columns)
            D = self._distances(targets, known, X, meta)
            for i, t in enumerate(targets):
                d = pd.Series(D[i], index=known).dropna()
                if d.empty:
                    continue
                near = d.sort_values().index[:self.k]
                w = 1.0 / (d[near].to_numpy() + 1e-3)
                rows = idx[tgt[idx] == t]
                vals = table.reindex(cfg[rows])[near].to_numpy(float)
                have = ~np.isnan(vals)
                level = float(np.average(self.levels_[m][near].to_numpy(), weights=w))
                num = (np.nan_to_num(vals) * w).sum(axis=1)
                den = (have * w).sum(axis=1)
                out[rows] = np.where(den > 0, num / np.maximum(den, 1e-12), level)
        return out


class _OnColumns(BaseEstimator):
    """A regressor per system (``by_class``: per system x pretraining class, where the class
    has at least two training targets) on some named feature columns; where no regressor
    applies, the class mean answers."""

    by_class = False

    def __init__(self, names: Sequence[str] = ()) -> None:
        self.names = tuple(names)

    def _groups(self, meta: pd.DataFrame) -> np.ndarray:
        mm = meta["mm"].astype(str).to_numpy(dtype=object)
        if not self.by_class:
            return mm
        return mm + "|" + meta["pclass"].astype(str).to_numpy(dtype=object)

    def _columns(self) -> list[int]:
        raise NotImplementedError

    def _regressor(self) -> Any:
        raise NotImplementedError

    def _matrix(self, X: Any, meta: pd.DataFrame) -> np.ndarray:
        return np.asarray(X, float)[:, self._columns()]

    def fit(self, X: Any, y: np.ndarray, meta: pd.DataFrame) -> _OnColumns:
        y = np.asarray(y, float)
        self.means_ = GroupMean("mm_class_mean").fit(None, y, meta)
        self.regs_ = {}
        if self._columns():
            Z = self._matrix(X, meta)
            groups = self._groups(meta)
            tg = meta["target"].astype(str).to_numpy()
            for g in np.unique(groups):
                idx = np.flatnonzero(groups == g)
                if len(np.unique(tg[idx])) >= 2:
                    self.regs_[g] = self._regressor().fit(Z[idx], y[idx])
        return self

    def predict(self, X: Any, meta: pd.DataFrame) -> np.ndarray:
        out = self.means_.predict(None, meta)
        if self.regs_:
            Z = self._matrix(X, meta)
            groups = self._groups(meta)
            for g in np.unique(groups):
                if g in self.regs_:
                    idx = np.flatnonzero(groups == g)
                    out[idx] = self.regs_[g].predict(Z[idx])
        return out


class EntropyOLS(_OnColumns):
    """OLS on (in-language flag, mean and max per-source predicted-label entropy), one per
    system and pretraining class (a target absent from pretraining is another regime)."""

    by_class = True

    def _columns(self) -> list[int]:
        need = ("log_target_examples", *ENTROPY_COLUMNS)
        return [self.names.index(c) for c in need] if set(need) <= set(self.names) else []

    def _matrix(self, X: Any, meta: pd.DataFrame) -> np.ndarray:
        Z = np.asarray(X, float)[:, self._columns()].copy()
        Z[:, 0] = Z[:, 0] > 0
        return Z

    def _regressor(self) -> Any:
        return LinearRegression()


class LitmusGBM(_OnColumns):
    """Gradient-boosted trees on LITMUS's features (distances, pretraining size, k, sizes)."""

    def _columns(self) -> list[int]:
        return [j for j, n in enumerate(self.names)
                if n.startswith(LITMUS_PREFIXES) and n.endswith("_wmean") or n in LITMUS_COLUMNS]

    def _regressor(self) -> Any:
        return HistGradientBoostingRegressor(max_iter=200, learning_rate=0.1, random_state=0)


#: name -> factory from the fold's feature names; the unseen-target comparators
REFERENCES: dict[str, Callable[[Sequence[str]], Any]] = {
    "chance_absent": lambda names: ChanceForAbsent(),
    "class_config": lambda names: ConfigLookup(),
    **{f"relatives_{d}": (lambda names, d=d: Relatives(d, names=names))
       for d in RELATIVE_DISTANCES},
    "entropy_ols": lambda names: EntropyOLS(names),
    "litmus_gbm": lambda names: LitmusGBM(names),
}


def make_references(names: Sequence[str]) -> dict[str, Any]:
    """{name: unfitted comparator} for a fold whose feature columns are ``names``."""
    return {n: make(list(names)) for n, make in REFERENCES.items()}
