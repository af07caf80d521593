"""The baselines every learner must beat, as ordinary estimators.

Every system (model, method) has its own score scale, so each baseline is a mean *per
system*, fitted on training rows only:

* ``mm_mean``        -- the mean score of the system;
* ``mm_class_mean``  -- the mean per (system, pretraining class of the target: present /
  absent / unknown), falling back to ``mm_mean``;
* ``target_mean``    -- the mean per (system, target language), falling back to
  ``mm_class_mean``: the "look it up" baseline for targets that were measured.

They follow the protocol of every model here (``fit(X, y, meta) -> self``,
``predict(X, meta) -> ndarray``; see :mod:`predictor.models`) and ignore ``X``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from predictor.models.meta import group_key, key_codes

BASELINES = ("mm_mean", "mm_class_mean", "target_mean")


class GroupMean(BaseEstimator):
    """Mean of y per key tuple, backing off along ``LEVELS[name]`` (most to least specific)."""

    LEVELS = {"mm_mean": (("mm",),),
              "mm_class_mean": (("mm", "pclass"), ("mm",)),
              "target_mean": (("mm", "target"), ("mm", "pclass"), ("mm",))}

    def __init__(self, name: str) -> None:
        if name not in self.LEVELS:
            raise ValueError(f"unknown baseline {name!r}; choose one of {sorted(self.LEVELS)}")
        self.name = name

    def fit(self, X: Any, y: np.ndarray, meta: pd.DataFrame) -> GroupMean:
        y = np.asarray(y, float)
        self.tables_ = []
        for keys in self.LEVELS[self.name]:
            k = group_key(meta, keys)
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

    @classmethod
    def from_tables(cls, name: str, tables: Any, global_mean: float) -> GroupMean:
        """A fitted baseline from its stored tables ([[keys, {key: mean}], ...])."""
        m = cls(name)
        m.tables_ = [(tuple(k), dict(t)) for k, t in tables]
        m.global_ = float(global_mean)
        return m

    def to_tables(self) -> list[list[Any]]:
        """The fitted tables as plain lists and dicts (what :meth:`from_tables` reads)."""
        return [[list(k), dict(t)] for k, t in self.tables_]


def _as_float(v: Any) -> float:
    return np.nan if v is None else float(v)
