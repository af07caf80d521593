"""How the predictor is scored: every target language weighs the same.

Why targets and not rows: a target has from a few dozen to thousands of rows, and the
question the predictor answers is "how will it do on my language?". So an error is the
mean over datasets of the mean over targets of the per-target MAE, and uncertainty is a
bootstrap over targets, never over rows.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import spearmanr


def per_target_mae(y: np.ndarray, pred: np.ndarray, targets: np.ndarray) -> pd.Series:
    return pd.Series(np.abs(np.asarray(pred) - np.asarray(y))).groupby(
        np.asarray(targets)).mean()


def tw_mae(y: np.ndarray, pred: np.ndarray, targets: np.ndarray,
           datasets: np.ndarray) -> float:
    """Mean over datasets of the mean over targets of the per-target MAE."""
    err = pd.DataFrame({"e": np.abs(np.asarray(pred) - np.asarray(y)), "t": targets,
                        "d": datasets})
    return target_weighted(err.groupby(["d", "t"])["e"].mean())


def target_weighted(col: pd.Series) -> float:
    """Target-weighted mean of a per-(dataset, target) column (as :func:`tw_mae`): the
    inner CV's tables hold per-target MAEs already, so the choice reuses this step."""
    return float(col.groupby(level=0).mean().mean())


def target_weighted_se(col: pd.Series) -> float:
    """Standard error of :func:`target_weighted` with the targets as the sampling units,
    stratified by dataset: sqrt(sum_d s_d^2 / n_d) / D (a dataset with one target adds
    nothing)."""
    parts = [g.var(ddof=1) / len(g) for _, g in col.dropna().groupby(level=0) if len(g) > 1]
    n_ds = col.dropna().index.get_level_values(0).nunique()
    return float(math.sqrt(sum(parts)) / n_ds) if parts and n_ds else 0.0


def bootstrap_diff(a: np.ndarray, b: np.ndarray, *, n_boot: int = 2000,
                   seed: int = 0) -> tuple[float, float, float]:
    """(mean(a - b), 2.5%, 97.5%) resampling the paired per-target values."""
    d = np.asarray(a, float) - np.asarray(b, float)
    if len(d) < 2:
        return float(d.mean()) if len(d) else math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    return float(d.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho; NaN with fewer than 3 values or a constant side (no order to rank)."""
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(spearmanr(a, b).statistic)


def ndcg_at(y: np.ndarray, score: np.ndarray, k: int = 3) -> float:
    """NDCG@k of the order ``score`` gives, with relevance ``y - min(y)``; NaN when ``y``
    cannot be ordered (fewer than 2 values or constant)."""
    if len(y) < 2 or np.ptp(y) == 0:
        return math.nan
    rel = y - y.min()
    order = np.argsort(-score, kind="stable")[:k]
    ideal = np.sort(rel)[::-1][:k]
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    return float((rel[order] * disc[:len(order)]).sum() / (ideal * disc[:len(ideal)]).sum())
