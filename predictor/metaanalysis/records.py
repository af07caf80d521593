"""The designs summarised per stratum and target class: the records ``summary.json`` holds
for member gaps (at full and at equal data per member), add-one gains (all, and split by
whether the added language is a new best source), Shapley values, the few-shot exchange
rate, and collapse (scores beside the same-label-share null).

Why apart from the estimators: each record is a mean or a fit with its two-way bootstrap
CI, keyed the same way (STRATA, metric, target class), so every surface can look it up;
the estimators (``estimates``, ``designs``, ``dilution``, ``fewshot``) know nothing of the
keys.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from measure.knowledge.coverage import RESOURCE_CLASSES, resource_class
from measure.knowledge.nli import CHANCE, LABELS
from predictor.metaanalysis.designs import CHANCE_LEVEL
from predictor.metaanalysis.estimates import boot_mean, cluster_index, percentile_ci
from predictor.metaanalysis.fewshot import exchange_rate, few_shot_rows
from predictor.metaanalysis.prepare import STRATA


def by_stratum_and_class(frame: pd.DataFrame, extra: tuple[str, ...] = ()
                         ) -> Iterator[tuple[dict[str, Any], str, pd.DataFrame]]:
    """(the stratum's keys, plus ``extra``; the target class; its rows) for every stratum and
    class that has rows: the unit every design is summarised in."""
    if frame.empty:
        return
    keys = [*STRATA, *extra]
    for key, g in frame.groupby(keys):
        for cls in RESOURCE_CLASSES:
            gc = g[g["target_class"] == cls]
            if len(gc):
                yield dict(zip(keys, key)), cls, gc


def _gap_record(gc: pd.DataFrame, reps: int) -> dict[str, Any]:
    """Mean set − best and set − mean member with two-way bootstrap CIs, and by k."""
    rec: dict[str, Any] = {"n_rows": int(len(gc)), "n_sets": int(gc["set_id"].nunique()),
                           "n_targets": int(gc["target"].nunique())}
    ti, si = cluster_index(gc["target"]), cluster_index(gc["set_id"])
    for col in ("gap_best", "gap_mean"):
        mean, lo, hi = boot_mean(gc[col].to_numpy(float), ti, si, reps)
        rec[col] = mean
        rec[col + "_ci"] = [lo, hi]
    rec["share_beating_best"] = float((gc["gap_best"] > 0).mean())
    rec["by_k"] = [{"k": int(k), "gap_best": float(h["gap_best"].mean()),
                    "gap_mean": float(h["gap_mean"].mean()), "n_rows": int(len(h))}
                   for k, h in gc.groupby("k")]
    return rec


def summarise_gaps(gaps: pd.DataFrame, metric: str, reps: int) -> list[dict]:
    """Set − best / mean member (members on the whole budget: ``designs.member_gaps``)."""
    return [{**st_, "metric": metric, "target_class": cls, **_gap_record(gc, reps)}
            for st_, cls, gc in by_stratum_and_class(gaps)]


def summarise_dilution(gaps: pd.DataFrame, metric: str, reps: int) -> list[dict]:
    """Set − best / mean member at equal data per member (``dilution.equal_share_gaps``),
    split by whether the set holds the target's best single source at that share, with the
    pure-averaging world's gap (a set scoring its members' mean) as the reference."""
    out = []
    for st_, cls, gc in by_stratum_and_class(gaps):
        rec = {**st_, "metric": metric, "target_class": cls, **_gap_record(gc, reps)}
        avg = (gc["mean_member"] - gc["best_member"]).to_numpy(float)
        mean, lo, hi = boot_mean(avg, cluster_index(gc["target"]), cluster_index(gc["set_id"]),
                                 reps)
        rec["null_averaging_gap_best"], rec["null_averaging_gap_best_ci"] = mean, [lo, hi]
        rec["null_selection_gap_best"] = 0.0
        for flag, name in ((True, "with_best_source"), (False, "without_best_source")):
            h = gc[gc["contains_best"] == flag]
            if len(h):
                m, lo, hi = boot_mean(h["gap_best"].to_numpy(float), cluster_index(h["target"]),
                                      cluster_index(h["set_id"]), reps)
                rec[name] = {"gap_best": m, "gap_best_ci": [lo, hi], "n_rows": int(len(h))}
        out.append(rec)
    return out


def summarise_add_one(pairs: pd.DataFrame, metric: str, reps: int) -> list[dict]:
    """Mean paired add-one gain per base size and over all base sizes (``base_size`` None)."""
    out = []
    for st_, cls, gc in by_stratum_and_class(pairs):
        groups = [*gc.groupby("base_size"), (None, gc)]     # each base size, then all together
        for size, h in groups:
            out.append({**st_, "metric": metric, "target_class": cls,
                        "base_size": None if size is None else int(size),
                        **_gain_record(h, reps)})
    return out


def _gain_record(h: pd.DataFrame, reps: int) -> dict[str, Any]:
    mean, lo, hi = boot_mean(h["gain"].to_numpy(float), cluster_index(h["target"]),
                             cluster_index(h["base"]), reps)
    return {"gain": mean, "ci": [lo, hi], "share_positive": float((h["gain"] > 0).mean()),
            "n_pairs": int(len(h)), "n_bases": int(h["base"].nunique()),
            "n_targets": int(h["target"].nunique())}


def summarise_add_one_split(pairs: pd.DataFrame, metric: str, reps: int) -> list[dict]:
    """Mean paired add-one gain when the added language is a new best single source for the
    target (selection) and when it is not (what combining does), all base sizes."""
    out = []
    known = pairs[pairs["new_best"].notna()] if len(pairs) else pairs
    for st_, cls, gc in by_stratum_and_class(known):
        for flag in (True, False):
            h = gc[gc["new_best"] == flag]
            if len(h):
                out.append({**st_, "metric": metric, "target_class": cls,
                            "new_best": flag, **_gain_record(h, reps)})
    return out


def summarise_few_shot(df: pd.DataFrame, metric: str, reps: int) -> list[dict]:
    """The few-shot model and exchange rate per stratum and class (``fewshot``)."""
    out = []
    for st_, cls, gc in by_stratum_and_class(few_shot_rows(df, metric)):
        rec = exchange_rate(gc, reps=reps)
        if rec is not None:
            out.append({**st_, "metric": metric, "target_class": cls, **rec})
    return out


def summarise_shapley(tab: pd.DataFrame, metric: str, reps: int) -> list[dict]:
    """Shapley values per language with a bootstrap over targets, interaction, additivity."""
    out = []
    rng = np.random.default_rng(0)
    chance = CHANCE_LEVEL[metric]
    for keys, cls, gc in by_stratum_and_class(tab, ("full_set",)):
        full = keys.pop("full_set")
        targets = sorted(gc["target"].unique())
        piv = gc.pivot_table(index="target", columns="language", values="phi")
        draws = rng.integers(0, len(targets), (reps, len(targets)))
        langs = []
        for lang in piv.columns:
            vals = piv[lang].to_numpy(float)
            lo, hi = percentile_ci(vals[draws].mean(axis=1))
            langs.append({"language": lang, "phi": float(vals.mean()), "ci": [lo, hi],
                          "single": float(gc[gc["language"] == lang]["single"].mean())})
        langs.sort(key=lambda r: -r["phi"])
        per_t = gc.drop_duplicates("target").set_index("target")
        inter = per_t["interaction"].to_numpy(float)
        lo, hi = percentile_ci(inter[draws].mean(axis=1))
        singles_gain = (gc.groupby("target")["single"].sum() - chance * len(
            gc["language"].unique())).reindex(per_t.index).to_numpy(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            additivity = (per_t["v_full"].to_numpy(float) - chance) / singles_gain
        gap = (per_t["v_full"] - per_t["best_single"]).to_numpy(float)
        glo, ghi = percentile_ci(gap[draws].mean(axis=1))
        tot = sum(r["phi"] for r in langs)
        out.append({**keys, "metric": metric, "full_set": full,
                    "target_class": cls, "n_targets": len(targets), "languages": langs,
                    "top_language": langs[0]["language"],
                    "top_share": langs[0]["phi"] / tot if tot else math.nan,
                    "v_full": float(per_t["v_full"].mean()),
                    "interaction": float(inter.mean()), "interaction_ci": [lo, hi],
                    "additivity": float(np.median(additivity)),
                    "full_minus_best_single": float(gap.mean()),
                    "full_minus_best_single_ci": [glo, ghi]})
    return out


def collapse_table(df: pd.DataFrame) -> list[dict]:
    """Per (stratum, target): mean macro-F1, kappa, accuracy, the same-label-share null's
    macro-F1 and the score above it, and the predicted-label shares."""
    zs = df[df["zero_shot"]]
    out = []
    for key, g in zs.groupby([*STRATA, "target"]):
        rec = {**dict(zip(STRATA, key[:5])), "target": key[5],
               "target_class": resource_class(key[5]), "n_rows": int(len(g)),
               "macro_f1": float(g["macro_f1"].mean()), "kappa": float(g["kappa"].mean()),
               "accuracy": float(g["accuracy"].mean()),
               "null_f1": float(g["null_f1"].mean()),
               "f1_above_null": float(g["f1_above_null"].mean()),
               "share_below_chance_f1": float((g["macro_f1"] < CHANCE).mean())}
        for lab in LABELS:
            rec[f"share_{lab}"] = float(g[f"share_{lab}"].mean())
        out.append(rec)
    return out


def singles_level(df: pd.DataFrame, metric: str) -> list[dict]:
    """Per stratum and class: the mean over targets of the single-source cells' zero-shot
    score (seeds averaged) at the largest single budget of the table — how good one source
    is under each method, the level the designs' differences are measured from."""
    out = []
    singles = df[(df["k"] == 1) & df["zero_shot"] & (df["n_shots"] == 0)]
    for st_, cls, gc in by_stratum_and_class(singles):
        top = gc[gc["total_examples"] == gc["total_examples"].max()]
        per_t = top.groupby("target")[metric].mean()
        out.append({**st_, "metric": metric, "target_class": cls, "mean": float(per_t.mean()),
                    "examples": int(top["total_examples"].iloc[0]),
                    "n_targets": int(len(per_t)), "n_sources": int(top["set_id"].nunique())})
    return out
