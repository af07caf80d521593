"""Validation protocols: which rows a question holds out, and the rows they are cut from.

Protocols (outer folds):

* ``unseen_target`` -- leave one target language out (ISO 639-3): "how will it do on my
  language?". Answered by the unseen-target model.
* ``unseen_family`` -- leave a whole target dataset out at once (every AmericasNLI
  language together): the situation of a new low-resource family. A family is left out
  only when every system of its rows keeps training rows.
* ``unseen_config`` -- leave source configurations out (model + method + train_config):
  the target was measured, the configuration was not. Answered by the measured-target
  model (memory of the target's own rows).
* ``random`` -- shuffled 5-fold, the optimistic contrast (measured-target model).

Inner folds (the choice of a spec) are grouped like the outer protocol and cut from the
outer training rows only; :func:`assert_no_leak` checks every grouped split.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, KFold, LeaveOneGroupOut

from measure.store import repeated_scores
from predictor.models.meta import iso_config, row_meta
from predictor.models.references import REFERENCES

PROTOCOLS = ("unseen_target", "unseen_family", "unseen_config", "random")
BASIS = {"unseen_target": "unseen-target", "unseen_family": "unseen-target",
         "unseen_config": "measured-target", "random": "measured-target"}
# comparators that are fair in a protocol (target_mean is a lookup of the held-out target);
# the reference predictors (predictor.models.references) answer for unseen targets
FAIR_BASELINES = {"unseen-target": ("mm_mean", "mm_class_mean", *REFERENCES),
                  "measured-target": ("mm_mean", "mm_class_mean", "target_mean")}
GROUP_COLUMN = {"unseen_target": "target_iso3", "unseen_family": "target_iso3",
                "unseen_config": "config_id"}
SELECTION_PROTOCOL = "unseen_target"
INNER_SPLITS = 4
DEDUP_KEY = ["model", "method", "config_id", "target_iso3", "target_dataset"]

Split = tuple[np.ndarray, np.ndarray]


class LeakError(AssertionError):
    """A group (target language or configuration) sits in both train and test of a fold."""


# -- data -------------------------------------------------------------------------------------
def dedupe(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Drop exact duplicate rows: same (model, method, config, target, dataset, score).

    Why: k = 1 cells are identical across the two regimes and the deterministic seeds;
    counting them twice weights those configurations double in every fit and every metric.
    """
    keep = ~repeated_scores(frame, DEDUP_KEY, "score")
    out = frame[keep.to_numpy()].reset_index(drop=True)
    return out, int((~keep).sum())


def prepare(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Deduplicated rows plus the keys every report groups by (mm, pclass, dataset)."""
    d, dropped = dedupe(frame)
    meta = row_meta(d)
    d = d.assign(mm=meta["mm"].to_numpy(), pclass=meta["pclass"].to_numpy(),
                 config_iso=meta["config"].tolist(),
                 dataset=(d["origin"].astype(str) + ":" + d["model"].astype(str) + ":"
                          + d["target_dataset"].astype(str)).to_numpy())
    return d, dropped


def meta_of(frame: pd.DataFrame) -> pd.DataFrame:
    """The models' ``meta`` (see :func:`predictor.models.row_meta`) of a :func:`prepare`d
    frame, from the keys it already carries."""
    if "config_iso" in frame:
        cfg = frame["config_iso"].tolist()
    else:
        cfg = [iso_config(tc) for tc in frame["train_config"]]
    return pd.DataFrame({"mm": frame["mm"].to_numpy(), "pclass": frame["pclass"].to_numpy(),
                         "target": frame["target_iso3"].astype(str).to_numpy(), "config": cfg})


# -- splits -----------------------------------------------------------------------------------
def protocol_groups(frame: pd.DataFrame, protocol: str) -> np.ndarray | None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown CV protocol {protocol!r}; choose one of {PROTOCOLS}")
    col = GROUP_COLUMN.get(protocol)
    return None if col is None else frame[col].astype(str).to_numpy()


def protocol_splits(frame: pd.DataFrame, protocol: str, *, n_splits: int = 10,
                    seed: int = 0) -> list[Split]:
    """(train_idx, test_idx) outer folds of a protocol; grouped ones are checked for leaks."""
    groups = protocol_groups(frame, protocol)
    idx = np.arange(len(frame))
    if protocol == "unseen_target":
        if len(np.unique(groups)) < 2:
            raise ValueError("unseen_target CV needs at least two target languages")
        splits = list(LeaveOneGroupOut().split(idx, groups=groups))
    elif protocol == "unseen_family":
        splits = _family_split(frame, groups)
    elif protocol == "unseen_config":
        n_groups = len(np.unique(groups))
        if n_groups < 2:
            raise ValueError("unseen_config CV needs at least two training configurations")
        splits = list(GroupKFold(n_splits=min(n_splits, n_groups), shuffle=True,
                                 random_state=seed).split(idx, groups=groups))
    else:
        splits = list(KFold(n_splits=min(5, len(frame)), shuffle=True,
                            random_state=seed).split(idx))
    if groups is not None:
        assert_no_leak(splits, groups)
    return splits


def _family_split(frame: pd.DataFrame, groups: np.ndarray) -> list[Split]:
    """The smallest target dataset (family) that can be left out: every system of its rows
    keeps training rows, and it holds at least two targets (AmericasNLI)."""
    idx = np.arange(len(frame))
    fam = frame["target_dataset"].astype(str).to_numpy()
    mm = (frame["model"].astype(str) + "|" + frame["method"].astype(str)).to_numpy()
    for f in sorted(np.unique(fam), key=lambda v: (fam == v).sum()):
        test = idx[fam == f]
        train = idx[fam != f]
        if len(train) and set(mm[test]) <= set(mm[train]) and len(np.unique(groups[test])) >= 2:
            return [(train, test)]
    return []


def inner_splits(frame: pd.DataFrame, train: np.ndarray, protocol: str, *,
                 seed: int = 0, logo_max: int = 0) -> list[Split]:
    """Inner folds inside an outer training set (indices into ``frame``), grouped like the
    outer protocol: a target (or configuration) is never on both sides of an inner fold.
    Target-grouped folds leave one target out when there are at most ``logo_max`` targets
    (see :class:`predictor.selection.SelectionSettings`), else 4 grouped folds."""
    groups = protocol_groups(frame, protocol)
    if groups is None:
        n = min(INNER_SPLITS, len(train))
        inner = list(KFold(n_splits=n, shuffle=True, random_state=seed).split(train))
    else:
        g = groups[train]
        n_groups = len(np.unique(g))
        if n_groups < 2:
            raise ValueError(f"{protocol}: an outer training fold has fewer than two groups")
        if GROUP_COLUMN.get(protocol) == "target_iso3" and n_groups <= logo_max:
            # few targets: 4 folds of ~5 targets chose noisily (e.g. trees for SumEval in
            # most outer folds, although they lost on the inner rows of other folds);
            # leave-one-target-out inside as outside
            inner = list(LeaveOneGroupOut().split(train, groups=g))
        else:
            inner = list(GroupKFold(n_splits=min(INNER_SPLITS, n_groups), shuffle=True,
                                    random_state=seed).split(train, groups=g))
    out = [(train[a], train[b]) for a, b in inner]
    if groups is not None:
        assert_no_leak(out, groups)
    return out


def assert_no_leak(splits: Sequence[Split], groups: Sequence[Any]) -> None:
    """Raise ``LeakError`` if any group appears in both the train and test rows of a fold."""
    g = np.asarray(groups).astype(str)
    for i, (train, test) in enumerate(splits):
        both = set(g[train]) & set(g[test])
        if both:
            raise LeakError(f"fold {i}: groups in both train and test: {sorted(both)[:5]}")
