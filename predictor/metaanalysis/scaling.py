"""The slope of k on the random-set grid, per stratum, metric and target class: the mixed
model, the bootstrap slope and its segments, the slope once the set's best member or "the
set holds the target's best single source" is known, the two null worlds, the per-k means
with intervals, per-target slopes, and the collapse-adjusted slopes.

Why apart from the design records: these are the estimates of the grid, the question as
first asked (does k help?); the design records say what the slope is made of.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from measure.knowledge.coverage import RESOURCE_CLASSES
from predictor.metaanalysis.designs import member_gaps
from predictor.metaanalysis.dilution import best_sources, contains_best, null_world_slopes
from predictor.metaanalysis.estimates import (k_means, mixed_slope, per_target_slopes,
                                              slope_estimates, within_solve)
from predictor.metaanalysis.prepare import METRICS, STRATA, cell_means, select
from predictor.metaanalysis.records import by_stratum_and_class

#: the scores of the collapse-adjusted slopes: macro-F1, what the same-label-share null
#: scores, and the probe's score above it (bootstrap slopes; no mixed model)
COLLAPSE_SCORES = ("macro_f1", "null_f1", "f1_above_null")


def member_cells(stratum: pd.DataFrame, metric: str) -> pd.DataFrame | None:
    """(set, target) → mean best- and mean-member single scores (a single's own score for
    k = 1), members trained on the stratum's whole budget."""
    gaps = member_gaps(stratum, metric)
    singles = stratum[(stratum["k"] == 1) & stratum["zero_shot"]]
    own = singles.groupby(["set_id", "target"], as_index=False)[metric].mean()
    parts = [own.assign(best_member=own[metric], mean_member=own[metric])
             .drop(columns=[metric])]
    if len(gaps):
        parts.append(gaps.groupby(["set_id", "target"], as_index=False)[
            ["best_member", "mean_member"]].mean())
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else None


def _log_estimate(log, stratum: tuple, metric: str, cls: str, rec: dict) -> None:
    log(f"{'/'.join(map(str, stratum))} {metric} {cls}: mixed {rec['slope']:+.2f} "
        f"[{rec['ci_low']:+.2f}, {rec['ci_high']:+.2f}] boot "
        f"[{rec['boot_ci_low']:+.2f}, {rec['boot_ci_high']:+.2f}] "
        f"saturation k {rec['saturation_k']}")


def _solve(cells: pd.DataFrame, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Within-target least-squares coefficients, cells weighted by their seeds."""
    t_codes, t_idx = np.unique(cells["target"].to_numpy(), return_inverse=True)
    return within_solve(t_idx, len(t_codes), X, y, cells["m"].to_numpy(float)[None, :])[0]


def _class_cells(d: pd.DataFrame, metric: str, members: pd.DataFrame | None,
                 best: dict[str, str]) -> pd.DataFrame:
    cells = cell_means(d, metric)
    if members is not None:
        cells = cells.merge(members, on=["set_id", "target"], how="left")
    cells["contains_best"] = contains_best(cells["set_id"], cells["target"], best)
    return cells


def scaling_estimates(df: pd.DataFrame, reps: int = 400, mixed: bool = True,
                      log=None) -> list[dict]:
    """Slope per doubling per stratum × metric × target class (grid design only)."""
    out = []
    grid = df[(df["design"] == "grid") & df["zero_shot"]]
    for st_, sub in grid.groupby(STRATA, sort=True):
        if sub["k"].nunique() < 2:
            continue
        for metric in METRICS:
            if sub[metric].isna().all():
                continue
            stratum = select(df, STRATA, st_)
            members = member_cells(stratum, metric)
            best = best_sources(stratum, metric)
            for cls in RESOURCE_CLASSES:
                d = sub[sub["target_class"] == cls]
                if d["target"].nunique() < 1 or d["k"].nunique() < 2:
                    continue
                cells = _class_cells(d, metric, members, best)
                rec = {**dict(zip(STRATA, st_)), "metric": metric, "target_class": cls,
                       "n_rows": int(len(d)), "n_cells": int(len(cells)),
                       "n_targets": int(d["target"].nunique()),
                       "n_sets": int(d["set_id"].nunique()),
                       "k_min": int(d["k"].min()), "k_max": int(d["k"].max())}
                if mixed and d["target"].nunique() >= 2:
                    rec.update(mixed_slope(cells[["set_id", "target", "log2k", "y", "m", "k"]]))
                else:
                    rec.update(slope=math.nan, ci_low=math.nan, ci_high=math.nan)
                rec.update(slope_estimates(cells, reps=reps))
                if "slope_given_contains_best" in rec:
                    targets = sorted(d["target"].unique())
                    rec["slope_given_contains_best"]["best_sources"] = {
                        t: best[t] for t in targets if t in best}
                if members is not None and cells["mean_member"].notna().all():
                    rec["null_worlds"] = null_world_slopes(cells, _solve)
                rec["per_k_mean"] = k_means(cells, reps=reps)
                if log:
                    _log_estimate(log, st_, metric, cls, rec)
                out.append(rec)
    return out


def per_target(df: pd.DataFrame, reps: int) -> list[dict]:
    """Per target: the within-target slope with a bootstrap over source sets (grid)."""
    out = []
    for st_, sub in df[(df["design"] == "grid") & df["zero_shot"]].groupby(STRATA):
        if sub["k"].nunique() < 2:
            continue
        for metric in METRICS:
            for rec in per_target_slopes(cell_means(sub, metric), reps=min(reps, 300)):
                out.append({**dict(zip(STRATA, st_)), "metric": metric, **rec})
    return out


def collapse_adjusted(df: pd.DataFrame, reps: int) -> list[dict]:
    """Per grid stratum and class: mean macro-F1, the same-label-share null's macro-F1, the
    score above it and kappa (target-balanced), and the slope per doubling of k of the first
    three (two-way bootstrap): how much of a gain is less collapse onto one label."""
    out = []
    grid = df[(df["design"] == "grid") & df["zero_shot"]]
    for st_, cls, gc in by_stratum_and_class(grid):
        if gc["k"].nunique() < 2 or gc["null_f1"].isna().all():
            continue
        rec: dict[str, Any] = {**st_, "target_class": cls,
                               "n_targets": int(gc["target"].nunique())}
        for score in (*COLLAPSE_SCORES, "kappa"):
            rec[score] = float(gc.groupby("target")[score].mean().mean())
        for score in COLLAPSE_SCORES:
            est = slope_estimates(cell_means(gc, score), reps=reps)
            rec[score + "_slope"] = est["slope_within"]
            rec[score + "_slope_ci"] = [est["boot_ci_low"], est["boot_ci_high"]]
        f1 = rec["macro_f1_slope"]
        rec["share_of_slope_from_collapse"] = (rec["null_f1_slope"] / f1
                                               if f1 and f1 > 0 else None)
        out.append(rec)
    return out
