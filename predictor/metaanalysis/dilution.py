"""Selection, dilution and synergy kept apart: a set against its members at equal data per
member, whether a set holds the target's best single source, and the two null worlds.

Why a module of its own: under a fixed total each member of a k-set gets 1/k of the data,
so "set − best member" with members measured on the whole budget mixes the cost of cutting
the best member's data (dilution) with what combining languages does. The dilution design
(``me5-small-probe-dilution.parquet``) measures every single source at each share 2,490/k,
and :func:`equal_share_gaps` compares each set with its members at the share they had in
it. Two reference worlds, fed the real single scores, show what the estimators return when
the answer is known: *pure selection* (a set scores its best member) and *pure averaging*
(a set scores its members' mean).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import pandas as pd

from predictor.metaanalysis.prepare import STRATA

#: a member's share in a set and a measured single's size are the same share when they
#: differ by at most this many examples (2,490 // k against an even split: at most 1)
SHARE_TOLERANCE = 1


def best_sources(rows: pd.DataFrame, metric: str) -> dict[str, str]:
    """Target → the source language whose single-source cells score it best (seeds averaged;
    zero-shot singles of ``rows``, one stratum)."""
    singles = rows[(rows["k"] == 1) & rows["zero_shot"]]
    if singles.empty:
        return {}
    mean = singles.groupby(["target", "set_id"])[metric].mean().reset_index()
    top = mean.loc[mean.groupby("target")[metric].idxmax()]
    return dict(zip(top["target"].astype(str), top["set_id"].astype(str)))


def contains_best(set_ids: pd.Series, targets: pd.Series, best: Mapping[str, str]) -> np.ndarray:
    """1.0 where the set holds the target's best single source, 0.0 where not, NaN where the
    target has no measured singles."""
    return np.array([float(best[t] in s.split("+")) if t in best else np.nan
                     for s, t in zip(set_ids, targets)])


def _single_index(singles: pd.DataFrame, metric: str
                  ) -> tuple[dict, dict, dict[str, np.ndarray]]:
    """(by seed, seeds averaged, measured sizes per language) of one stratum's singles."""
    by_seed = singles.groupby(["set_id", "total_examples", "target", "seed"])[metric].mean()
    mean = singles.groupby(["set_id", "total_examples", "target"])[metric].mean()
    sizes = {lang: np.sort(g["total_examples"].unique())
             for lang, g in singles.groupby("set_id")}
    return by_seed.to_dict(), mean.to_dict(), sizes


def _nearest(sizes: np.ndarray | None, n: int) -> int | None:
    if sizes is None or not len(sizes):
        return None
    i = int(np.argmin(np.abs(sizes - n)))
    return int(sizes[i]) if abs(int(sizes[i]) - n) <= SHARE_TOLERANCE else None


def equal_share_gaps(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Each set's score minus its best and mean member's, the members measured on the share
    each had in the set (a single of ``total_examples`` within :data:`SHARE_TOLERANCE` of the
    member's count), same seed where measured and seeds averaged otherwise.

    ``df``: rows of the dilution design (any strata). Sets with a member lacking a single at
    its share are left out. Columns: STRATA, set_id, k, seed, target, target_class, share,
    score, best_member, mean_member, gap_best, gap_mean, contains_best (the set holds the
    best single source of the target at that share).
    """
    out = []
    for st_, g in df.groupby(STRATA):
        singles = g[g["k"] == 1]
        if singles.empty:
            continue
        by_seed, mean, sizes = _single_index(singles, metric)
        top = (singles.groupby(["total_examples", "target", "set_id"])[metric].mean()
               .reset_index())
        best_at = {(n, t): s for n, t, s in top.loc[top.groupby(["total_examples", "target"])
                                                    [metric].idxmax(),
                                                    ["total_examples", "target", "set_id"]]
                   .itertuples(index=False)}
        sets = g[(g["k"] >= 2) & g["zero_shot"]]
        for r in sets[["train_config", "set_id", "k", "seed", "target", "target_class",
                       metric]].itertuples(index=False):
            tc = json.loads(r.train_config) if isinstance(r.train_config, str) else r.train_config
            vals, shares = [], []
            for lang in r.set_id.split("+"):
                n = _nearest(sizes.get(lang), int(tc[lang]))
                v = None if n is None else by_seed.get((lang, n, r.target, r.seed),
                                                       mean.get((lang, n, r.target)))
                if v is None:
                    break
                vals.append(v)
                shares.append(n)
            else:
                score = getattr(r, metric)
                share = int(min(shares))
                best = best_at.get((share, r.target))
                out.append({**dict(zip(STRATA, st_)), "set_id": r.set_id, "k": int(r.k),
                            "seed": r.seed, "target": r.target, "target_class": r.target_class,
                            "share": share, "score": score, "best_member": max(vals),
                            "mean_member": float(np.mean(vals)), "gap_best": score - max(vals),
                            "gap_mean": score - float(np.mean(vals)),
                            "contains_best": None if best is None
                            else bool(best in r.set_id.split("+"))})
    return pd.DataFrame(out)


def null_world_slopes(cells: pd.DataFrame, solve) -> dict[str, dict[str, float]]:
    """What the slope and the best-member covariate slope would be in the two null worlds,
    fed the real single scores: *selection* (y = the set's best member) and *averaging*
    (y = its members' mean). ``cells`` hold target, log2k, best_member and mean_member;
    ``solve(cells, X, y)`` returns the within-target coefficients (point estimates: these
    are reference lines, not estimates)."""
    x = cells["log2k"].to_numpy(float)
    best = cells["best_member"].to_numpy(float)
    out = {}
    for world, y in (("selection", best), ("averaging", cells["mean_member"].to_numpy(float))):
        out[world] = {"slope": float(solve(cells, x[:, None], y)[0]),
                      "given_best_member": float(solve(cells, np.column_stack([x, best]),
                                                       y)[0])}
    return out
