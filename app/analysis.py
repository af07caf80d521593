"""Pure computations behind the Scaling and Transfer grid pages (no Streamlit).

Why separate: the numbers a page shows (fitted slopes, medians, the transfer matrix)
are the research result, so they live in plain functions that tests call directly
with known inputs.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

CELL_KEYS = ["regime", "target_group", "cell_hash", "k", "seed", "sources"]


def cell_points(rows: pd.DataFrame, adjust_targets: bool = True) -> pd.DataFrame:
    """One point per (training cell, target group): mean macro-F1 over the group's targets.

    Why per cell: each cell is one independent training run; averaging its targets
    within a group keeps a run from counting once per target language.

    Why adjust: with zero-shot rows only, the set of targets behind a point changes with
    k (a target that becomes a source drops out), so a raw group mean mixes the effect of
    k with *which* targets remain — e.g. at large k only the AmericasNLI languages are
    left among the low-resource targets, and the raw mean falls. With ``adjust_targets``
    each row's score is taken relative to its target's mean over all runs of the
    (regime, group), plus the group's mean target level: a within-target comparison,
    the same one the report's mixed model makes.
    """
    if rows.empty:
        return pd.DataFrame(columns=[*CELL_KEYS, "macro_f1", "targets"])
    if adjust_targets:
        rows = rows.copy()
        keys = ["regime", "target_group"]
        target_mean = rows.groupby([*keys, "target_language"])["macro_f1"].transform("mean")
        level = (rows.groupby([*keys, "target_language"])["macro_f1"].mean()
                 .groupby(level=[0, 1]).mean().rename("level").reset_index())
        rows = rows.merge(level, on=keys, how="left")
        rows["macro_f1"] = rows["macro_f1"] - target_mean.to_numpy() + rows["level"]
    return (rows.groupby(CELL_KEYS, as_index=False)
            .agg(macro_f1=("macro_f1", "mean"), targets=("target_language", "nunique")))


def k_summary(points: pd.DataFrame) -> pd.DataFrame:
    """Median and interquartile range of the points per (regime, group, k)."""
    if points.empty:
        return pd.DataFrame(columns=["regime", "target_group", "k", "median", "q25", "q75", "n"])
    g = points.groupby(["regime", "target_group", "k"])["macro_f1"]
    return pd.DataFrame({"median": g.median(), "q25": g.quantile(0.25), "q75": g.quantile(0.75),
                         "n": g.size()}).reset_index()


def fit_log2(points: pd.DataFrame) -> pd.DataFrame:
    """OLS of macro-F1 on log2(k) per (regime, group): F1 = a + b * log2(k).

    ``b`` is the change in macro-F1 per doubling of the number of supervised languages;
    ``a`` the fitted single-language score. Groups with fewer than two distinct k (or
    fewer than three points) get no fit. Columns: regime, target_group, a, b, b_lo,
    b_hi (95% CI), r2, points, k_min, k_max.
    """
    cols = ["regime", "target_group", "a", "b", "b_lo", "b_hi", "r2", "points", "k_min", "k_max"]
    out = []
    for (regime, group), g in points.groupby(["regime", "target_group"]):
        x = np.log2(g["k"].to_numpy(float))
        y = g["macro_f1"].to_numpy(float)
        if len(np.unique(x)) < 2 or len(x) < 3:
            continue
        res = stats.linregress(x, y)
        t = stats.t.ppf(0.975, len(x) - 2)
        out.append({"regime": regime, "target_group": group, "a": float(res.intercept),
                    "b": float(res.slope), "b_lo": float(res.slope - t * res.stderr),
                    "b_hi": float(res.slope + t * res.stderr), "r2": float(res.rvalue ** 2),
                    "points": int(len(x)), "k_min": int(g["k"].min()), "k_max": int(g["k"].max())})
    return pd.DataFrame(out, columns=cols)


def fitted_curves(fits: pd.DataFrame, n: int = 40) -> pd.DataFrame:
    """Dense (k, fitted F1) points of each fit, for drawing the curve."""
    rows = []
    for f in fits.itertuples():
        for k in np.geomspace(f.k_min, f.k_max, n) if f.k_max > f.k_min else [f.k_min]:
            rows.append({"regime": f.regime, "target_group": f.target_group, "k": float(k),
                         "fit": f.a + f.b * math.log2(k)})
    return pd.DataFrame(rows, columns=["regime", "target_group", "k", "fit"])


def transfer_matrix(rows: pd.DataFrame) -> pd.DataFrame:
    """Single-source transfer: mean macro-F1 (over seeds and regimes) per (source, target).

    ``rows`` must already be filtered to one model/method/pool; only k == 1 cells are
    used. Columns: source, target, macro_f1, sd, runs, zero_shot.
    """
    single = rows[rows["k"] == 1]
    if single.empty:
        return pd.DataFrame(columns=["source", "target", "macro_f1", "sd", "runs", "zero_shot"])
    g = single.groupby(["source_language", "target_language"])["macro_f1"]
    out = pd.DataFrame({"macro_f1": g.mean(), "sd": g.std(ddof=1).fillna(0.0),
                        "runs": g.size()}).reset_index()
    out = out.rename(columns={"source_language": "source", "target_language": "target"})
    out["zero_shot"] = out["source"] != out["target"]
    return out
