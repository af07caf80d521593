"""The unseen-target model as a function of the feature matrix alone, for explanations.

Why: partial dependence, permutation importance and per-feature contributions (the app's
Features page) change or shuffle one column of ``features.transform`` output and ask the
model again. The system (model/method one-hots) and the pretraining class (coverage flags)
are read back from the columns, so nothing outside the matrix is needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from predictor.arrays import one_thread
from predictor.models import ZModel


class FeatureModel:
    """``predict(X)`` of the unseen-target models (``unseen``: system -> ``ZModel``) on a
    matrix whose columns are ``names`` (the transformer's ``get_feature_names_out()``)."""

    def __init__(self, unseen: Mapping[str, ZModel], names: Sequence[str]) -> None:
        self.unseen = unseen
        self.names = [str(n) for n in names]

    def _meta(self, X: np.ndarray) -> pd.DataFrame:
        X = np.asarray(X, float)
        col = {n: j for j, n in enumerate(self.names)}
        models = [n.split("=", 1)[1] for n in self.names if n.startswith("model=")]
        methods = [n.split("=", 1)[1] for n in self.names if n.startswith("method=")]
        mo = np.array(models)[X[:, [col[f"model={m}"] for m in models]].argmax(axis=1)]
        me = np.array(methods)[X[:, [col[f"method={m}"] for m in methods]].argmax(axis=1)]
        pcl = np.full(len(X), "present", dtype=object)
        if "pretrain_coverage_unknown" in col:
            pcl[X[:, col["pretrain_coverage_unknown"]] > 0.5] = "unknown"
        if "target_absent_from_pretraining" in col:
            pcl[X[:, col["target_absent_from_pretraining"]] > 0.5] = "absent"
        return pd.DataFrame({"mm": np.char.add(np.char.add(mo.astype(str), "|"),
                                               me.astype(str)),
                             "pclass": pcl, "target": "", "config": [{}] * len(X)})

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, float)
        meta = self._meta(X)
        out = np.full(len(X), np.nan)
        with one_thread():
            for key in np.unique(meta["mm"]):
                sel = (meta["mm"] == key).to_numpy()
                out[sel] = self.unseen[str(key)].predict(X[sel],
                                                         meta[sel].reset_index(drop=True))
        return out

    def contributions(self, X: np.ndarray) -> np.ndarray | None:
        """Points per feature of the linear first stage (ridge, lasso): sd_mm * coef_j *
        standardised x_j; None when the first stage is a tree. A within-target stage adds
        :meth:`within_points` on top (together they sum to the deviation from the base)."""
        X = np.asarray(X, float)
        meta = self._meta(X)
        out = np.zeros_like(X)
        for key in np.unique(meta["mm"]):
            m = self.unseen[str(key)]
            if m.family not in ("ridge", "lasso"):
                return None
            sel = (meta["mm"] == key).to_numpy()
            reg = m.regs_.get("*", m.regs_.get(str(key)))
            if reg is None:
                continue
            Z = reg.named_steps["scale"].transform(X[sel])
            out[sel] = Z * reg.named_steps["reg"].coef_ * m.sd_.get(str(key), 1.0)
        return out

    def within_points(self, X: np.ndarray) -> np.ndarray | None:
        """Points the within-target stage adds to each row (sd_mm x its prediction; 0 for a
        system without the stage); None when no system has one."""
        X = np.asarray(X, float)
        meta = self._meta(X)
        out = np.zeros(len(X))
        found = False
        with one_thread():
            for key in np.unique(meta["mm"]):
                m = self.unseen[str(key)]
                reg = m.within_regs_.get(str(key))
                if reg is None:
                    continue
                found = True
                sel = (meta["mm"] == key).to_numpy()
                out[sel] = reg.predict(X[sel]) * m.sd_.get(str(key), 1.0)
        return out if found else None
