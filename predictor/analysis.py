"""The meta-analysis: does adding supervised languages k help zero-shot transfer, and to whom?

Design rules (issue #12):

* **Never pool** different models, methods, training pools (``train_dataset/train_split``),
  budget regimes or measurement designs: every estimate is for one
  ``(model, method, pool, regime, design)``; the *design* is the table a row came from
  (``grid`` = the random-set grid ``me5-small-probe.parquet``; ``add-one``, ``shapley``,
  ``greedy`` = the tables of those designs).
* **Identical rows count once**: within one estimate, rows with the same training
  configuration, target and score are duplicates (k = 1 cells are the same training data in
  both regimes; per-language seeds change nothing when the budget is the whole pool).
* **Crossed random effects**: ``score ~ log2 k`` with random intercepts per target, random
  slopes on log2 k per target and random intercepts per source set (statsmodels ``MixedLM``
  with variance components over one all-rows group), fitted on (set, target) cell means
  (seeds averaged), per target class. The distribution-free check is a **two-way cluster
  bootstrap** that resamples target languages *and* source sets independently (a cell's
  weight is the product of its target's and its set's draw counts) of the within-target
  slope.
* **Saturation**: a piecewise-linear fit in log2 k with knots at k = 2, 4, 8; the gain per
  doubling in each segment with bootstrap CIs; the saturation k is the start of the first
  segment whose CI includes 0.
* **Scores**: macro-F1 and Cohen's kappa (×100, chance-corrected) from the stored confusion
  matrix, plus the predicted-label shares (column sums) so class collapse is visible.

Target classes are defined from outside the results (``measure.knowledge.coverage.resource_class``): *absent* = not in the
model's pretraining corpus (CC-100 for multilingual-e5-small / XLM-R: the AmericasNLI
languages); *xnli-low* = in CC-100 with less than ``CC100_LOW_GIB`` GiB of text; *high* =
the rest.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Mapping
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from measure.knowledge.coverage import RESOURCE_CLASSES, class_rule, resource_class
from measure.knowledge.languages import get_language
from measure.knowledge.nli import CHANCE, LABELS, XNLI_15


# -- target classes: measure.knowledge.coverage's one rule ------------------------------------
CLASSES = RESOURCE_CLASSES
CLASS_RULE = class_rule(XNLI_15, lambda c: get_language(c).name)
LOW_RESOURCE_XNLI = tuple(c for c in XNLI_15 if resource_class(c) == "xnli-low")

# -- loading and preparing rows ----------------------------------------------------------
DESIGN_NAMES = {"": "grid", "add-one": "add-one", "shapley": "shapley", "greedy": "greedy"}


def design_of(path: str | Path) -> str:
    """The design a measurement table holds, from its file name.

    ``me5-small-probe.parquet`` → ``grid``; ``me5-small-probe-add-one.parquet`` →
    ``add-one`` (likewise ``-shapley``, ``-greedy``); any other suffix is its own design.
    """
    stem = Path(path).stem
    for suffix in ("add-one", "shapley", "greedy"):
        if stem.endswith("-" + suffix):
            return suffix
    return "grid"


def kappa_and_shares(confusion: Any) -> tuple[float, float, float, float]:
    """Cohen's kappa ×100 and the predicted-label shares (entailment, neutral, contradiction).

    ``confusion`` is the stored 3×3 matrix (JSON or nested list), rows = gold labels.
    """
    m = np.asarray(json.loads(confusion) if isinstance(confusion, str) else confusion, float)
    n = m.sum()
    if m.shape != (3, 3) or n <= 0:
        return math.nan, math.nan, math.nan, math.nan
    po = np.trace(m) / n
    rows, cols = m.sum(axis=1) / n, m.sum(axis=0) / n
    pe = float(rows @ cols)
    kappa = 100.0 * (po - pe) / (1 - pe) if pe < 1 else 0.0
    return float(kappa), *(float(c) for c in cols)


def _set_id(tc: Any) -> str:
    cfg = json.loads(tc) if isinstance(tc, str) else dict(tc)
    return "+".join(sorted(k for k, v in cfg.items() if v and v > 0))


def prepare(raw: pd.DataFrame, design: str = "grid") -> pd.DataFrame:
    """Measurement rows (``xlt-measure export`` columns) → analysis rows.

    Adds: design, pool, set_id (sorted source languages), config (canonical JSON), target,
    target_class, log2k, kappa, share_entailment/neutral/contradiction.
    """
    df = raw.copy()
    cfgs = df["train_config"].map(lambda s: json.loads(s) if isinstance(s, str) else dict(s))
    df["config"] = cfgs.map(lambda c: json.dumps({k: int(v) for k, v in sorted(c.items()) if v},
                                                 separators=(",", ":")))
    df["set_id"] = cfgs.map(_set_id)
    df["design"] = design
    df["pool"] = df["train_dataset"].astype(str) + "/" + df["train_split"].astype(str)
    df["target"] = df["target_language"].astype(str)
    classes = {t: resource_class(t) for t in df["target"].unique()}
    df["target_class"] = df["target"].map(classes)
    df["k"] = df["k"].astype(int)
    df["log2k"] = np.log2(df["k"].astype(float))
    df["zero_shot"] = df["zero_shot"].astype(bool)
    ks = [kappa_and_shares(c) for c in df["confusion"]] if "confusion" in df else \
        [(math.nan,) * 4] * len(df)
    arr = np.array(ks, float).reshape(len(df), 4)
    df["kappa"] = arr[:, 0]
    for i, lab in enumerate(LABELS):
        df[f"share_{lab}"] = arr[:, i + 1]
    return df


def load_tables(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Read measurement exports (or stores) and prepare them, each tagged with its design."""
    from predictor.dataset import read_measurements
    parts = [prepare(read_measurements(p), design_of(p)) for p in paths]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


STRATA = ["model", "method", "pool", "regime", "design"]


def deduplicate(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Drop identical rows within a stratum: same config, target and score (any seed)."""
    key = STRATA + ["config", "target", "macro_f1"]
    dup = df.duplicated(key)
    return df[~dup], int(dup.sum())


# -- estimators ---------------------------------------------------------------------------
def cell_means(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per (set, target): mean score over seeds, number of seeds, log2 k."""
    g = df.groupby(["set_id", "target"], as_index=False).agg(
        y=(metric, "mean"), m=(metric, "size"), log2k=("log2k", "first"), k=("k", "first"))
    return g


def mixed_slope(cells: pd.DataFrame) -> dict[str, Any]:
    """MixedLM y ~ log2k, crossed random effects (target intercept, target×log2k slope, set).

    Variance components over one all-rows group. Returns slope, Wald 95% CI, p, the variance
    components and whether the optimiser converged; random slopes are dropped when a class
    has fewer than 3 targets, the set effect when every set appears once. With
    ``$XLT_MIXED_CACHE`` set to a directory, a fit is stored under the hash of its cells and
    reused when exactly the same cells come back (the fits take minutes on 2 cores; adding a
    design table does not change the grid's cells).
    """
    import hashlib
    import os
    cache = os.environ.get("XLT_MIXED_CACHE")   # optional: a directory of finished fits
    if cache:
        key = hashlib.sha256(cells[["set_id", "target", "log2k", "y"]].to_csv(index=False)
                             .encode()).hexdigest()[:24]
        path = Path(cache) / f"mixed-{key}.json"
        if path.is_file():
            return json.loads(path.read_text())
        out = _mixed_slope_fit(cells)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, default=float))
        return out
    return _mixed_slope_fit(cells)


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


KNOTS = (1.0, 2.0, 3.0)  # log2 k: k = 2, 4, 8


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


def _within_solve(t_idx: np.ndarray, n_t: int, X: np.ndarray, y: np.ndarray,
                  W: np.ndarray) -> np.ndarray:
    """Weighted within-target least squares for many weight vectors at once.

    W: (reps, n) weights. Returns (reps, p) coefficients (NaN where singular).
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


def _ci(a: np.ndarray) -> tuple[float, float]:
    a = a[np.isfinite(a)]
    if len(a) < 20:
        return math.nan, math.nan
    lo, hi = np.percentile(a, [2.5, 97.5])
    return float(lo), float(hi)


def slope_estimates(cells: pd.DataFrame, reps: int = 400, seed: int = 0) -> dict[str, Any]:
    """Within-target slope per doubling, piecewise segment gains and saturation k.

    Point estimates weight each (set, target) cell by its number of seeds; CIs from the
    two-way cluster bootstrap over targets and sets.
    """
    t_codes, t_idx = np.unique(cells["target"].to_numpy(), return_inverse=True)
    s_codes, s_idx = np.unique(cells["set_id"].to_numpy(), return_inverse=True)
    x = cells["log2k"].to_numpy(float)
    y = cells["y"].to_numpy(float)
    m = cells["m"].to_numpy(float)
    rng = np.random.default_rng(seed)
    W = twoway_weights(t_idx, s_idx, len(t_codes), len(s_codes), reps, rng) * m
    W0 = m[None, :]
    lin = x[:, None]
    b0 = _within_solve(t_idx, len(t_codes), lin, y, W0)[0, 0]
    bb = _within_solve(t_idx, len(t_codes), lin, y, W)[:, 0]
    out: dict[str, Any] = {"slope_within": float(b0)}
    out["boot_ci_low"], out["boot_ci_high"] = _ci(bb)
    kmax = int(cells["k"].max())
    P, segs = piecewise_design(x, kmax)
    segments = []
    if P.shape[1] > 1 and cells["k"].nunique() > P.shape[1]:
        c0 = _within_solve(t_idx, len(t_codes), P, y, W0)[0]
        cb = _within_solve(t_idx, len(t_codes), P, y, W)
        g0, gb = np.cumsum(c0), np.cumsum(cb, axis=1)
        for j, (klo, khi) in enumerate(segs):
            lo, hi = _ci(gb[:, j])
            segments.append({"k_from": klo, "k_to": khi, "gain_per_doubling": float(g0[j]),
                             "ci_low": lo, "ci_high": hi})
    out["segments"] = segments
    if "best_member" in cells and cells["best_member"].notna().all() and cells["k"].nunique() > 2:
        # the check: is the k slope left once the set's best single member is known?
        Xb = np.column_stack([x, cells["best_member"].to_numpy(float)])
        cb0 = _within_solve(t_idx, len(t_codes), Xb, y, W0)[0, 0]
        lo, hi = _ci(_within_solve(t_idx, len(t_codes), Xb, y, W)[:, 0])
        out["slope_given_best_member"] = {"slope": float(cb0), "ci_low": lo, "ci_high": hi}
    # saturation: the end of the last segment whose gain CI lies above 0 (1 when none does;
    # null when the last measured segment still gains)
    sat: int | None = None
    first_zero: int | None = None
    if segments and all(math.isfinite(s["ci_low"]) for s in segments):
        sig = [s["ci_low"] > 0 for s in segments]
        sat = 1 if not any(sig) else (None if sig[-1] else
                                       segments[max(i for i, v in enumerate(sig) if v)]["k_to"])
        first_zero = next((s["k_from"] for s in segments if s["ci_low"] <= 0), None)
    out["saturation_k"] = sat
    out["first_segment_ci_with_zero_k"] = first_zero
    out["saturation_rule"] = ("piecewise-linear fit in log2 k (knots k = 2, 4, 8), gain per "
                              "doubling per segment with two-way bootstrap 95% CIs; saturation "
                              "k = the end of the last segment whose CI lies above 0, after which "
                              "every segment's CI includes 0 (1 = no segment gains; null = the "
                              "last measured segment still gains)")
    return out


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
        b0 = _within_solve(ti, 1, x, y, m[None, :])[0, 0]
        W = twoway_weights(ti, s_idx, 1, len(s_codes), reps, rng, resample_targets=False) * m
        lo, hi = _ci(_within_solve(ti, 1, x, y, W)[:, 0])
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
    lo, hi = _ci(bm)
    return float(values.mean()), lo, hi


def _codes(a: pd.Series) -> np.ndarray:
    return pd.factorize(a)[0]


# -- designs --------------------------------------------------------------------------------
def member_gaps(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Each set's score minus its best and its mean single member's (same stratum and regime).

    Singles are the k = 1 rows of the same table, pool and regime, matched on seed where
    that seed was measured and averaged over seeds otherwise. Sets with a member lacking a
    single are left out. Columns: STRATA, set_id, k, seed, target, target_class, score,
    best_member, mean_member, gap_best, gap_mean.
    """
    zs = df[df["zero_shot"]]
    singles = df[df["k"] == 1]
    if singles.empty:
        return pd.DataFrame()
    s_seed = singles.groupby(STRATA + ["set_id", "target", "seed"])[metric].mean()
    s_mean = singles.groupby(STRATA + ["set_id", "target"])[metric].mean()
    seed_d, mean_d = s_seed.to_dict(), s_mean.to_dict()
    rows = []
    multi = zs[zs["k"] >= 2]
    for r in multi[STRATA + ["set_id", "k", "seed", "target", "target_class", metric]].itertuples(
            index=False):
        st_ = tuple(r[:5])
        vals = []
        for lang in r.set_id.split("+"):
            v = seed_d.get((*st_, lang, r.target, r.seed))
            if v is None:
                v = mean_d.get((*st_, lang, r.target))
            if v is None:
                break
            vals.append(v)
        else:
            score = getattr(r, metric)
            rows.append({**dict(zip(STRATA, st_)), "set_id": r.set_id, "k": r.k, "seed": r.seed,
                         "target": r.target, "target_class": r.target_class, "score": score,
                         "best_member": max(vals), "mean_member": float(np.mean(vals)),
                         "gap_best": score - max(vals), "gap_mean": score - float(np.mean(vals))})
    return pd.DataFrame(rows)


def add_one_pairs(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Paired gains score(S ∪ {l}) − score(S): same table, pool, regime, seed and target."""
    zs = df[df["zero_shot"]]
    score = zs.groupby(STRATA + ["seed", "target", "set_id"])[metric].mean().to_dict()
    rows = []
    for key, v in score.items():
        *st_, seed, target, set_id = key
        langs = set_id.split("+")
        if len(langs) < 2:
            continue
        for lang in langs:
            base = "+".join(sorted(x for x in langs if x != lang))
            b = score.get((*st_, seed, target, base))
            if b is not None:
                rows.append({**dict(zip(STRATA, st_)), "seed": seed, "target": target,
                             "target_class": resource_class(target), "base": base, "added": lang,
                             "base_size": len(langs) - 1, "gain": v - b})
    return pd.DataFrame(rows)


def shapley_values(v: Mapping[frozenset, float], players: list[str],
                   empty: float) -> dict[str, float]:
    """Exact Shapley values of a game given v on every non-empty subset (v(∅) = ``empty``)."""
    n = len(players)
    val = dict(v)
    val[frozenset()] = empty
    phi = {}
    for p in players:
        others = [q for q in players if q != p]
        tot = 0.0
        for r in range(n):
            w = math.factorial(r) * math.factorial(n - r - 1) / math.factorial(n)
            for c in combinations(others, r):
                s = frozenset(c)
                tot += w * (val[s | {p}] - val[s])
        phi[p] = tot
    return phi


CHANCE_LEVEL = {"macro_f1": CHANCE, "kappa": 0.0}


def shapley_table(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Shapley values of each language for every full set whose subsets were all measured.

    Scores are averaged over seeds first; v(∅) is the uniform-guess score (33.3 macro-F1,
    0 kappa). Only targets outside the full set (zero-shot for every subset). Columns:
    STRATA, full_set, target, target_class, language, phi, single, v_full, interaction.
    """
    d = df.groupby(STRATA + ["target", "set_id"], as_index=False)[metric].mean()
    rows = []
    for st_, g in d.groupby(STRATA):
        sets = set(g["set_id"])
        fulls = sorted({s for s in sets if len(s.split("+")) >= 3
                        and all("+".join(c) in sets for r in range(1, len(s.split("+")))
                                for c in combinations(s.split("+"), r))})
        fulls = [f for f in fulls if not any(f != o and set(f.split("+")) < set(o.split("+"))
                                             for o in fulls)]
        for full in fulls:
            players = full.split("+")
            for target, gt in g.groupby("target"):
                if target in players:
                    continue
                vmap = {frozenset(s.split("+")): val for s, val in zip(gt["set_id"], gt[metric])}
                subs = [frozenset(c) for r in range(1, len(players) + 1)
                        for c in combinations(players, r)]
                if not all(s in vmap for s in subs):
                    continue
                phi = shapley_values({s: vmap[s] for s in subs}, players, CHANCE_LEVEL[metric])
                vfull = vmap[frozenset(players)]
                inter = vfull - CHANCE_LEVEL[metric] - sum(vmap[frozenset([p])] - CHANCE_LEVEL[metric]
                                                    for p in players)
                for p in players:
                    rows.append({**dict(zip(STRATA, st_)), "full_set": full, "target": target,
                                 "target_class": resource_class(target), "language": p,
                                 "phi": phi[p], "single": vmap[frozenset([p])], "v_full": vfull,
                                 "interaction": inter,
                                 "best_single": max(vmap[frozenset([q])] for q in players)})
    return pd.DataFrame(rows)


GREEDY_OBJECTIVES = {"americas": "mean macro-F1 over the AmericasNLI targets",
                     "xnli-zs": "mean macro-F1 over the zero-shot XNLI targets"}


def objective_values(df: pd.DataFrame, objective: str) -> pd.Series:
    """The greedy search's objective per (k, set_id): seeds averaged (measure.designs)."""
    if objective == "americas":
        d = df[df["target_dataset"] == "americas_nli"]
    else:
        d = df[(df["target_dataset"] == "xnli") & df["zero_shot"]]
    return d.groupby(["k", "set_id", "seed"])["macro_f1"].mean().groupby(level=[0, 1]).mean()


def best_vs_random(greedy: pd.DataFrame, grid: pd.DataFrame,
                   path: pd.DataFrame | None = None) -> list[dict]:
    """Greedy best set per k (oracle objective) against the grid's random sets at that k.

    For each objective of ``measure.designs`` (AmericasNLI mean; zero-shot XNLI mean) and k,
    the greedy set is the one the search chose (``path``: ``xlt-measure greedy --path-out``),
    or without a path the greedy table's best candidate at k. It is compared with the random
    sets of the grid at the same k, model, method, pool and regime (same objective, seeds
    averaged): random median, 10th/90th percentiles, share of random sets beaten.
    """
    out = []
    keys = ["model", "method", "pool", "regime"]
    for st_, g in greedy.groupby(keys):
        r = grid
        for kname, val in zip(keys, st_):
            r = r[r[kname] == val]
        for obj in GREEDY_OBJECTIVES:
            gv = objective_values(g, obj)
            rv = objective_values(r, obj) if len(r) else pd.Series(dtype=float)
            chosen = {}
            if path is not None and len(path):
                pp = path[(path["objective"] == obj) & path["chosen"].astype(bool)]
                chosen = {int(k): str(s) for k, s in zip(pp["k"], pp["languages"])}
            # the designs may use another backend than the grid (ort-int8-s8 vs ort-int8):
            # the same singles measured in both tables show the offset
            common = gv.index.intersection(rv.index) if len(rv) else gv.index[:0]
            common = [i for i in common if i[0] == 1]
            offset = float((gv[common] - rv[common]).mean()) if common else None
            for k, gk in gv.groupby(level=0):
                sets = gk.droplevel(0)
                best_set = chosen.get(int(k)) or str(sets.idxmax())
                if best_set not in sets.index:
                    continue
                best = float(sets[best_set])
                rk = rv[rv.index.get_level_values(0) == k].to_numpy() if len(rv) else np.array([])
                row = {**dict(zip(keys, st_)), "objective": obj, "k": int(k),
                       "best_set": best_set, "best": best, "n_candidates": int(len(sets)),
                       "from_path": bool(chosen), "singles_offset_vs_grid": offset}
                if len(rk):
                    row.update(random_median=float(np.median(rk)),
                               random_p10=float(np.percentile(rk, 10)),
                               random_p90=float(np.percentile(rk, 90)),
                               share_random_beaten=float((rk < best).mean()),
                               n_random=int(len(rk)), best_minus_median=best - float(np.median(rk)))
                out.append(row)
    return out


# -- the whole analysis -----------------------------------------------------------------------
METRICS = ("macro_f1", "kappa")


def _summarise_gaps(gaps: pd.DataFrame, metric: str, reps: int) -> list[dict]:
    out = []
    if gaps.empty:
        return out
    for st_, g in gaps.groupby(STRATA):
        for cls in CLASSES:
            gc = g[g["target_class"] == cls]
            if gc.empty:
                continue
            rec = {**dict(zip(STRATA, st_)), "metric": metric, "target_class": cls,
                   "n_rows": int(len(gc)), "n_sets": int(gc["set_id"].nunique()),
                   "n_targets": int(gc["target"].nunique())}
            ti, si = _codes(gc["target"]), _codes(gc["set_id"])
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
    if pairs.empty:
        return out
    for st_, g in pairs.groupby(STRATA):
        for cls in CLASSES:
            gc = g[g["target_class"] == cls]
            groups = list(gc.groupby("base_size"))
            if len(gc):
                groups.append((None, gc))       # every base size together
            for size, h in groups:
                mean, lo, hi = boot_mean(h["gain"].to_numpy(float), _codes(h["target"]),
                                         _codes(h["base"]), reps)
                out.append({**dict(zip(STRATA, st_)), "metric": metric, "target_class": cls,
                            "base_size": None if size is None else int(size),
                            "gain": mean, "ci": [lo, hi],
                            "share_positive": float((h["gain"] > 0).mean()),
                            "n_pairs": int(len(h)), "n_bases": int(h["base"].nunique()),
                            "n_targets": int(h["target"].nunique())})
    return out


def _summarise_shapley(tab: pd.DataFrame, metric: str, reps: int) -> list[dict]:
    out = []
    if tab.empty:
        return out
    rng = np.random.default_rng(0)
    for key, g in tab.groupby([*STRATA, "full_set"]):
        st_, full = key[:5], key[5]
        for cls in CLASSES:
            gc = g[g["target_class"] == cls]
            if gc.empty:
                continue
            targets = sorted(gc["target"].unique())
            piv = gc.pivot_table(index="target", columns="language", values="phi")
            draws = rng.integers(0, len(targets), (reps, len(targets)))
            langs = []
            for lang in piv.columns:
                vals = piv[lang].to_numpy(float)
                lo, hi = _ci(vals[draws].mean(axis=1))
                langs.append({"language": lang, "phi": float(vals.mean()), "ci": [lo, hi],
                              "single": float(gc[gc["language"] == lang]["single"].mean())})
            langs.sort(key=lambda r: -r["phi"])
            per_t = gc.drop_duplicates("target").set_index("target")
            inter = per_t["interaction"].to_numpy(float)
            lo, hi = _ci(inter[draws].mean(axis=1))
            singles_gain = (gc.groupby("target")["single"].sum() - CHANCE_LEVEL[metric] * len(
                gc["language"].unique())).reindex(per_t.index).to_numpy(float)
            with np.errstate(invalid="ignore", divide="ignore"):
                additivity = (per_t["v_full"].to_numpy(float) - CHANCE_LEVEL[metric]) / singles_gain
            gap = (per_t["v_full"] - per_t["best_single"]).to_numpy(float)
            glo, ghi = _ci(gap[draws].mean(axis=1))
            tot = sum(r["phi"] for r in langs)
            out.append({**dict(zip(STRATA, st_)), "metric": metric, "full_set": full,
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


def _best_member_cells(stratum: pd.DataFrame, metric: str) -> pd.DataFrame | None:
    """(set, target) → mean best-single-member score (a single's own score for k = 1)."""
    gaps = member_gaps(stratum, metric)
    singles = stratum[(stratum["k"] == 1) & stratum["zero_shot"]]
    parts = [singles.groupby(["set_id", "target"], as_index=False)[metric].mean()
             .rename(columns={metric: "best_member"})]
    if len(gaps):
        parts.append(gaps.groupby(["set_id", "target"], as_index=False)["best_member"].mean())
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else None


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
            stratum = df
            for kname, val in zip(STRATA, st_):
                stratum = stratum[stratum[kname] == val]
            best = _best_member_cells(stratum, metric)
            for cls in CLASSES:
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
                    log(f"{'/'.join(map(str, st_))} {metric} {cls}: mixed {rec['slope']:+.2f} "
                        f"[{rec['ci_low']:+.2f}, {rec['ci_high']:+.2f}] boot "
                        f"[{rec['boot_ci_low']:+.2f}, {rec['boot_ci_high']:+.2f}] "
                        f"saturation k {rec['saturation_k']}")
                out.append(rec)
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
    per_target = []
    for st_, sub in df[(df["design"] == "grid") & df["zero_shot"]].groupby(STRATA):
        if sub["k"].nunique() < 2:
            continue
        for metric in METRICS:
            for rec in per_target_slopes(cell_means(sub, metric), reps=min(reps, 300)):
                per_target.append({**dict(zip(STRATA, st_)), "metric": metric, **rec})
    res["per_target"] = per_target
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
        for cls in CLASSES:
            d = g[g["target_class"] == cls]
            if d["target"].nunique() < 1 or d["k"].nunique() < 2:
                continue
            ti, si = _codes(d["target"]), _codes(d["config_id"])
            X = d[["log2k", "log10_total"]].to_numpy(float)
            y = d["score"].to_numpy(float)
            nt, ns = int(ti.max()) + 1, int(si.max()) + 1
            b0 = _within_solve(ti, nt, X, y, np.ones((1, len(d))))[0, 0]
            W = twoway_weights(ti, si, nt, ns, reps, np.random.default_rng(0))
            lo, hi = _ci(_within_solve(ti, nt, X, y, W)[:, 0])
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
    order = {c: i for i, c in enumerate(CLASSES)}
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


def _f(x: Any, nd: int = 2, sign: bool = True) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:+.{nd}f}" if sign else f"{x:.{nd}f}"


REGIME_SHORT = {"fixed_total": "fixed total", "per_language": "per-language"}


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
            f"| {r['target_class']} ({r['n_targets']}) | **{_f(r['slope'])}** "
            f"[{_f(r['ci'][0])}, {_f(r['ci'][1])}] | [{_f(r['boot_ci'][0])}, {_f(r['boot_ci'][1])}] "
            f"| {r['saturation_k'] if r['saturation_k'] is not None else 'not reached'} "
            f"| {_f(r['gap_best'])} | {_f(r['gap_mean'])} | {_f(r['add_one_gain'])} |")
    return "\n".join(lines)


# -- correlations (unchanged) -------------------------------------------------------------------
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
