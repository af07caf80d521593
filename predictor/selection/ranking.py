"""How well the predictor orders candidate source sets within a target.

Why a study of its own: a user choosing source languages needs the *order* of the
candidates for one target right, which the MAE does not measure (a target's level can be
off while its candidates are ordered well). The model's out-of-fold predictions are
compared with every single feature a user could rank by without a model -- each URIEL
distance (LangRank's features) and the raw per-source predicted-label entropy of the
target's profile -- and with random orderings, by Spearman, NDCG@3 (LangRank's metric) and
top-1 regret: the score lost by taking the top-ranked set instead of the best measured one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from predictor.selection.metrics import bootstrap_diff, ndcg_at, spearman

RANK_DISTANCES = ("syntactic", "phonological", "inventory", "featural", "genetic", "geographic")
#: the raw per-source entropy (higher: less collapse, better transfer): the zero-parameter
#: comparator of the profile family
ENTROPY_SCORER = ("+entropy", "prof_src_entropy_mean")
# k bands of the fixed-k ranking report and of ``predictor.studies.noise_floor --within-sets``
K_BANDS = ((1, 1, "1"), (2, 2, "2"), (3, 4, "3-4"), (5, 8, "5-8"), (9, 10**6, "9+"))


def top1_regret(y: np.ndarray, score: np.ndarray) -> float:
    """Score points lost by taking the set ``score`` ranks first instead of the best measured
    one (ties in ``score``: their mean)."""
    y, score = np.asarray(y, float), np.asarray(score, float)
    if not len(y) or np.isnan(score).all():
        return float("nan")
    top = score == np.nanmax(score)
    return float(y.max() - y[top].mean())


def ranking_sets(frame: pd.DataFrame) -> pd.Series:
    """The id of each zero-shot row's candidate set: same (system, target, regime, k) with a
    fixed size per language (fixed k) or a fixed total (fixed budget); NaN for other rows."""
    budget = frame["regime"].astype(str).eq("fixed_total")
    kind = np.where(budget, "budget", "k")
    size = np.where(budget, frame["total_examples"].astype(str), frame["k"].astype(str))
    sid = (frame["mm"].astype(str) + "|" + frame["target_iso3"].astype(str) + "|"
           + frame["regime"].astype(str) + "|" + kind + "=" + size)
    return sid.where(frame["zero_shot"].astype(bool))


def _per_set(frame: pd.DataFrame, oof: np.ndarray, features: pd.DataFrame, seed: int,
             n_random: int) -> tuple[pd.DataFrame, list[str]]:
    """(one row per candidate set with each scorer's Spearman and NDCG@3, the scorers)."""
    sid = ranking_sets(frame)
    f = pd.DataFrame({"set": sid, "config": frame["config_id"], "y": frame["score"],
                      "model": oof, "dataset": frame["dataset"],
                      "target": frame["target_iso3"].astype(str)})
    for kind in RANK_DISTANCES:
        col = f"dist_{kind}_wmean"
        if col in features:
            f[f"-{kind}"] = -features[col].to_numpy(float)
    if ENTROPY_SCORER[1] in features:
        f[ENTROPY_SCORER[0]] = features[ENTROPY_SCORER[1]].to_numpy(float)
    f = f.dropna(subset=["set", "model"])
    scorers = ["model"] + [c for c in f.columns if c[0] in "-+"]
    g = f.groupby(["set", "config"], sort=False).agg(
        {**{c: "mean" for c in ["y", *scorers]}, "dataset": "first", "target": "first"})
    g = g.reset_index()
    rng = np.random.default_rng(seed)
    rows = []
    for s, grp in g.groupby("set", sort=False):
        if len(grp) < 3:
            continue
        y = grp["y"].to_numpy()
        rec = {"set": s, "kind": s.rsplit("|", 1)[1].split("=")[0],
               "dataset": grp["dataset"].iloc[0],
               "target": grp["target"].iloc[0], "n": len(grp)}
        for c in scorers:
            v = grp[c].to_numpy()
            rec[f"sp:{c}"] = spearman(y, v)
            rec[f"ndcg:{c}"] = ndcg_at(y, v)
            rec[f"regret:{c}"] = top1_regret(y, v)
        r_sp, r_nd, r_re = [], [], []
        for _ in range(n_random):
            v = rng.permutation(len(y)).astype(float)
            r_sp.append(spearman(y, v))
            r_nd.append(ndcg_at(y, v))
            r_re.append(top1_regret(y, v))
        rec["sp:random"], rec["ndcg:random"] = float(np.nanmean(r_sp)), float(np.nanmean(r_nd))
        rec["regret:random"] = float(np.mean(r_re))
        rows.append(rec)
    return pd.DataFrame(rows), scorers


def ranking_report(frame: pd.DataFrame, oof: np.ndarray, features: pd.DataFrame, *,
                   seed: int = 0, n_random: int = 20) -> list[dict[str, Any]]:
    """Within-target ranking of candidate source sets (mean over seeds per set member):
    Spearman and NDCG@3 of the model's out-of-fold predictions, of minus each URIEL
    distance (size-weighted mean target-source distance, LangRank's features) and of
    random orderings. Averaged over sets within a target, then over targets per dataset
    and set kind; the model's difference to the best distance with a target-bootstrap CI."""
    per_set, scorers = _per_set(frame, oof, features, seed, n_random)
    if per_set.empty:
        return []
    scorers = scorers + ["random"]
    per_target = per_set.groupby(["dataset", "kind", "target"])[
        [f"{m}:{c}" for m in ("sp", "ndcg", "regret") for c in scorers]].mean()
    out = []
    for (d, kind), t in per_target.groupby(level=[0, 1]):
        best, diff, lo, hi = _model_vs_best_distance(t, scorers, seed)
        rec = {"dataset": d, "kind": "fixed k" if kind == "k" else "fixed budget",
               "targets": int(len(t)),
               "sets": int(per_set[(per_set.dataset == d) & (per_set.kind == kind)].shape[0]),
               "spearman": {_label(c): float(t[f"sp:{c}"].mean()) for c in scorers},
               "ndcg3": {_label(c): float(t[f"ndcg:{c}"].mean()) for c in scorers},
               "regret": {_label(c): float(t[f"regret:{c}"].mean()) for c in scorers},
               "regret_by_target": {str(tg): float(v) for (_, _, tg), v
                                    in t["regret:model"].items()},
               "best_distance": best.lstrip("-"), "spearman_diff": diff,
               "spearman_diff_ci": [lo, hi],
               **_model_vs_best_single(t, scorers, "ndcg", seed)}
        if kind == "k":
            rec["by_k"] = _ranking_by_k(per_set[(per_set.dataset == d) & (per_set.kind == kind)],
                                        scorers, seed)
        out.append(rec)
    return out


def _label(scorer: str) -> str:
    """'-geographic' -> 'geographic', '+entropy' -> 'entropy'."""
    return scorer.lstrip("-+")


def _model_vs_best_single(per_target: pd.DataFrame, scorers: Sequence[str], metric: str,
                          seed: int) -> dict[str, Any]:
    """The model against the best single feature (any distance or the raw entropy, picked
    after the fact by its mean ``metric``), with a target-bootstrap CI of the difference."""
    singles = [c for c in scorers if c[0] in "-+"]
    if not singles:
        return {}
    best = max(singles, key=lambda c: per_target[f"{metric}:{c}"].mean())
    both = per_target[[f"{metric}:model", f"{metric}:{best}"]].dropna()
    diff, lo, hi = bootstrap_diff(both[f"{metric}:model"].to_numpy(),
                                  both[f"{metric}:{best}"].to_numpy(), seed=seed)
    return {f"best_single_{metric}": _label(best), f"{metric}_diff_vs_best_single": diff,
            f"{metric}_diff_vs_best_single_ci": [lo, hi]}


def _model_vs_best_distance(per_target: pd.DataFrame, scorers: Sequence[str], seed: int
                            ) -> tuple[str, float, float, float]:
    """(best URIEL distance, the model's Spearman minus it, 95% target-bootstrap CI) from a
    per-target table of ``sp:<scorer>`` columns. The best distance is picked after the fact
    (the highest mean), which flatters it."""
    dists = [c for c in scorers if c.startswith("-")]
    best = max(dists, key=lambda c: per_target[f"sp:{c}"].mean()) if dists else "random"
    both = per_target[["sp:model", f"sp:{best}"]].dropna()
    diff, lo, hi = bootstrap_diff(both["sp:model"].to_numpy(), both[f"sp:{best}"].to_numpy(),
                                  seed=seed)
    return best, diff, lo, hi


def _ranking_by_k(per_set: pd.DataFrame, scorers: Sequence[str], seed: int
                  ) -> list[dict[str, Any]]:
    """The fixed-k ranking split by k. Why: a dataset's mean over k is dominated by the many
    large-k candidate sets, whose members differ little (``python -m
    predictor.studies.noise_floor --within-sets``), so one number hides where ranking is
    possible."""
    k = per_set["set"].str.rsplit("=", n=1).str[1].astype(int)
    out = []
    for lo_k, hi_k, label in K_BANDS:
        band = per_set[(k >= lo_k) & (k <= hi_k)]
        if band.empty:
            continue
        t = band.groupby("target")[[f"{m}:{c}" for m in ("sp", "ndcg", "regret")
                                    for c in scorers]].mean()
        best, diff, lo, hi = _model_vs_best_distance(t, scorers, seed)
        out.append({"k": label, "sets": int(len(band)), "targets": int(len(t)),
                    "members_per_set": float(band["n"].mean()),
                    "spearman_model": float(t["sp:model"].mean()),
                    "best_distance": best.lstrip("-"),
                    "spearman_best_distance": float(t[f"sp:{best}"].mean()),
                    "spearman_diff": diff, "spearman_diff_ci": [lo, hi],
                    "ndcg3": {_label(c): float(t[f"ndcg:{c}"].mean()) for c in scorers},
                    "regret": {_label(c): float(t[f"regret:{c}"].mean()) for c in scorers},
                    "regret_by_target": {str(tg): float(v)
                                         for tg, v in t["regret:model"].items()},
                    **_model_vs_best_single(t, scorers, "ndcg", seed)})
    return out
