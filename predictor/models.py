"""Baselines and learners of the predictor, on a cached feature matrix.

Why a feature matrix and not raw rows: nested cross-validation fits hundreds of models,
and featurising (URIEL look-ups) once per outer fold instead of once per fit is what
makes it affordable on two cores. The shipped predictor is the same objects behind one
fitted ``TransferFeatures`` (see ``predictor.api``).

Every model works per *design*: one (model, method) pair is one score scale (SumEval
accuracy ~82, me5-small probe macro-F1 ~50), so nothing pools designs:

Baselines (all fitted on training rows only):

* ``mm_mean``        -- the mean score of the (model, method);
* ``mm_class_mean``  -- the mean per (model, method, pretraining class of the target:
  present / absent / unknown), falling back to ``mm_mean``;
* ``target_mean``    -- the mean per (model, method, target language), falling back to
  ``mm_class_mean``: the "look it up" baseline for targets that were measured.

Learners (``LEARNED``) predict the *standardised deviation* from the (model, method)
mean, z = (score - mean_mm) / sd_mm, from the features, so one slope serves every design
in its own units and the design's level is never shrunk by regularisation:

* ``ridge`` -- StandardScaler + Ridge(alpha), alpha chosen by nested CV;
* ``lasso`` -- StandardScaler + Lasso(alpha): a sparse linear model. Why: an unseen target
  is learnt from 14-21 other targets, and a ridge over ~70 correlated columns spreads its
  weight over all of them; the lasso keeps the few that carry the target's level (on the
  shipped data: pretraining size, label-free entropy, a distance or two). alpha is in
  units of the standardised deviation, so one grid serves every design;
* ``hgb``   -- HistGradientBoosting (interactions, e.g. pretraining x distance).

``SeenTargetModel`` is the memory of measured targets: the (model, method, target) mean
plus a learner of the within-target deviation. It is what the predictor answers with
when the target has measurements (``basis = "measured-target"``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Lasso, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from measure.knowledge.coverage import pretraining_class
from measure.knowledge.languages import resolve_target
from predictor.arrays import distinct_objects

BASELINES = ("mm_mean", "mm_class_mean", "target_mean")
LEARNED = ("ridge", "lasso", "hgb")
# accepted by --candidates for old scripts; they pooled designs and are no longer run
LEGACY = ("global_mean", "k_only", "rf")

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


def row_meta(rows: pd.DataFrame) -> pd.DataFrame:
    """Keys every model groups by: mm ('model|method'), pclass, target (ISO 639-3), config
    ({ISO 639-3: n}, one dict per row) and cfg_id (rows with equal configurations share it:
    what :meth:`SeenTargetModel._memory` computes once per configuration)."""
    configs, cfg_id = _iso_configs(rows["train_config"].tolist(), with_ids=True)
    # (model, method, target[, ISO]) is per target, not per row: each distinct one once
    cols = [rows[c].astype(str) for c in ("model", "method", "target", "target_iso3")
            if c in rows] if len(rows) > 256 else []     # a few rows: row by row costs less
    combined = np.zeros(len(rows), dtype=np.int64)
    ok, span = bool(cols), 1
    for col in cols:
        codes, uniq = pd.factorize(col)
        span *= max(len(uniq), 1)
        ok = ok and not (codes < 0).any() and span < 2 ** 62
        combined = combined * max(len(uniq), 1) + codes
    if ok:
        _, first, inverse = np.unique(combined, return_index=True, return_inverse=True)
        sub = row_meta_rows(rows.iloc[first])
        inverse = inverse.reshape(-1)
        return pd.DataFrame({"mm": np.array(sub[0], dtype=object)[inverse],
                             "pclass": np.array(sub[1], dtype=object)[inverse],
                             "target": np.array(sub[2], dtype=object)[inverse],
                             "config": configs, "cfg_id": cfg_id}, index=rows.index)
    mm, pcl, iso = row_meta_rows(rows)
    return pd.DataFrame({"mm": np.array(mm, dtype=object), "pclass": pcl,
                         "target": np.array(iso, dtype=object), "config": configs,
                         "cfg_id": cfg_id}, index=rows.index)


def row_meta_rows(rows: pd.DataFrame) -> tuple[list[str], list[str], list[str]]:
    """(mm, pclass, ISO 639-3 target) of each row, row by row."""
    models = rows["model"].astype(str).tolist()
    mm = [f"{m}|{me}" for m, me in zip(models, rows["method"].astype(str).tolist())]
    targets = rows["target"].astype(str).tolist()
    if "target_iso3" in rows:
        iso = rows["target_iso3"].astype(str).tolist()
    else:
        iso_of: dict[str, str] = {}
        iso = [iso_of[t] if t in iso_of else iso_of.setdefault(t, resolve_target(t).iso639_3)
               for t in targets]
    cache: dict[tuple[str, str], str] = {}
    pcl = []
    for t, m in zip(targets, models):
        if (t, m) not in cache:
            cache[(t, m)] = pretraining_class(t, m)
        pcl.append(cache[(t, m)])
    return mm, pcl, iso


def _iso_configs(configs: list[Any], with_ids: bool = False) -> Any:
    """:func:`_iso_config` of each configuration, each distinct one converted once
    (``recommend`` repeats every source set once per target). Each row gets its own dict.
    ``with_ids``: also the index of each row's distinct configuration (an int array)."""
    memo: dict[tuple, tuple[int, dict[str, float]]] = {}
    iso_of: dict[str, str] = {}
    # each distinct object once (recommend shares a source set's dict between its targets)
    obj_idx, first = distinct_objects(configs)
    of_obj = []
    for i in first.tolist():
        tc = configs[i]
        key = tuple(sorted(dict(tc).items()))
        hit = memo.get(key)
        if hit is None:
            hit = memo[key] = (len(memo), _iso_config(tc, iso_of))
        of_obj.append(hit)
    ids = np.array([h[0] for h in of_obj], dtype=np.int64)[obj_idx] if configs else \
        np.zeros(0, dtype=np.int64)
    out = [dict(of_obj[j][1]) for j in obj_idx.tolist()]
    return (out, ids) if with_ids else out


def _iso_config(tc: Any, iso_of: dict[str, str] | None = None) -> dict[str, float]:
    """{ISO 639-3: n} (so 'sw' and 'swh' are one source language). ``iso_of``: a code ->
    ISO 639-3 memo shared between calls."""
    if iso_of is not None and type(tc) is dict:
        # the common case: every n > 0 and no two codes of one language, so each entry is
        # its own (the loop below would give the same dict, in the same order)
        try:
            fast = {iso_of[lang]: float(n) for lang, n in tc.items() if n and n > 0}
        except (KeyError, TypeError):
            fast = None
        if fast is not None and len(fast) == len(tc):
            return fast
    out: dict[str, float] = {}
    for lang, n in dict(tc).items():
        if n and n > 0:
            if iso_of is None:
                iso = resolve_target(str(lang)).iso639_3
            else:
                iso = iso_of.get(str(lang))
                if iso is None:
                    iso = iso_of[str(lang)] = resolve_target(str(lang)).iso639_3
            out[iso] = out.get(iso, 0.0) + float(n)
    return out


# -- baselines --------------------------------------------------------------------------------
class GroupMean:
    """Mean of y per key tuple, backing off along ``levels`` (most to least specific)."""

    LEVELS = {"mm_mean": (("mm",),),
              "mm_class_mean": (("mm", "pclass"), ("mm",)),
              "target_mean": (("mm", "target"), ("mm", "pclass"), ("mm",))}

    def __init__(self, name: str) -> None:
        if name not in self.LEVELS:
            raise ValueError(f"unknown baseline {name!r}; choose one of {sorted(self.LEVELS)}")
        self.name = name

    def fit(self, X: Any, y: np.ndarray, meta: pd.DataFrame) -> "GroupMean":
        y = np.asarray(y, float)
        self.tables_ = []
        for keys in self.LEVELS[self.name]:
            k = _key(meta, keys)
            self.tables_.append((keys, pd.Series(y).groupby(k).mean().to_dict()))
        self.global_ = float(y.mean())
        return self

    def predict(self, X: Any, meta: pd.DataFrame) -> np.ndarray:
        out = np.full(len(meta), np.nan)
        for keys, table in self.tables_:
            miss = np.isnan(out)
            if not miss.any():
                break
            codes, names = key_codes(meta, keys)
            # one table look-up per distinct key (what Series.map(table) gives each row)
            vals = np.array([_as_float(table.get(k)) for k in names], dtype=float)
            out[miss] = vals[codes[miss]]
        return np.where(np.isnan(out), self.global_, out)


def _as_float(v: Any) -> float:
    return np.nan if v is None else float(v)


def _key(meta: pd.DataFrame, keys: Sequence[str]) -> pd.Series:
    k = meta[keys[0]].astype(str).reset_index(drop=True)
    for c in keys[1:]:
        k = k + "|" + meta[c].astype(str).reset_index(drop=True)
    return k


def key_codes(meta: pd.DataFrame, keys: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """(code of each row, the distinct :func:`_key` strings): each row's key is
    ``names[codes[i]]``, the strings built once per distinct combination. A missing value
    (no key string: ``_key`` gives NaN) falls back to ``_key`` itself."""
    n = len(meta)
    if n <= 256:
        # a few rows: plain lists cost less than factorising each column
        cols = [meta[c].tolist() for c in keys]
        if all(isinstance(v, str) for col in cols for v in col):
            index: dict[str, int] = {}
            codes = np.fromiter((index.setdefault("|".join(parts), len(index))
                                 for parts in zip(*cols)), dtype=np.int64, count=n)
            return codes, list(index)
    combined = np.zeros(n, dtype=np.int64)
    uniques = []
    span = 1
    for c in keys:
        col = meta[c].astype(str)
        codes, uniq = pd.factorize(col)
        span *= max(len(uniq), 1)
        if (codes < 0).any() or span >= 2 ** 62:
            k = _key(meta, keys)
            kc, ku = pd.factorize(k, use_na_sentinel=False)
            return kc.astype(np.int64), [x if isinstance(x, str) else None for x in ku.tolist()]
        combined = combined * len(uniq) + codes
        uniques.append(uniq.tolist())
    ucode, inverse = np.unique(combined, return_inverse=True)
    names = []
    for code in ucode.tolist():
        parts = []
        for uniq in reversed(uniques):
            code, r = divmod(code, len(uniq))
            parts.append(str(uniq[r]))
        names.append("|".join(reversed(parts)))
    return inverse.reshape(-1).astype(np.int64), names


# -- learners ---------------------------------------------------------------------------------
def make_regressor(family: str, params: Mapping[str, Any], random_state: int = 0) -> Any:
    """An unfitted sklearn regressor on the feature matrix (trusted types only)."""
    if family == "ridge":
        return Pipeline([("scale", StandardScaler()), ("reg", Ridge(alpha=params["alpha"]))])
    if family == "lasso":
        return Pipeline([("scale", StandardScaler()),
                         ("reg", Lasso(alpha=params["alpha"], max_iter=5000))])
    if family == "hgb":
        return HistGradientBoostingRegressor(random_state=random_state, **params)
    raise ValueError(f"unknown learner {family!r}; choose one of {LEARNED}")


# The within-target stage of the unseen-target model (``ZModel(within=...)``): declared
# once, not tuned (the nested CV decides per design only whether to use it). The larger tree
# of the measured-target grid, because the within-target structure it learns (which sources
# suit which target) is what that grid's trees learn for measured targets.
WITHIN_HGB: dict[str, Any] = {"max_leaf_nodes": 15, "min_samples_leaf": 20,
                              "learning_rate": 0.1, "max_iter": 300, "l2_regularization": 1.0}


class ZModel:
    """base + sd_mm * regressor(X) [+ sd_mm * within(X)]: a learner of the standardised
    deviation per design, optionally followed by a within-target stage.

    ``base`` 'mm' is the (model, method) mean, 'mm_class' the (model, method, pretraining
    class) mean (backing off to 'mm'); sd_mm is the design's score SD. ``scope`` 'pooled'
    fits one regressor on every design (slopes shared in SD units), 'design' one per
    (model, method) -- nothing shared between score scales.

    ``within`` (HGB parameters, e.g. :data:`WITHIN_HGB`, or None): per design, a tree
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
        # the designs that get the within-target stage (None: every design); a spec chosen
        # for some designs only need not grow trees for the others
        self.within_designs = None if within_designs is None else set(map(str, within_designs))

    def fit(self, X: np.ndarray, y: np.ndarray, meta: pd.DataFrame) -> "ZModel":
        y = np.asarray(y, float)
        mm = meta["mm"].astype(str).to_numpy()
        g = pd.Series(y).groupby(mm)
        self.sd_ = {str(k): float(v) if v > 1e-9 else 1.0
                    for k, v in g.std(ddof=0).fillna(1.0).items()}
        self.base_ = GroupMean("mm_class_mean" if self.base == "mm_class" else "mm_mean") \
            .fit(None, y, meta)
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
        centred per (design, target); a design with fewer than two targets has none to
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

    # plain state of trusted types (skops), and back
    def to_state(self) -> dict[str, Any]:
        return {"family": self.family, "params": dict(self.params), "base": self.base,
                "scope": self.scope, "sd": dict(self.sd_), "regs": dict(self.regs_),
                "within": dict(self.within) if self.within else None,
                "within_regs": dict(self.within_regs_),
                "base_tables": [[list(k), dict(t)] for k, t in self.base_.tables_],
                "base_global": self.base_.global_}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "ZModel":
        # "within" is absent from files written before the within-target stage existed
        m = cls(str(state["family"]), dict(state["params"]), base=str(state["base"]),
                scope=str(state["scope"]), within=state.get("within"))
        m.sd_, m.regs_ = dict(state["sd"]), dict(state["regs"])
        m.within_regs_ = dict(state.get("within_regs") or {})
        m.base_ = GroupMean("mm_class_mean" if m.base == "mm_class" else "mm_mean")
        m.base_.tables_ = [(tuple(k), dict(t)) for k, t in state["base_tables"]]
        m.base_.global_ = float(state["base_global"])
        return m


def _pairs(meta: pd.DataFrame) -> pd.DataFrame:
    """(row, key 'mm|target|source', weight n) for every source language of every row."""
    rows, keys, w = [], [], []
    base = _key(meta, ("mm", "target")).to_numpy()
    for i, (b, tc) in enumerate(zip(base, meta["config"])):
        for lang, n in (tc or {}).items():
            if n and n > 0:
                rows.append(i)
                keys.append(f"{b}|{lang}")
                w.append(float(n))
    return pd.DataFrame({"row": rows, "key": keys, "w": w})


class SeenTargetModel:
    """Memory of measured targets: the (model, method, target) mean of the training rows plus a
    learner of the *within-target* deviation from it (what the configuration changes).

    The learner sees the features plus two memory columns: the size-weighted mean, over the
    row's source languages, of the mean deviation of the target's training rows that used
    that source (LITMUS-style pair memory; 0 when no training row of the target used it),
    and the share of the row's sources with such a memory. Why not the unseen-target
    learner plus a target offset: that learner's slopes are fitted mostly on differences
    *between* targets, and on SumEval adding them to the target mean made
    unseen-configuration predictions worse than the mean alone (0.46 vs 0.36 MAE).
    Rows of a target without measurements fall back to the (model, method, pretraining
    class) mean; the predictor sends those to the unseen-target model instead.
    """

    def __init__(self, family: str, params: Mapping[str, Any], random_state: int = 0,
                 scope: str = "pooled", pair_memory: bool = True) -> None:
        self.family = family
        self.params = dict(params)
        self.random_state = random_state
        self.scope = scope
        self.pair_memory = pair_memory

    def _memory(self, meta: pd.DataFrame) -> np.ndarray:
        """(pair memory, share of sources with one) per row: :func:`_pairs` in array ops.

        Each distinct configuration's sources are listed once (``cfg_id``), each distinct
        (design, target) looks its pair effects up once, and the per-row sums run over the
        sources in the configuration's own order, as :func:`_pairs` + ``np.bincount`` add
        them (the same floating-point sums)."""
        if not self.pair_memory or "config" not in meta:
            return np.zeros((len(meta), 0))
        n = len(meta)
        if n == 0:
            return np.zeros((0, 2))
        configs = meta["config"].tolist()
        if "cfg_id" in meta:
            cid_raw = meta["cfg_id"].to_numpy(dtype=np.int64)
        else:
            seen_obj: dict[int, int] = {}
            cid_raw = np.array([seen_obj.setdefault(id(c), len(seen_obj)) for c in configs],
                               dtype=np.int64)
        ucid, first, cid = np.unique(cid_raw, return_index=True, return_inverse=True)
        cid = cid.reshape(-1)
        langs: dict[str, int] = {}
        flat_l, flat_w, lens = [], [], []
        for r in first.tolist():
            its = [(lang, v) for lang, v in (configs[r] or {}).items() if v and v > 0]
            flat_l += [langs.setdefault(lang, len(langs)) for lang, _ in its]
            flat_w += [float(v) for _, v in its]
            lens.append(len(its))
        width = max(lens, default=0)
        # (distinct configuration x slot) source index, weight and "slot used", slots in the
        # configuration's own order
        n_len = np.array(lens, dtype=np.int64)
        row_of = np.repeat(np.arange(len(lens)), n_len)
        slot = np.arange(len(flat_l)) - np.repeat(np.cumsum(n_len) - n_len, n_len)
        LI = np.zeros((len(lens), width), dtype=np.int64)
        WW = np.zeros((len(lens), width))
        VV = np.zeros((len(lens), width), dtype=bool)
        LI[row_of, slot] = flat_l
        WW[row_of, slot] = flat_w
        VV[row_of, slot] = True
        bcodes, buniq = key_codes(meta, ("mm", "target"))
        lang_list = list(langs)
        E = np.zeros((len(buniq), len(lang_list)))
        K = np.zeros((len(buniq), len(lang_list)), dtype=bool)
        for b, base in enumerate(buniq):
            for li, lang in enumerate(lang_list):
                v = self.pairs_.get(f"{base}|{lang}")
                if v is not None and not (isinstance(v, float) and np.isnan(v)):
                    E[b, li], K[b, li] = float(v), True
        num = np.zeros(n)
        wsum = np.zeros(n)
        known = np.zeros(n)
        count = np.zeros(n)
        for j in range(width):
            li = LI[cid, j]
            w = WW[cid, j]
            v = VV[cid, j]
            num += w * E[bcodes, li]       # padded slots: w = 0, e = 0
            wsum += w
            known += (v & K[bcodes, li])
            count += v
        mem = num / np.maximum(wsum, 1e-12)
        share = known / np.maximum(count, 1)
        return np.column_stack([mem, share])

    def fit(self, X: np.ndarray, y: np.ndarray, meta: pd.DataFrame) -> "SeenTargetModel":
        y = np.asarray(y, float)
        self.means_ = GroupMean("target_mean").fit(None, y, meta)
        dev = y - self.means_.predict(None, meta)
        self.pairs_: dict[str, float] = {}
        if self.pair_memory and "config" in meta:
            p = _pairs(meta)
            self.pairs_ = {str(k): float(v) for k, v in
                           pd.Series(dev[p["row"].to_numpy()]).groupby(p["key"].to_numpy())
                           .mean().items()}
        Xm = np.column_stack([X, self._memory(meta)])
        self.within_ = ZModel(self.family, self.params, self.random_state,
                              scope=self.scope).fit(Xm, dev, meta)
        k = _key(meta, ("mm", "target"))
        self.counts_ = {str(a): int(b) for a, b in k.value_counts().items()}
        return self

    def is_seen(self, meta: pd.DataFrame) -> np.ndarray:
        codes, names = key_codes(meta, ("mm", "target"))
        return np.array([k in self.counts_ for k in names], dtype=bool)[codes]

    def predict(self, X: np.ndarray, meta: pd.DataFrame) -> np.ndarray:
        Xm = np.column_stack([X, self._memory(meta)])
        return self.means_.predict(None, meta) + self.within_.predict(Xm, meta)

    def to_state(self) -> dict[str, Any]:
        return {"tables": [[list(keys), dict(t)] for keys, t in self.means_.tables_],
                "global": self.means_.global_, "within": self.within_.to_state(),
                "counts": dict(self.counts_), "pairs": dict(self.pairs_),
                "pair_memory": self.pair_memory}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "SeenTargetModel":
        within = ZModel.from_state(state["within"])
        m = cls(within.family, within.params, scope=within.scope,
                pair_memory=bool(state.get("pair_memory", False)))
        m.means_ = GroupMean("target_mean")
        m.means_.tables_ = [(tuple(keys), dict(t)) for keys, t in state["tables"]]
        m.means_.global_ = float(state["global"])
        m.within_, m.counts_ = within, dict(state["counts"])
        m.pairs_ = dict(state.get("pairs", {}))
        return m


BASES = ("mm", "mm_class")
SCOPES = ("pooled", "design")


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
