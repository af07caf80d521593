"""What the measurement designs (``measure.designs``) measure: sets against their own
members, the paired gain of adding one language, Shapley values, and the greedy best set
against random sets.

Why separate from the slope estimates: a random k-set's slope mixes "more languages" with
"a better chance of containing a strong language"; these tables separate the two, each from
the design table that was measured for it (or, for member gaps, from any table with
singles).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

from measure.designs import OBJECTIVES, shapley_values
from measure.knowledge.coverage import resource_class
from measure.knowledge.nli import CHANCE
from predictor.metaanalysis.prepare import STRATA, select

#: v(∅) of the Shapley games: the score of a uniform guess
CHANCE_LEVEL = {"macro_f1": CHANCE, "kappa": 0.0}


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
    """Paired gains score(S ∪ {l}) − score(S): same table, pool, regime, seed and target.

    ``new_best``: whether the added language l, trained alone (same table, pool and regime,
    seeds averaged), scores the target better than every member of S alone — adding a new
    best source is selection; adding one that is not is what combining does (None where a
    single is missing).
    """
    zs = df[df["zero_shot"]]
    score = zs.groupby(STRATA + ["seed", "target", "set_id"])[metric].mean().to_dict()
    single = zs[zs["k"] == 1].groupby(STRATA + ["target", "set_id"])[metric].mean().to_dict()
    rows = []
    for key, v in score.items():
        *st_, seed, target, set_id = key
        langs = set_id.split("+")
        if len(langs) < 2:
            continue
        alone = [single.get((*st_, target, x)) for x in langs]
        for i, lang in enumerate(langs):
            base = "+".join(sorted(x for x in langs if x != lang))
            b = score.get((*st_, seed, target, base))
            if b is None:
                continue
            others = [a for j, a in enumerate(alone) if j != i]
            new_best = None if alone[i] is None or None in others else \
                bool(alone[i] > max(others))
            rows.append({**dict(zip(STRATA, st_)), "seed": seed, "target": target,
                         "target_class": resource_class(target), "base": base, "added": lang,
                         "base_size": len(langs) - 1, "gain": v - b, "new_best": new_best})
    return pd.DataFrame(rows)


def full_sets(set_ids: set[str]) -> list[str]:
    """The largest sets (k ≥ 3) all of whose non-empty subsets were measured."""
    fulls = sorted({s for s in set_ids if len(s.split("+")) >= 3
                    and all("+".join(c) in set_ids for r in range(1, len(s.split("+")))
                            for c in combinations(s.split("+"), r))})
    return [f for f in fulls if not any(f != o and set(f.split("+")) < set(o.split("+"))
                                        for o in fulls)]


def shapley_table(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Shapley values of each language for every full set whose subsets were all measured.

    Scores are averaged over seeds first; v(∅) is the uniform-guess score (33.3 macro-F1,
    0 kappa). Only targets outside the full set (zero-shot for every subset). Columns:
    STRATA, full_set, target, target_class, language, phi, single, v_full, interaction.
    """
    d = df.groupby(STRATA + ["target", "set_id"], as_index=False)[metric].mean()
    empty = CHANCE_LEVEL[metric]
    rows = []
    for st_, g in d.groupby(STRATA):
        for full in full_sets(set(g["set_id"])):
            players = full.split("+")
            for target, gt in g.groupby("target"):
                if target in players:
                    continue
                vmap = {frozenset(s.split("+")): val for s, val in zip(gt["set_id"], gt[metric])}
                subs = [frozenset(c) for r in range(1, len(players) + 1)
                        for c in combinations(players, r)]
                if not all(s in vmap for s in subs):
                    continue
                phi = shapley_values(lambda s, v=vmap: v[frozenset(s)], players, empty)
                vfull = vmap[frozenset(players)]
                inter = vfull - empty - sum(vmap[frozenset([p])] - empty for p in players)
                for p in players:
                    rows.append({**dict(zip(STRATA, st_)), "full_set": full, "target": target,
                                 "target_class": resource_class(target), "language": p,
                                 "phi": phi[p], "single": vmap[frozenset([p])], "v_full": vfull,
                                 "interaction": inter,
                                 "best_single": max(vmap[frozenset([q])] for q in players)})
    return pd.DataFrame(rows)


def objective_values(df: pd.DataFrame, objective: str) -> pd.Series:
    """A greedy objective (``measure.designs.OBJECTIVES``) per (k, set_id), seeds averaged."""
    d = df[OBJECTIVES[objective].rows(df)]
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
        r = select(grid, keys, st_)
        for obj in OBJECTIVES:
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
