"""What labelled target data buys, and how it trades against source languages: the few-shot
arms (``me5-small-probe-few-shot.parquet``) and the exchange rate "one more source language
≈ N target pairs".

Why this model: Muller et al. (2022) found few-shot gains roughly log-linear in the number
of target examples, and the grid finds gains roughly log-linear in k, so both enter per
doubling. The first shots are a jump of their own (log n has no value at n = 0): the curve
is linear from 0 to the smallest measured n, then log-linear. Target fixed effects absorb
how well each target transfers; the design is balanced (every set at every n), so the
shot terms equal the paired within-(set, target) comparisons.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from predictor.metaanalysis.estimates import percentile_ci, twoway_weights, within_solve
from predictor.metaanalysis.prepare import STRATA

FEW_SHOT_MODEL = ("within-target least squares on (source set, target, n) cells, seeds "
                  "averaged: y = a_target + b_k·log2 k + g·[n > 0] + b_n·log2(n / n₀)·[n > 0], "
                  "n₀ the smallest measured n > 0 (the first shots are a jump of their own, "
                  "then log-linear in n)")
EXCHANGE_RULE = ("one more source language = going from k = 1 to k = 2 (one doubling: b_k); "
                 "its worth in labelled target pairs is the N at which the fitted target-data "
                 "curve (0 at n = 0, linear up to n₀, then g + b_n·log2(n / n₀)) reaches b_k; "
                 "0 when b_k ≤ 0; N above the largest measured n is an extrapolation")
FEW_SHOT_CI = ("two-way cluster bootstrap over targets and source sets (percentile 95% CIs); "
               "the exchange rate's CI is the same replicates pushed through the rule")
#: the exchange rate's bootstrap draws are capped here (a curve that never reaches b_k)
PAIRS_CAP = 1e6


def few_shot_rows(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The few-shot design's rows that belong to an arm: a cell with n pairs of the row's own
    target (n > 0), and the plain cell (n = 0) of the same source set for that target.

    A shot cell's other targets were scored after training on someone else's shots: they
    belong to no arm. Columns: STRATA, set_id, target, target_class, seed, k, log2k, n, y.
    """
    shot = df[df["shots"] > 0]
    if shot.empty:
        return pd.DataFrame()
    keys = [*STRATA, "set_id", "target"]
    arms = shot[keys].drop_duplicates()
    plain = df[df["n_shots"] == 0].merge(arms, on=keys, how="inner")
    rows = pd.concat([shot, plain], ignore_index=True)
    return rows.assign(n=rows["shots"].astype(int), y=rows[metric].astype(float))[
        [*keys, "target_class", "seed", "k", "log2k", "n", "y"]]


def pairs_worth(gain: np.ndarray, g: np.ndarray, bn: np.ndarray, n0: float) -> np.ndarray:
    """N target pairs whose fitted gain equals ``gain`` (:data:`EXCHANGE_RULE`), elementwise;
    :data:`PAIRS_CAP` where the curve never gets there."""
    gain, g, bn = (np.asarray(a, float) for a in (gain, g, bn))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        linear = n0 * gain / np.where(g > 0, g, np.nan)
        log = n0 * np.exp2(np.clip((gain - g) / np.where(bn > 0, bn, np.nan), -60, 60))
    out = np.where(gain <= 0, 0.0,
                   np.where((g > 0) & (gain <= g), linear,
                            np.where(bn > 0, log, PAIRS_CAP)))
    return np.minimum(np.nan_to_num(out, nan=PAIRS_CAP), PAIRS_CAP)


def exchange_rate(rows: pd.DataFrame, reps: int = 400, seed: int = 0) -> dict[str, Any] | None:
    """The fitted few-shot model on one stratum and class's arm rows, with the exchange rate
    and two-way bootstrap CIs (None when the rows have no shots or a single k)."""
    cells = rows.groupby(["set_id", "target", "n"], as_index=False).agg(
        y=("y", "mean"), m=("y", "size"), k=("k", "first"), log2k=("log2k", "first"))
    positive = cells["n"][cells["n"] > 0]
    if positive.empty or (cells["n"] == 0).sum() == 0 or cells["k"].nunique() < 2:
        return None
    n0 = float(positive.min())
    n = cells["n"].to_numpy(float)
    has = (n > 0).astype(float)
    X = np.column_stack([cells["log2k"].to_numpy(float), has,
                         np.where(n > 0, np.log2(np.maximum(n, 1) / n0), 0.0)])
    if positive.nunique() < 2:
        X = X[:, :2]
    t_codes, t_idx = np.unique(cells["target"].to_numpy(), return_inverse=True)
    s_codes, s_idx = np.unique(cells["set_id"].to_numpy(), return_inverse=True)
    y, m = cells["y"].to_numpy(float), cells["m"].to_numpy(float)
    W = twoway_weights(t_idx, s_idx, len(t_codes), len(s_codes), reps,
                       np.random.default_rng(seed)) * m
    b0 = within_solve(t_idx, len(t_codes), X, y, m[None, :])[0]
    bb = within_solve(t_idx, len(t_codes), X, y, W)
    if X.shape[1] == 2:
        b0, bb = np.append(b0, np.nan), np.column_stack([bb, np.full(len(bb), np.nan)])
    worth0 = float(pairs_worth(b0[0], b0[1], b0[2], n0))
    worth_b = pairs_worth(bb[:, 0], bb[:, 1], bb[:, 2], n0)
    finite = np.isfinite(bb[:, 0])
    lo, hi = (np.percentile(worth_b[finite], [2.5, 97.5]) if finite.sum() >= 20
              else (np.nan, np.nan))
    out: dict[str, Any] = {"fit_model": FEW_SHOT_MODEL, "exchange_rule": EXCHANGE_RULE,
                           "ci_method": FEW_SHOT_CI, "first_shots": int(n0),
                           "max_shots": int(positive.max()), "targets": sorted(t_codes),
                           "n_targets": len(t_codes), "n_sets": len(s_codes),
                           "n_cells": int(len(cells))}
    for j, name in enumerate(("gain_per_doubling_k", "gain_first_shots",
                              "gain_per_doubling_shots")):
        out[name] = float(b0[j])
        out[name + "_ci"] = list(percentile_ci(bb[:, j]))
    out.update(exchange_pairs=worth0, exchange_pairs_ci=[float(lo), float(hi)],
               extrapolated=bool(worth0 > positive.max()), arms=few_shot_arms(cells))
    return out


def few_shot_arms(cells: pd.DataFrame) -> list[dict]:
    """Per (k, n): the mean over targets of the cells' scores, and the mean paired gain over
    the same (set, target) without shots."""
    base = cells[cells["n"] == 0].set_index(["set_id", "target"])["y"]
    gains = cells.join(base.rename("y0"), on=["set_id", "target"])
    out = []
    for (k, n), g in gains.groupby(["k", "n"]):
        out.append({"k": int(k), "n": int(n),
                    "mean": float(g.groupby("target")["y"].mean().mean()),
                    "gain_vs_none": float((g["y"] - g["y0"]).mean()),
                    "n_cells": int(len(g))})
    return out
