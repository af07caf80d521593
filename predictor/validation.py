"""Grouped cross-validation: how well does the predictor do on what it has never seen?

Three protocols, each run for every candidate (baselines included) into one table:

* ``unseen_target`` -- leave one target language out (``LeaveOneGroupOut`` on the
  target's ISO 639-3 code). This is the question users ask ("how will it do on *my*
  language?"), so the shipped model is chosen by it.
* ``unseen_config`` -- leave source configurations out (``GroupKFold`` on
  model + method + train_config, all seeds and targets of a configuration together).
* ``random`` -- plain shuffled ``KFold``: the optimistic number, for contrast.

Metrics: MAE, RMSE, Spearman's rho over all out-of-fold predictions, and the mean
within-target Spearman (how well configurations are *ranked* for a fixed target,
which is what ``recommend`` relies on).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.model_selection import GroupKFold, KFold, LeaveOneGroupOut
from threadpoolctl import threadpool_limits

PROTOCOLS = ("unseen_target", "unseen_config", "random")
GROUP_COLUMN = {"unseen_target": "target_iso3", "unseen_config": "config_id"}
SELECTION_PROTOCOL = "unseen_target"

Split = tuple[np.ndarray, np.ndarray]


class LeakError(AssertionError):
    """A group (target language or configuration) sits in both train and test of a fold."""


def protocol_groups(frame: pd.DataFrame, protocol: str) -> np.ndarray | None:
    """The group label per row for a grouped protocol (None for ``random``)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown CV protocol {protocol!r}; choose one of {PROTOCOLS}")
    col = GROUP_COLUMN.get(protocol)
    return None if col is None else frame[col].astype(str).to_numpy()


def protocol_splits(frame: pd.DataFrame, protocol: str, *, n_splits: int = 10,
                    seed: int = 0) -> list[Split]:
    """(train_idx, test_idx) folds for a protocol; grouped protocols are checked for leaks."""
    groups = protocol_groups(frame, protocol)
    idx = np.arange(len(frame))
    if protocol == "unseen_target":
        if len(np.unique(groups)) < 2:
            raise ValueError("unseen_target CV needs at least two target languages")
        splits = list(LeaveOneGroupOut().split(idx, groups=groups))
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


def assert_no_leak(splits: Sequence[Split], groups: Sequence[Any]) -> None:
    """Raise ``LeakError`` if any group appears in both the train and test rows of a fold."""
    g = np.asarray(groups).astype(str)
    for i, (train, test) in enumerate(splits):
        both = set(g[train]) & set(g[test])
        if both:
            raise LeakError(f"fold {i}: groups in both train and test: {sorted(both)[:5]}")


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(spearmanr(a, b).statistic)


def scores(y: np.ndarray, pred: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, pooled Spearman and mean within-target Spearman."""
    err = pred - y
    within = [_spearman(y[targets == t], pred[targets == t]) for t in np.unique(targets)]
    within = [w for w in within if not math.isnan(w)]
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err ** 2))),
            "spearman": _spearman(y, pred),
            "spearman_within_target": float(np.mean(within)) if within else math.nan}


@dataclass
class CVResult:
    """The CV table plus out-of-fold predictions (for the conformal intervals)."""

    table: pd.DataFrame
    oof: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    splits: dict[str, list[Split]] = field(default_factory=dict)


def cross_validate(frame: pd.DataFrame, candidates: Mapping[str, Callable[[], Any]], *,
                   protocols: Sequence[str] = PROTOCOLS, n_splits: int = 10,
                   seed: int = 0) -> CVResult:
    """Out-of-fold predictions of every candidate under every protocol -> one table.

    ``candidates`` maps names to factories of unfitted estimators that take the
    dataset rows as X (see ``predictor.models``).
    """
    y = frame["score"].to_numpy(dtype=float)
    targets = frame["target_iso3"].astype(str).to_numpy()
    rows: list[dict[str, Any]] = []
    result = CVResult(table=pd.DataFrame())
    for protocol in protocols:
        splits = protocol_splits(frame, protocol, n_splits=n_splits, seed=seed)
        result.splits[protocol] = splits
        for name, factory in candidates.items():
            t0 = time.perf_counter()
            pred = np.full(len(frame), np.nan)
            # one thread: the data are tiny, and OpenMP threads on a busy machine make
            # HistGradientBoosting 10-20x slower through oversubscription
            with threadpool_limits(limits=1):
                for train, test in splits:
                    est = factory()
                    est.fit(frame.iloc[train], y[train])
                    pred[test] = est.predict(frame.iloc[test])
            result.oof[(protocol, name)] = pred
            rows.append({"protocol": protocol, "model": name, "folds": len(splits),
                         "rows": len(frame), **scores(y, pred, targets),
                         "seconds": round(time.perf_counter() - t0, 2)})
    result.table = pd.DataFrame(rows)
    return result


def select_model(table: pd.DataFrame, protocol: str = SELECTION_PROTOCOL,
                 metric: str = "mae") -> str:
    """The candidate with the lowest ``metric`` under ``protocol`` (baselines may win)."""
    sub = table[table["protocol"] == protocol]
    if sub.empty:
        raise ValueError(f"the CV table has no rows for protocol {protocol!r}")
    return str(sub.sort_values([metric, "model"]).iloc[0]["model"])


def format_table(table: pd.DataFrame) -> str:
    """The CV table as aligned text, one block per protocol."""
    cols = ["protocol", "model", "folds", "mae", "rmse", "spearman", "spearman_within_target"]
    t = table[cols].copy()
    for c in ("mae", "rmse", "spearman", "spearman_within_target"):
        t[c] = t[c].map(lambda v: "nan" if pd.isna(v) else f"{v:.3f}")
    return t.to_string(index=False)
