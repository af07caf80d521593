"""Group-conditional conformal intervals, calibrated at the level of target languages.

Why targets and not rows: the residuals of one target language are strongly correlated
(a language is hard for every configuration), so the exchangeable unit is the target,
not the row -- 22 targets, not 20,000 rows. Why groups: a pooled quantile is right on
average and wrong per group (me5-small was covered 0.99 on XNLI and 0.67 on AmericasNLI
zero-shot rows under one pooled quantile). So each (model, method, pretraining class)
group gets its own quantile (Mondrian conformal):

* the quantile is a *target-weighted* conformal quantile of the absolute out-of-fold
  residuals of the group: each target's rows carry weight 1/n_t, so every target counts
  once, and the level is the finite-sample (1 - alpha)(1 + 1/T) for T targets (with fewer
  than 1/alpha - 1 targets that level exceeds 1 and the plain 1 - alpha is used: not
  finite-sample valid, its measured held-out coverage is what the card reports);
* coverage is checked the same way it is used: each target of the group in turn is left
  out, the quantile is recomputed on the others, and the share of the held-out target's
  rows inside it is recorded; the group's coverage is the mean over its targets.

Groups with fewer than ``MIN_TARGETS`` targets borrow the (model, method) calibration,
and that with too few targets the pooled one. Residuals for the unseen-target basis come
from the nested unseen-target CV, those for the measured-target basis from the nested
unseen-configuration CV.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

SCORE_MIN, SCORE_MAX = 0.0, 100.0
MIN_TARGETS = 3
# out-of-support rows: the widest calibrated half-width of the model, times this factor
# (not calibrated -- there is nothing outside the support to calibrate on; it says "wider")
OUT_OF_SUPPORT_WIDEN = 1.5


def conformal_quantile(nonconformity: np.ndarray, alpha: float) -> float:
    """The ceil((n+1)(1-alpha))/n empirical quantile (inf when n is too small)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    s = np.sort(np.asarray(nonconformity, dtype=float))
    n = len(s)
    rank = math.ceil((n + 1) * (1 - alpha))
    if n == 0 or rank > n:
        return math.inf
    return float(s[rank - 1])


def target_weighted_quantile(resid: np.ndarray, targets: np.ndarray, alpha: float) -> float:
    """Smallest q with target-weighted share of |resid| <= q at least (1-alpha)(1+1/T)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    r = np.abs(np.asarray(resid, float))
    t = np.asarray(targets).astype(str)
    if len(r) == 0:
        return math.inf
    n_t = pd.Series(t).map(pd.Series(t).value_counts()).to_numpy(float)
    T = len(np.unique(t))
    w = 1.0 / n_t / T
    order = np.argsort(r, kind="stable")
    cum = np.cumsum(w[order])
    level = (1 - alpha) * (1 + 1 / T)
    if level > 1.0:
        # fewer than 1/alpha - 1 targets: the finite-sample level is unreachable, and the
        # largest residual seen over-covers (0.998 for me5-small's 7 absent targets); the
        # plain 1 - alpha level is used and its held-out coverage is reported as measured
        level = 1 - alpha
    pos = int(np.searchsorted(cum, level - 1e-12))
    return float(r[order][min(pos, len(r) - 1)])


def group_calibration(resid: np.ndarray, targets: np.ndarray, alpha: float) -> dict[str, Any]:
    """Quantile on every target of the group, and leave-one-target-out coverage."""
    r = np.abs(np.asarray(resid, float))
    t = np.asarray(targets).astype(str)
    q = target_weighted_quantile(r, t, alpha)
    per_target = {}
    uniq = np.unique(t)
    if len(uniq) >= 2:
        for g in uniq:
            held = t == g
            q_g = target_weighted_quantile(r[~held], t[~held], alpha)
            per_target[str(g)] = float((r[held] <= q_g).mean())
    cov = float(np.mean(list(per_target.values()))) if per_target else math.nan
    worst = min(per_target, key=per_target.get) if per_target else None
    return {"quantile": q, "targets": int(len(uniq)), "rows": int(len(r)),
            "coverage": cov, "worst_target": worst,
            "worst_target_coverage": per_target.get(worst, math.nan) if worst else math.nan,
            "per_target_coverage": per_target}


def calibrate_groups(y: np.ndarray, pred: np.ndarray, targets: np.ndarray, mm: np.ndarray,
                     pclass: np.ndarray, *, alpha: float = 0.1) -> dict[str, Any]:
    """Per (model|method|pclass) group, per (model|method) and pooled calibrations.

    Returns {'alpha', 'groups': {key: calib}, 'by_model': {mm: calib}, 'pooled': calib};
    ``quantile_for`` picks the most specific calibration with >= MIN_TARGETS targets.
    """
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    if np.isnan(pred).any():
        raise ValueError("out-of-fold predictions contain NaN: every row must be predicted "
                         "by a fold that did not train on it")
    r = y - pred
    t = np.asarray(targets).astype(str)
    mm = np.asarray(mm).astype(str)
    pc = np.asarray(pclass).astype(str)
    out: dict[str, Any] = {"alpha": alpha, "groups": {}, "by_model": {},
                           "pooled": group_calibration(r, t, alpha)}
    for m in np.unique(mm):
        sel = mm == m
        out["by_model"][m] = group_calibration(r[sel], t[sel], alpha)
        for c in np.unique(pc[sel]):
            s2 = sel & (pc == c)
            out["groups"][f"{m}|{c}"] = group_calibration(r[s2], t[s2], alpha)
    return out


def provenance_coverage(calib: Mapping[str, Any],
                        residuals: Mapping[str, tuple[np.ndarray, ...]],
                        alpha: float) -> dict[str, dict[str, Any]]:
    """Held-out coverage per (system|class) group of each profile provenance's residuals
    under the pooled calibration: each target left out in turn, the group's quantile
    recomputed from every provenance's residuals of the other targets, and the share of the
    held-out target's rows of that provenance inside it. {provenance: {group: {coverage,
    per_target_coverage}}}."""
    pooled = {k: np.concatenate([np.asarray(v[i]) for v in residuals.values()])
              for i, k in enumerate(("r", "t", "mm", "pc"))}
    group_of = np.char.add(np.char.add(pooled["mm"].astype(str), "|"), pooled["pc"].astype(str))
    out: dict[str, dict[str, Any]] = {}
    for name, (r, t, mm, pc) in residuals.items():
        r, t = np.abs(np.asarray(r, float)), np.asarray(t).astype(str)
        g_of = np.char.add(np.char.add(np.asarray(mm).astype(str), "|"), np.asarray(pc).astype(str))
        out[name] = {}
        for g in np.unique(g_of):
            if g not in calib.get("groups", {}):
                continue
            sel, psel = g_of == g, group_of == g
            per_t = {}
            for tgt in np.unique(t[sel]):
                other = psel & (pooled["t"].astype(str) != tgt)
                q = target_weighted_quantile(pooled["r"][other], pooled["t"][other], alpha)
                per_t[str(tgt)] = float((r[sel & (t == tgt)] <= q).mean())
            out[name][g] = {"coverage": float(np.mean(list(per_t.values()))),
                            "per_target_coverage": per_t}
    return out


def quantile_for(calib: Mapping[str, Any], mm: str, pclass: str) -> tuple[float, str]:
    """(quantile, which calibration) for a row: its group, else its model, else pooled."""
    g = calib.get("groups", {}).get(f"{mm}|{pclass}")
    if g and g["targets"] >= MIN_TARGETS and math.isfinite(g["quantile"]):
        return float(g["quantile"]), f"{mm}|{pclass}"
    m = calib.get("by_model", {}).get(mm)
    if m and m["targets"] >= MIN_TARGETS and math.isfinite(m["quantile"]):
        return float(m["quantile"]), mm
    return float(calib["pooled"]["quantile"]), "pooled"


#: a calibration group whose held-out coverage is below this is named in every answer it
#: gives (its intervals were too narrow for some of the targets left out)
COVERAGE_WARNING = 0.85


def coverage_for(calib: Mapping[str, Any], mm: str, pclass: str) -> float:
    """The held-out coverage of the calibration :func:`quantile_for` picks for a row."""
    _, which = quantile_for(calib, mm, pclass)
    if which == "pooled":
        return float(calib["pooled"].get("coverage", math.nan))
    table = calib.get("groups", {}) if "|" in which and which.count("|") == 2 \
        else calib.get("by_model", {})
    return float(table.get(which, {}).get("coverage", math.nan))


def widest_for_model(calib: Mapping[str, Any], mm: str) -> float:
    """The widest finite quantile among the model's calibrations (out-of-support rows)."""
    qs = [g["quantile"] for k, g in calib.get("groups", {}).items()
          if k.startswith(mm + "|") and math.isfinite(g["quantile"])]
    m = calib.get("by_model", {}).get(mm)
    if m and math.isfinite(m["quantile"]):
        qs.append(m["quantile"])
    return float(max(qs)) if qs else float(calib["pooled"]["quantile"])


def intervals(pred: np.ndarray, half_width: float | np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prediction, lower, upper), all clipped to the 0-100 score scale."""
    pred = np.asarray(pred, float)
    lo, hi = pred - half_width, pred + half_width
    return (np.clip(pred, SCORE_MIN, SCORE_MAX), np.clip(lo, SCORE_MIN, SCORE_MAX),
            np.clip(hi, SCORE_MIN, SCORE_MAX))


def coverage_summary(calib: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One record per (model|method|pclass) group: targets, half-width, LOTO coverage."""
    out = []
    for key, g in sorted(calib.get("groups", {}).items()):
        out.append({"group": key, "targets": g["targets"], "rows": g["rows"],
                    "half_width": g["quantile"], "coverage": g["coverage"],
                    "worst_target": g["worst_target"],
                    "worst_target_coverage": g["worst_target_coverage"],
                    "in_target_range": (g["targets"] < MIN_TARGETS) or
                    (0.80 <= g["coverage"] <= 0.97)})
    return out
