"""Every number of the meta-analysis, per stratum and target class (``analyse``), the
published SumEval results on the same footing, and the one headline every surface shows.

Why one summary: ``summary.json`` holds these records, and the report, the README, the app's
Home and Scaling pages read them from there instead of estimating again, so they give one
answer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from measure.knowledge.coverage import RESOURCE_CLASSES, resource_class
from measure.knowledge.nli import CHANCE, LABELS
from predictor.formatting import interval, signed
from predictor.metaanalysis.designs import (CHANCE_LEVEL, add_one_pairs, best_vs_random,
                                            member_gaps, shapley_table)
from predictor.metaanalysis.estimates import (boot_mean, cluster_index, mixed_slope,
                                              per_target_slopes, percentile_ci, slope_estimates,
                                              twoway_weights, within_solve)
from predictor.metaanalysis.prepare import METRICS, STRATA, cell_means, deduplicate, select


# -- the designs, per stratum and class -------------------------------------------------------
def _by_stratum_and_class(frame: pd.DataFrame, extra: tuple[str, ...] = ()
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


def _summarise_gaps(gaps: pd.DataFrame, metric: str, reps: int) -> list[dict]:
    out = []
    for st_, cls, gc in _by_stratum_and_class(gaps):
        rec = {**st_, "metric": metric, "target_class": cls,
               "n_rows": int(len(gc)), "n_sets": int(gc["set_id"].nunique()),
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
        out.append(rec)
    return out


def _summarise_add_one(pairs: pd.DataFrame, metric: str, reps: int) -> list[dict]:
    out = []
    for st_, cls, gc in _by_stratum_and_class(pairs):
        groups = [*gc.groupby("base_size"), (None, gc)]     # each base size, then all together
        for size, h in groups:
            mean, lo, hi = boot_mean(h["gain"].to_numpy(float), cluster_index(h["target"]),
                                     cluster_index(h["base"]), reps)
            out.append({**st_, "metric": metric, "target_class": cls,
                        "base_size": None if size is None else int(size),
                        "gain": mean, "ci": [lo, hi],
                        "share_positive": float((h["gain"] > 0).mean()),
                        "n_pairs": int(len(h)), "n_bases": int(h["base"].nunique()),
                        "n_targets": int(h["target"].nunique())})
    return out


def _summarise_shapley(tab: pd.DataFrame, metric: str, reps: int) -> list[dict]:
    out = []
    rng = np.random.default_rng(0)
    chance = CHANCE_LEVEL[metric]
    for keys, cls, gc in _by_stratum_and_class(tab, ("full_set",)):
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
    """Per (stratum, target): mean macro-F1, kappa, accuracy and predicted-label shares."""
    zs = df[df["zero_shot"]]
    out = []
    for key, g in zs.groupby([*STRATA, "target"]):
        rec = {**dict(zip(STRATA, key[:5])), "target": key[5],
               "target_class": resource_class(key[5]), "n_rows": int(len(g)),
               "macro_f1": float(g["macro_f1"].mean()), "kappa": float(g["kappa"].mean()),
               "accuracy": float(g["accuracy"].mean()),
               "share_below_chance_f1": float((g["macro_f1"] < CHANCE).mean())}
        for lab in LABELS:
            rec[f"share_{lab}"] = float(g[f"share_{lab}"].mean())
        out.append(rec)
    return out


# -- the slope of k ---------------------------------------------------------------------------
def _best_member_cells(stratum: pd.DataFrame, metric: str) -> pd.DataFrame | None:
    """(set, target) → mean best-single-member score (a single's own score for k = 1)."""
    gaps = member_gaps(stratum, metric)
    singles = stratum[(stratum["k"] == 1) & stratum["zero_shot"]]
    parts = [singles.groupby(["set_id", "target"], as_index=False)[metric].mean()
             .rename(columns={metric: "best_member"})]
    if len(gaps):
        parts.append(gaps.groupby(["set_id", "target"], as_index=False)["best_member"].mean())
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else None


def _log_estimate(log, stratum: tuple, metric: str, cls: str, rec: dict) -> None:
    log(f"{'/'.join(map(str, stratum))} {metric} {cls}: mixed {rec['slope']:+.2f} "
        f"[{rec['ci_low']:+.2f}, {rec['ci_high']:+.2f}] boot "
        f"[{rec['boot_ci_low']:+.2f}, {rec['boot_ci_high']:+.2f}] "
        f"saturation k {rec['saturation_k']}")


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
            best = _best_member_cells(select(df, STRATA, st_), metric)
            for cls in RESOURCE_CLASSES:
                d = sub[sub["target_class"] == cls]
                if d["target"].nunique() < 1 or d["k"].nunique() < 2:
                    continue
                cells = cell_means(d, metric)
                if best is not None:
                    cells = cells.merge(best, on=["set_id", "target"], how="left")
                rec = {**dict(zip(STRATA, st_)), "metric": metric, "target_class": cls,
                       "n_rows": int(len(d)), "n_cells": int(len(cells)),
                       "n_targets": int(d["target"].nunique()),
                       "n_sets": int(d["set_id"].nunique()),
                       "k_min": int(d["k"].min()), "k_max": int(d["k"].max())}
                if mixed and d["target"].nunique() >= 2:
                    rec.update(mixed_slope(cells))
                else:
                    rec.update(slope=math.nan, ci_low=math.nan, ci_high=math.nan)
                rec.update(slope_estimates(cells, reps=reps))
                rec["per_k_mean"] = [{"k": int(k), "mean": float(h.groupby("target")["y"].mean()
                                                                 .mean())}
                                     for k, h in cells.groupby("k")]
                if log:
                    _log_estimate(log, st_, metric, cls, rec)
                out.append(rec)
    return out


def _per_target(df: pd.DataFrame, reps: int) -> list[dict]:
    out = []
    for st_, sub in df[(df["design"] == "grid") & df["zero_shot"]].groupby(STRATA):
        if sub["k"].nunique() < 2:
            continue
        for metric in METRICS:
            for rec in per_target_slopes(cell_means(sub, metric), reps=min(reps, 300)):
                out.append({**dict(zip(STRATA, st_)), "metric": metric, **rec})
    return out


def analyse(df: pd.DataFrame, reps: int = 400, mixed: bool = True, log=None,
            greedy_path: pd.DataFrame | None = None) -> dict[str, Any]:
    """Every estimate of the meta-analysis on prepared rows (see ``prepare``/``load_tables``)."""
    df, n_dup = deduplicate(df)
    res: dict[str, Any] = {"duplicates_dropped": n_dup, "designs": sorted(df["design"].unique())}
    if "config_json" in df:
        res["backends"] = {d: sorted({str(json.loads(c).get("backend", "?"))
                                      for c in g["config_json"].unique()})
                           for d, g in df.groupby("design")}
    res["scaling"] = scaling_estimates(df, reps=reps, mixed=mixed, log=log)
    res["per_target"] = _per_target(df, reps)
    res["collapse"] = collapse_table(df[df["design"] == "grid"])
    gaps, add_one, shap, bvr = [], [], [], []
    for metric in METRICS:
        gaps += _summarise_gaps(member_gaps(df, metric), metric, reps)
        ao = df[df["design"] == "add-one"]
        if len(ao):
            add_one += _summarise_add_one(add_one_pairs(ao, metric), metric, reps)
        sh = df[df["design"] == "shapley"]
        if len(sh):
            shap += _summarise_shapley(shapley_table(sh, metric), metric, reps)
    gr = df[df["design"] == "greedy"]
    if len(gr):
        bvr = best_vs_random(gr, df[df["design"] == "grid"], greedy_path)
    res["member_gaps"] = gaps
    if add_one:
        res["add_one"] = add_one
    if shap:
        res["shapley"] = shap
    if bvr:
        res["best_vs_random"] = bvr
    return res


# -- published results (SumEval) -------------------------------------------------------------
def published_estimates(frame: pd.DataFrame, reps: int = 400) -> list[dict]:
    """SumEval XLM-R / T-ULRv6: slope per doubling controlling log10 total examples, per class,
    and the Spearman correlation of k with the configuration's mean zero-shot accuracy."""
    out = []
    pub = frame[(frame["origin"] != "own") & frame["zero_shot"]].copy()
    if pub.empty:
        return out
    pub["log2k"] = np.log2(pub["k"].astype(float))
    pub["log10_total"] = np.log10(pub["total_examples"].astype(float))
    pub["target_class"] = pub["target"].map(resource_class)
    for model, g in pub.groupby("model"):
        per_cfg = g.groupby("config_id").agg(k=("k", "first"), score=("score", "mean"))
        rho, p = stats.spearmanr(per_cfg["k"], per_cfg["score"])
        for cls in RESOURCE_CLASSES:
            d = g[g["target_class"] == cls]
            if d["target"].nunique() < 1 or d["k"].nunique() < 2:
                continue
            ti, si = cluster_index(d["target"]), cluster_index(d["config_id"])
            X = d[["log2k", "log10_total"]].to_numpy(float)
            y = d["score"].to_numpy(float)
            nt, ns = int(ti.max()) + 1, int(si.max()) + 1
            b0 = within_solve(ti, nt, X, y, np.ones((1, len(d))))[0, 0]
            W = twoway_weights(ti, si, nt, ns, reps, np.random.default_rng(0))
            lo, hi = percentile_ci(within_solve(ti, nt, X, y, W)[:, 0])
            out.append({"model": model, "regime": "published", "metric": "accuracy",
                        "target_class": cls, "slope_within": float(b0), "boot_ci_low": lo,
                        "boot_ci_high": hi, "covariates": "log10 total examples",
                        "n_rows": int(len(d)), "n_targets": int(d["target"].nunique()),
                        "n_configs": int(d["config_id"].nunique()),
                        "k_min": int(d["k"].min()), "k_max": int(d["k"].max()),
                        "spearman_k_config_mean": float(rho), "spearman_p": float(p),
                        "n_configs_all": int(len(per_cfg))})
    return out


# -- one headline ------------------------------------------------------------------------------
HEADLINE_POOL = "xnli/validation"
REGIME_SHORT = {"fixed_total": "fixed total", "per_language": "per-language"}


def headline(summary: Mapping[str, Any], metric: str = "macro_f1") -> list[dict]:
    """The headline rows every surface shows (report, README, Home, Scaling).

    Per measured model/method, the grid design on the ``HEADLINE_POOL`` pool (else the pool
    with most rows), both regimes, one row per target class: mixed-model slope per doubling
    with its CI, the two-way bootstrap CI, saturation k, and — where the design tables exist —
    the mean add-one gain and the best- and mean-member gaps.
    """
    scaling = [e for e in summary.get("scaling", []) if e["metric"] == metric]
    if not scaling:
        return []
    pools = {e["pool"] for e in scaling}
    pool = HEADLINE_POOL if HEADLINE_POOL in pools else \
        max(pools, key=lambda p: sum(e["n_rows"] for e in scaling if e["pool"] == p))
    gaps = {(g["model"], g["method"], g["pool"], g["regime"], g["design"], g["target_class"]): g
            for g in summary.get("member_gaps", []) if g["metric"] == metric}
    add = {}
    for a in summary.get("add_one", []):
        if a["metric"] == metric:
            add.setdefault((a["model"], a["method"], a["pool"], a["regime"], a["target_class"]),
                           []).append(a)
    rows = []
    order = {c: i for i, c in enumerate(RESOURCE_CLASSES)}
    for e in sorted((e for e in scaling if e["pool"] == pool),
                    key=lambda e: (e["model"], e["method"], e["regime"],
                                   order.get(e["target_class"], 9))):
        key = (e["model"], e["method"], e["pool"], e["regime"])
        g = gaps.get((*key, "grid", e["target_class"]), {})
        a = [x for x in add.get((*key, e["target_class"]), []) if x["base_size"] is None]
        rows.append({"model": e["model"], "method": e["method"], "pool": e["pool"],
                     "regime": e["regime"], "target_class": e["target_class"], "metric": metric,
                     "slope": e["slope"], "ci": [e["ci_low"], e["ci_high"]],
                     "boot_ci": [e["boot_ci_low"], e["boot_ci_high"]],
                     "saturation_k": e["saturation_k"], "n_targets": e["n_targets"],
                     "given_best_member": e.get("slope_given_best_member"),
                     "gap_best": g.get("gap_best"), "gap_mean": g.get("gap_mean"),
                     "add_one_gain": a[0]["gain"] if a else None,
                     "add_one_ci": a[0]["ci"] if a else None})
    return rows


def headline_markdown(summary: Mapping[str, Any], metric: str = "macro_f1") -> str:
    """The headline as one Markdown table: the exact text README, report and app show."""
    rows = headline(summary, metric)
    if not rows:
        return ""
    unit = "macro-F1" if metric == "macro_f1" else "kappa ×100"
    lines = [f"| model | pool | budget | targets | {unit} per doubling of k (mixed, 95% CI) "
             "| bootstrap 95% CI (targets × sets) | saturation k | set − best member "
             "| set − mean member | add-one gain |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['model']} {r['method']} | {r['pool']} | {REGIME_SHORT.get(r['regime'], r['regime'])} "
            f"| {r['target_class']} ({r['n_targets']}) | **{signed(r['slope'])}** "
            f"{interval(*r['ci'])} | {interval(*r['boot_ci'])} "
            f"| {r['saturation_k'] if r['saturation_k'] is not None else 'not reached'} "
            f"| {signed(r['gap_best'])} | {signed(r['gap_mean'])} | {signed(r['add_one_gain'])} |")
    return "\n".join(lines)


# -- correlations -------------------------------------------------------------------------------
def _r_ci(r: float, n: int, spearman: bool) -> tuple[float, float]:
    """Fisher-z CI; for Spearman with the Bonett–Wright variance 1.06/(n−3)."""
    if n <= 4 or not np.isfinite(r) or abs(r) >= 1:
        return math.nan, math.nan
    se = math.sqrt((1.06 if spearman else 1.0) / (n - 3))
    z = math.atanh(r)
    return math.tanh(z - 1.96 * se), math.tanh(z + 1.96 * se)


def correlation_table(features: pd.DataFrame, score: pd.Series) -> pd.DataFrame:
    """Pearson and Spearman correlation of each feature with the score, with 95% CIs and n."""
    rows = []
    for col in features.columns:
        x = features[col].to_numpy(float)
        y = score.to_numpy(float)
        ok = np.isfinite(x) & np.isfinite(y)
        n = int(ok.sum())
        if n < 5 or np.nanstd(x[ok]) == 0:
            continue
        pr, pp = stats.pearsonr(x[ok], y[ok])
        sr, sp = stats.spearmanr(x[ok], y[ok])
        plo, phi = _r_ci(float(pr), n, False)
        slo, shi = _r_ci(float(sr), n, True)
        rows.append({"feature": col, "n": n, "pearson": float(pr), "pearson_ci": (plo, phi),
                     "pearson_p": float(pp), "spearman": float(sr), "spearman_ci": (slo, shi),
                     "spearman_p": float(sp)})
    out = pd.DataFrame(rows)
    if len(out):
        out = out.reindex(out["spearman"].abs().sort_values(ascending=False).index)
    return out.reset_index(drop=True)
