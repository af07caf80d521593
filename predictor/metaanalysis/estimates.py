"""The estimators of the effect of k: a mixed model, within-target slopes with a two-way
cluster bootstrap, a piecewise fit for saturation, and bootstrap means.

Why these: a (set, target) cell's score depends on its target (some languages transfer
better) and on its source set (some sets hold a strong source), and both are samples.

* **Crossed random effects**: ``score ~ log2 k`` with random intercepts per target, random
  slopes on log2 k per target and random intercepts per source set (statsmodels ``MixedLM``
  with variance components over one all-rows group), fitted on (set, target) cell means
  (seeds averaged), per target class.
* **Two-way cluster bootstrap**: the distribution-free check resamples target languages
  *and* source sets independently (a cell's weight is the product of its target's and its
  set's draw counts) of the within-target slope.
* **Saturation**: a piecewise-linear fit in log2 k with knots at k = 2, 4, 8 (the gain per
  doubling in each segment with bootstrap CIs, descriptive), and a saturation claim only
  where the intervals show one: at a knot, the gain per doubling before it must lie above
  0, the gain after it must be indistinguishable from 0 *and* the drop from before to
  after must lie above 0 (two-piece fit, bootstrap CIs). Late segments are measured with
  few sets, so "the last segment's CI includes 0" alone is no evidence of a plateau.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from measure.knowledge.coverage import resource_class

KNOTS = (1.0, 2.0, 3.0)  # log2 k: k = 2, 4, 8

SATURATION_RULE = ("saturation k = the first knot (k = 2, 4, 8) where the gain per doubling "
                   "before it has a two-way bootstrap 95% CI above 0, the gain after it a CI "
                   "that includes 0, and the drop from before to after a CI above 0 "
                   "(two-piece fit in log2 k); null = no saturation shown (the gain may go on, "
                   "or the intervals are too wide to tell)")


def mixed_slope(cells: pd.DataFrame) -> dict[str, Any]:
    """MixedLM y ~ log2k, crossed random effects (target intercept, target×log2k slope, set).

    Variance components over one all-rows group. Returns slope, Wald 95% CI, p, the variance
    components and whether the optimiser converged; random slopes are dropped when a class
    has fewer than 3 targets, the set effect when every set appears once. With
    ``$XLT_MIXED_CACHE`` set to a directory, a fit is stored under the hash of its cells and
    reused when exactly the same cells come back (the fits take minutes on 2 cores; adding a
    design table does not change the grid's cells).
    """
    cache = os.environ.get("XLT_MIXED_CACHE")
    if not cache:
        return _mixed_slope_fit(cells)
    key = hashlib.sha256(cells[["set_id", "target", "log2k", "y"]].to_csv(index=False)
                         .encode()).hexdigest()[:24]
    path = Path(cache) / f"mixed-{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    out = _mixed_slope_fit(cells)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, default=float))
    return out


def _mixed_slope_fit(cells: pd.DataFrame) -> dict[str, Any]:
    import statsmodels.api as sm
    d = cells.assign(g=1)
    vc = {"target": "0 + C(target)"}
    if d["target"].nunique() >= 3:
        vc["target_slope"] = "0 + C(target):log2k"
    if d["set_id"].duplicated().any():
        vc["set"] = "0 + C(set_id)"
    out: dict[str, Any] = {"mixed_terms": "+".join(vc)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = sm.MixedLM.from_formula("y ~ log2k", groups="g", vc_formula=vc, data=d)
            fit = model.fit(reml=True, method=["lbfgs", "powell"])
        except Exception as exc:  # noqa: BLE001 - a singular fit is reported, not fatal
            out.update(slope=math.nan, ci_low=math.nan, ci_high=math.nan, p_value=math.nan,
                       converged=False, error=str(exc)[:200])
            return out
    lo, hi = fit.conf_int(alpha=0.05).loc["log2k"]
    vcomp = dict(zip(model.exog_vc.names, np.asarray(fit.vcomp, float)))
    out.update(slope=float(fit.params["log2k"]), ci_low=float(lo), ci_high=float(hi),
               p_value=float(fit.pvalues["log2k"]), converged=bool(fit.converged),
               var_target=vcomp.get("target"), var_target_slope=vcomp.get("target_slope"),
               var_set=vcomp.get("set"), var_residual=float(fit.scale))
    return out


def piecewise_design(log2k: np.ndarray, kmax: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Columns of a continuous piecewise-linear function of log2 k and its segments (k_lo, k_hi).

    Knots at k = 2, 4, 8 that lie strictly inside the measured range.
    """
    top = math.log2(kmax)
    knots = [kn for kn in KNOTS if kn < top]
    cols = [log2k] + [np.maximum(0.0, log2k - kn) for kn in knots]
    edges = [0.0, *knots, top]
    segs = [(int(round(2 ** a)), int(round(2 ** b))) for a, b in zip(edges[:-1], edges[1:])]
    return np.column_stack(cols), segs


def within_solve(t_idx: np.ndarray, n_t: int, X: np.ndarray, y: np.ndarray,
                 W: np.ndarray) -> np.ndarray:
    """Weighted within-target least squares for many weight vectors at once.

    Why batched: one bootstrap replicate is one row of ``W`` (reps, n), so every replicate's
    slope comes out of a few matrix products instead of a loop of fits. Returns (reps, p)
    coefficients (NaN where singular).
    """
    reps, p = W.shape[0], X.shape[1]
    # per-target weighted sums via one matrix product with the target indicator
    T = np.zeros((len(t_idx), n_t))
    T[np.arange(len(t_idx)), t_idx] = 1.0
    sw = W @ T                                               # (reps, n_t)
    sx = np.einsum("rn,np,nt->rtp", W, X, T)                 # (reps, n_t, p)
    sy = (W * y) @ T                                         # (reps, n_t)
    sxx = np.einsum("rn,np,nq->rpq", W, X, X)
    sxy = np.einsum("rn,np->rp", W * y, X)
    with np.errstate(invalid="ignore", divide="ignore"):
        inv = np.where(sw > 0, 1.0 / sw, 0.0)
    A = sxx - np.einsum("rtp,rtq,rt->rpq", sx, sx, inv)
    b = sxy - np.einsum("rtp,rt,rt->rp", sx, sy, inv)
    out = np.full((reps, p), np.nan)
    ok = np.linalg.cond(A) < 1e10
    if ok.any():
        out[ok] = np.linalg.solve(A[ok], b[ok][..., None])[..., 0]
    return out


def twoway_weights(t_idx: np.ndarray, s_idx: np.ndarray, n_t: int, n_s: int, reps: int,
                   rng: np.random.Generator, resample_targets: bool = True) -> np.ndarray:
    """(reps, n) cell weights: target draw count × set draw count (two-way cluster bootstrap)."""
    ct = (rng.multinomial(n_t, np.full(n_t, 1 / n_t), size=reps) if resample_targets
          else np.ones((reps, n_t)))
    cs = rng.multinomial(n_s, np.full(n_s, 1 / n_s), size=reps)
    return ct[:, t_idx] * cs[:, s_idx]


def percentile_ci(a: np.ndarray) -> tuple[float, float]:
    """The 2.5 and 97.5 percentiles of bootstrap replicates (NaN with under 20 finite ones)."""
    a = a[np.isfinite(a)]
    if len(a) < 20:
        return math.nan, math.nan
    lo, hi = np.percentile(a, [2.5, 97.5])
    return float(lo), float(hi)


def cluster_index(values: pd.Series) -> np.ndarray:
    """0..n-1 per distinct value, in order of appearance: the clusters a bootstrap resamples."""
    return pd.factorize(values)[0]


def slope_estimates(cells: pd.DataFrame, reps: int = 400, seed: int = 0) -> dict[str, Any]:
    """Within-target slope per doubling, piecewise segment gains and saturation k.

    Point estimates weight each (set, target) cell by its number of seeds; CIs from the
    two-way cluster bootstrap over targets and sets.
    """
    t_codes, t_idx = np.unique(cells["target"].to_numpy(), return_inverse=True)
    s_codes, s_idx = np.unique(cells["set_id"].to_numpy(), return_inverse=True)
    n_t = len(t_codes)
    x = cells["log2k"].to_numpy(float)
    y = cells["y"].to_numpy(float)
    m = cells["m"].to_numpy(float)
    rng = np.random.default_rng(seed)
    W = twoway_weights(t_idx, s_idx, n_t, len(s_codes), reps, rng) * m
    W0 = m[None, :]

    def fit(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(point coefficients, bootstrap coefficients (reps, p)) of design ``X``."""
        return within_solve(t_idx, n_t, X, y, W0)[0], within_solve(t_idx, n_t, X, y, W)

    b0, bb = fit(x[:, None])
    out: dict[str, Any] = {"slope_within": float(b0[0])}
    out["boot_ci_low"], out["boot_ci_high"] = percentile_ci(bb[:, 0])
    segments = []
    P, segs = piecewise_design(x, int(cells["k"].max()))
    if P.shape[1] > 1 and cells["k"].nunique() > P.shape[1]:
        c0, cb = fit(P)
        g0, gb = np.cumsum(c0), np.cumsum(cb, axis=1)
        for j, (klo, khi) in enumerate(segs):
            lo, hi = percentile_ci(gb[:, j])
            segments.append({"k_from": klo, "k_to": khi, "gain_per_doubling": float(g0[j]),
                             "ci_low": lo, "ci_high": hi})
    out["segments"] = segments
    if "best_member" in cells and cells["best_member"].notna().all() and cells["k"].nunique() > 2:
        # is the k slope left once the set's best single member is known?
        cb0, cbb = fit(np.column_stack([x, cells["best_member"].to_numpy(float)]))
        lo, hi = percentile_ci(cbb[:, 0])
        out["slope_given_best_member"] = {"slope": float(cb0[0]), "ci_low": lo, "ci_high": hi}
    if "contains_best" in cells and cells["contains_best"].notna().all() and \
            cells["contains_best"].nunique() > 1 and cells["k"].nunique() > 2:
        # is the k slope left once "the set holds the target's best single source" is known?
        cc0, ccb = fit(np.column_stack([x, cells["contains_best"].to_numpy(float)]))
        lo, hi = percentile_ci(ccb[:, 0])
        blo, bhi = percentile_ci(ccb[:, 1])
        out["slope_given_contains_best"] = {"slope": float(cc0[0]), "ci_low": lo, "ci_high": hi,
                                            "contains_best": float(cc0[1]),
                                            "contains_best_ci": [blo, bhi]}
    knots = [kn for kn in KNOTS if 0 < kn < x.max()]
    out["slowdown"] = [slowdown_at(kn, fit(np.column_stack([x, np.maximum(0.0, x - kn)])))
                       for kn in knots if ((x > 0) & (x <= kn)).any() and (x > kn).any()]
    out.update(saturation(out["slowdown"]))
    return out


def slowdown_at(knot: float, coefs: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    """Gain per doubling before and after ``knot`` (log2 k) and the drop between them, from
    a two-piece fit's (point, bootstrap) coefficients."""
    (c0, cb) = coefs
    before, after = cb[:, 0], cb[:, 0] + cb[:, 1]
    rec = {"k": int(round(2 ** knot)), "before": float(c0[0]), "after": float(c0[0] + c0[1]),
           "drop": float(-c0[1])}
    for name, arr in (("before", before), ("after", after), ("drop", before - after)):
        rec[name + "_ci"] = list(percentile_ci(arr))
    return rec


def saturation(slowdowns: list[dict]) -> dict[str, Any]:
    """The saturation k of :data:`SATURATION_RULE` from :func:`slowdown_at` records."""
    shown = [s["k"] for s in slowdowns
             if all(math.isfinite(v) for v in (*s["before_ci"], *s["after_ci"], *s["drop_ci"]))
             and s["before_ci"][0] > 0 and s["after_ci"][0] <= 0 <= s["after_ci"][1]
             and s["drop_ci"][0] > 0]
    return {"saturation_k": min(shown) if shown else None, "saturation_rule": SATURATION_RULE}


def per_target_slopes(cells: pd.DataFrame, reps: int = 300, seed: int = 0) -> list[dict]:
    """Per target: within-target slope with a bootstrap over source sets."""
    out = []
    rng = np.random.default_rng(seed)
    for t, g in cells.groupby("target"):
        if g["k"].nunique() < 2:
            continue
        s_codes, s_idx = np.unique(g["set_id"].to_numpy(), return_inverse=True)
        x = g["log2k"].to_numpy(float)[:, None]
        y, m = g["y"].to_numpy(float), g["m"].to_numpy(float)
        ti = np.zeros(len(g), int)
        b0 = within_solve(ti, 1, x, y, m[None, :])[0, 0]
        W = twoway_weights(ti, s_idx, 1, len(s_codes), reps, rng, resample_targets=False) * m
        lo, hi = percentile_ci(within_solve(ti, 1, x, y, W)[:, 0])
        out.append({"target": str(t), "target_class": resource_class(str(t)), "slope": float(b0),
                    "ci_low": lo, "ci_high": hi, "n_sets": int(len(s_codes))})
    return out


def boot_mean(values: np.ndarray, t_idx: np.ndarray, s_idx: np.ndarray, reps: int = 400,
              seed: int = 0) -> tuple[float, float, float]:
    """Mean with a two-way cluster bootstrap CI (targets × sets)."""
    n_t, n_s = int(t_idx.max()) + 1, int(s_idx.max()) + 1
    rng = np.random.default_rng(seed)
    W = twoway_weights(t_idx, s_idx, n_t, n_s, reps, rng)
    with np.errstate(invalid="ignore", divide="ignore"):
        bm = (W @ values) / W.sum(axis=1)
    lo, hi = percentile_ci(bm)
    return float(values.mean()), lo, hi


def k_means(cells: pd.DataFrame, reps: int = 400, seed: int = 0) -> list[dict]:
    """Per k: the mean over targets of the target's mean cell score, with a two-way cluster
    bootstrap CI (targets × sets drawn once for every k, so the curve's CIs are joint)."""
    t_codes, t_idx = np.unique(cells["target"].to_numpy(), return_inverse=True)
    s_codes, s_idx = np.unique(cells["set_id"].to_numpy(), return_inverse=True)
    rng = np.random.default_rng(seed)
    ct = rng.multinomial(len(t_codes), np.full(len(t_codes), 1 / len(t_codes)), size=reps)
    cs = rng.multinomial(len(s_codes), np.full(len(s_codes), 1 / len(s_codes)), size=reps)
    y = cells["y"].to_numpy(float)
    out = []
    for k in sorted(cells["k"].unique()):
        sel = (cells["k"] == k).to_numpy()
        T = np.zeros((int(sel.sum()), len(t_codes)))
        T[np.arange(int(sel.sum())), t_idx[sel]] = 1.0
        w = cs[:, s_idx[sel]]                                        # (reps, n_k)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_t = ((w * y[sel]) @ T) / (w @ T)                     # (reps, n_t)
            tw = np.where(np.isfinite(per_t), ct, 0)
            boot = np.nansum(np.nan_to_num(per_t) * tw, axis=1) / tw.sum(axis=1)
        lo, hi = percentile_ci(boot)
        point = float(cells[sel].groupby("target")["y"].mean().mean())
        out.append({"k": int(k), "mean": point, "ci_low": lo, "ci_high": hi})
    return out
