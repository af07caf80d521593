"""The meta-analysis: how does zero-shot F1 change as the number of supervised languages k grows?

Statistics that respect the grouping of the data: rows of the same target language are
not independent (a hard target is hard in every configuration), so effects of k are
estimated with a linear mixed model with a random intercept per target language
(statsmodels ``MixedLM``) and, as a check that needs no distributional assumption, a
cluster bootstrap that resamples whole target languages.

Groups are explicit: *low-resource* targets are the languages absent from the model's
pretraining data (all AmericasNLI languages) plus the bottom third of the 15 XNLI
languages by CC-100 size (``LOW_RESOURCE_XNLI``); every other target is *high-resource*.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from measure.languages import get_language, resolve_target

XNLI_15 = "ar bg de el en es fr hi ru sw th tr ur vi zh".split()


def _bottom_third_xnli() -> tuple[str, ...]:
    sizes = sorted(XNLI_15, key=lambda c: get_language(c).cc100_bytes or 0.0)
    return tuple(sorted(sizes[: len(sizes) // 3]))


LOW_RESOURCE_XNLI = _bottom_third_xnli()


def resource_group(target: str) -> str:
    """'low' (absent from pretraining, or bottom third of XNLI by CC-100 size) or 'high'.

    Targets outside the registry with unknown size are 'unknown' and left out of both groups.
    """
    lang = resolve_target(target)
    if lang.in_cc100 == "no" or lang.code in LOW_RESOURCE_XNLI:
        return "low"
    if lang.cc100_bytes is None:
        return "unknown"
    threshold = max(get_language(c).cc100_bytes or 0.0 for c in LOW_RESOURCE_XNLI)
    return "low" if lang.cc100_bytes <= threshold else "high"


@dataclass
class Effect:
    """Change in score per doubling of k, with a 95% CI from two grouped methods."""

    model: str
    regime: str
    group: str
    slope_per_doubling: float
    ci_low: float
    ci_high: float
    p_value: float
    boot_ci_low: float
    boot_ci_high: float
    n_rows: int
    n_targets: int
    n_configs: int
    k_range: str
    diminishing_after_k: float | None
    covariates: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def zero_shot_rows(frame: pd.DataFrame) -> pd.DataFrame:
    df = frame[frame["zero_shot"]].copy()
    df["log2k"] = np.log2(df["k"].astype(float))
    df["log10_total"] = np.log10(df["total_examples"].astype(float))
    df["group"] = df["target"].map(resource_group)
    return df


def _design(df: pd.DataFrame, control_total: bool) -> tuple[np.ndarray, list[str]]:
    cols = ["log2k"] + (["log10_total"] if control_total else [])
    X = np.column_stack([np.ones(len(df))] + [df[c].to_numpy(float) for c in cols])
    return X, ["const"] + cols


def _mixed_slope(df: pd.DataFrame, control_total: bool) -> tuple[float, float, float, float]:
    """Mixed model score ~ log2k [+ log10 total] + (1 | target): slope, CI, p."""
    import statsmodels.api as sm
    X, names = _design(df, control_total)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = sm.MixedLM(df["score"].to_numpy(float), X, groups=df["target"].to_numpy()).fit(
            reml=True, method=["lbfgs", "powell"])
    i = names.index("log2k")
    lo, hi = fit.conf_int(alpha=0.05)[i]
    return float(fit.params[i]), float(lo), float(hi), float(fit.pvalues[i])


def _bootstrap_slope(df: pd.DataFrame, control_total: bool, reps: int = 1000,
                     seed: int = 0) -> tuple[float, float]:
    """Cluster bootstrap over target languages of the within-target OLS slope."""
    rng = np.random.default_rng(seed)
    cols = ["log2k"] + (["log10_total"] if control_total else [])
    # Demeaning within target gives fixed target intercepts (a within-target slope); each
    # target's normal-equation pieces are computed once, so a replicate is a weighted sum.
    xtx, xty = [], []
    for _, g in df.groupby("target"):
        X = g[cols].to_numpy(float)
        X = X - X.mean(axis=0)
        y = g["score"].to_numpy(float)
        y = y - y.mean()
        xtx.append(X.T @ X)
        xty.append(X.T @ y)
    xtx_a, xty_a = np.array(xtx), np.array(xty)
    slopes = []
    for _ in range(reps):
        counts = np.bincount(rng.integers(0, len(xtx), len(xtx)), minlength=len(xtx))
        A = np.tensordot(counts, xtx_a, axes=1)
        b = counts @ xty_a
        if np.linalg.matrix_rank(A) < A.shape[0]:
            continue
        slopes.append(np.linalg.solve(A, b)[0])
    if len(slopes) < reps // 2:
        return math.nan, math.nan
    lo, hi = np.percentile(slopes, [2.5, 97.5])
    return float(lo), float(hi)


def per_k_means(df: pd.DataFrame) -> pd.DataFrame:
    """Mean score per k: first averaged within each target (so no target dominates)."""
    per_target = df.groupby(["k", "target"], as_index=False)["score"].mean()
    out = per_target.groupby("k")["score"].agg(["mean", "median", "std", "count"]).reset_index()
    return out.rename(columns={"count": "n_targets"})


def diminishing_point(df: pd.DataFrame, threshold: float = 0.5) -> float | None:
    """Smallest k where the fitted gain per doubling drops below ``threshold`` points.

    Fits score ~ log2k + log2k² with target intercepts (within-target demeaning); the gain
    per doubling at k is b1 + 2·b2·log2k. None when returns never diminish within the data
    (b2 ≥ 0) or the k range is too narrow to tell.
    """
    if df["k"].nunique() < 3:
        return None
    g = df.assign(l2=df["log2k"] ** 2)
    X = g[["log2k", "l2"]].to_numpy(float) - g.groupby("target")[["log2k", "l2"]].transform("mean").to_numpy()
    y = g["score"].to_numpy(float) - g.groupby("target")["score"].transform("mean").to_numpy()
    b1, b2 = np.linalg.lstsq(X, y, rcond=None)[0]
    if b2 >= 0:
        return None
    l2k = (threshold - b1) / (2 * b2)
    k = float(2 ** l2k)
    kmax = float(df["k"].max())
    if k > kmax:
        return None
    return max(1.0, round(k, 1))


def scaling_effects(frame: pd.DataFrame) -> list[Effect]:
    """Effect of doubling k per (model, regime, resource group) on zero-shot rows."""
    zs = zero_shot_rows(frame)
    out: list[Effect] = []
    for (model, regime), sub in zs.groupby(["model", "regime"], sort=True):
        # published configs vary the data size freely: control for the total examples
        control = regime not in ("per_language", "fixed_total")
        for group in ("low", "high"):
            df = sub[sub["group"] == group]
            if df["target"].nunique() < 2 or df["k"].nunique() < 2:
                continue
            slope, lo, hi, p = _mixed_slope(df, control)
            blo, bhi = _bootstrap_slope(df, control)
            out.append(Effect(
                model=model, regime=regime, group=group, slope_per_doubling=slope, ci_low=lo,
                ci_high=hi, p_value=p, boot_ci_low=blo, boot_ci_high=bhi, n_rows=len(df),
                n_targets=int(df["target"].nunique()), n_configs=int(df["config_id"].nunique()),
                k_range=f"{int(df['k'].min())}–{int(df['k'].max())}",
                diminishing_after_k=diminishing_point(df),
                covariates="log10 total examples" if control else "none"))
    return out


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
