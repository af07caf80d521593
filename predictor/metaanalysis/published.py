"""The published SumEval 2022 results on the meta-analysis's footing, and the feature-score
correlations of the report.

Why apart: neither reads the measured designs; both read the predictor's tidy table (own
rows and SumEval), so they share its columns and nothing else with the estimates.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from measure.knowledge.coverage import RESOURCE_CLASSES, resource_class
from predictor.metaanalysis.estimates import (cluster_index, percentile_ci, twoway_weights,
                                              within_solve)


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
