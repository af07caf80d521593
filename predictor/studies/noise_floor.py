"""How much of a design's within-target variation can any configuration feature explain?

Why: whether a goal for the measured-target model (say, an MAE 30% below the per-target
mean on every dataset) is reachable depends on how much of the variation around a target's
mean comes from the configuration (which languages, how much data) and how much is run
noise that no feature of the configuration can predict. This module measures it directly,
before any predictor is involved:

* ``within_target_sd`` -- sd of the scores around each target's mean (what a seen-target
  model can at most remove);
* ``run_effect_sd`` -- sd of the per-configuration mean of those residuals. One SumEval
  configuration is one fine-tuning run evaluated on every target, so a run that came out
  high lifts every target together: a shared shift that only running it reveals;
* ``seed_sd`` -- for own measurements with several seeds, the sd between seeds of the same
  cell (pure run noise, measured);
* ``mae_target_mean`` vs ``mae_config_ridge`` -- leave-one-configuration-out (10 grouped
  folds above LOCO_MAX_CONFIGS configurations): the target's
  mean from the other configurations, against that mean plus a ridge regression (alpha by
  an inner CV grouped by configuration, training configurations only) on *every* configuration
  feature -- log total size, k, the target's own size and whether it is supervised, and the
  log size of each language. If the ridge cannot beat the mean, no configuration feature
  can explain the within-target variation that is left, whatever the model;
* ``mae_oracle_run`` -- an upper bound no configuration model can pass: the target's mean
  plus the *measured* shift of each configuration (its mean residual over every target),
  fitted in-sample on the very rows it is scored on (a two-way additive fit that knows each
  run's outcome). If even this stays above a goal, the goal asks to predict
  target-by-configuration noise.

Targets are weighted equally (mean over targets of the per-target MAE).

    python -m predictor.studies.noise_floor \
        [--measurements models/measurements/me5-small-probe.parquet]
    python -m predictor.studies.noise_floor --unseen-targets      # SumEval's per-target errors
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold, LeaveOneGroupOut

from predictor.dataset import DataValidationError, build_dataset
from predictor.selection import (K_BANDS, SelectionSettings, bootstrap_diff, dedupe, nested_cv,
                                 per_target_mae, prepare)

ALPHAS = np.logspace(-2, 4, 13)
LOCO_MAX_CONFIGS = 60      # more configurations: 10 grouped outer folds instead of one per config
INNER_FOLDS = 5


def grouped_ridge(X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> Ridge:
    """Ridge with alpha chosen by an inner CV grouped by configuration.

    Why grouped: the rows of one configuration share its run effect, so a row-wise
    leave-one-out (RidgeCV's default) rewards fitting that shared noise."""
    folds = list(GroupKFold(n_splits=min(INNER_FOLDS, len(np.unique(groups)))).split(X, y, groups))
    def cv_err(alpha: float) -> float:
        return float(np.mean([np.abs(Ridge(alpha=alpha).fit(X[a], y[a]).predict(X[b]) - y[b]).mean()
                              for a, b in folds]))
    best = min(ALPHAS, key=cv_err)
    return Ridge(alpha=best).fit(X, y)


DESIGN = ["origin", "model", "method", "target_dataset"]


def config_features(frame: pd.DataFrame, languages: Sequence[str]) -> np.ndarray:
    """Every feature a configuration has: log total, k, the target's own log size and
    whether it is supervised, and the log size of each language."""
    tc = frame["train_config"].tolist()
    tgt = frame["target"].astype(str).tolist()
    cols = [np.log1p([sum(c.values()) for c in tc]), [len(c) for c in tc],
            [np.log1p(c.get(t, 0)) for c, t in zip(tc, tgt)],
            [float(c.get(t, 0) > 0) for c, t in zip(tc, tgt)]]
    cols += [[np.log1p(c.get(lang, 0)) for c in tc] for lang in languages]
    return np.column_stack([np.asarray(c, float) for c in cols])


def design_floor(frame: pd.DataFrame) -> dict[str, float]:
    """The figures of the module docstring for the rows of one design."""
    f = frame.reset_index(drop=True)
    y = f["score"].to_numpy(float)
    targets = f["target"].astype(str).to_numpy()
    configs = f["config_id"].astype(str).to_numpy()
    # seed sd: the spread between the runs of one (config, target) cell
    cell = f.groupby(["config_id", "target"])["score"]
    seed_sd = float(np.sqrt(cell.var(ddof=1).dropna().mean())) if (cell.size() > 1).any() \
        else float("nan")
    resid = y - f.groupby("target")["score"].transform("mean").to_numpy()
    run_effect = pd.Series(resid).groupby(configs).mean()
    languages = sorted({lang for c in f["train_config"] for lang in c})
    X = config_features(f, languages)
    base = np.full(len(f), np.nan)
    ridge = np.full(len(f), np.nan)
    n_cfg = len(np.unique(configs))
    outer = (LeaveOneGroupOut() if n_cfg <= LOCO_MAX_CONFIGS
             else GroupKFold(n_splits=10, shuffle=True, random_state=0))
    for tr, te in outer.split(X, y, configs):
        tmean = pd.Series(y[tr]).groupby(targets[tr]).mean()
        known = np.isin(targets[te], tmean.index)
        te = te[known]
        if not len(te):
            continue
        mu_tr = pd.Series(targets[tr]).map(tmean).to_numpy()
        mu_te = pd.Series(targets[te]).map(tmean).to_numpy()
        model = grouped_ridge(X[tr], y[tr] - mu_tr, configs[tr])
        base[te] = mu_te
        ridge[te] = mu_te + model.predict(X[te])
    oracle = (y - resid) + pd.Series(configs).map(run_effect).to_numpy()  # mean + run shift
    ok = ~np.isnan(base)
    mae_oracle = float(per_target_mae(y, oracle, targets).mean())
    mae_mean = float(per_target_mae(y[ok], base[ok], targets[ok]).mean())
    mae_ridge = float(per_target_mae(y[ok], ridge[ok], targets[ok]).mean())
    return {"targets": int(len(np.unique(targets))), "configs": int(len(np.unique(configs))),
            "rows": int(len(f)), "within_target_sd": float(np.std(resid, ddof=1)),
            "run_effect_sd": float(run_effect.std(ddof=1)), "seed_sd": seed_sd,
            "mae_target_mean": mae_mean, "mae_config_ridge": mae_ridge,
            "explained": 1.0 - mae_ridge / mae_mean, "mae_oracle_run": mae_oracle,
            "oracle_explained": 1.0 - mae_oracle / mae_mean}


def noise_floor(frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`design_floor` per design (origin, model, method, target dataset; own rows also
    per training pool and regime when the frame carries them, never pooled)."""
    keys = DESIGN + [c for c in ("pool", "regime") if c in frame.columns]
    rows = []
    for key, g in frame.groupby(keys, sort=True):
        if g["config_id"].nunique() < 3:
            continue
        rows.append({"design": ":".join(map(str, key)), **design_floor(g)})
    return pd.DataFrame(rows)


def within_set_spread(frame: pd.DataFrame) -> pd.DataFrame:
    """How much the members of a ranking candidate set differ: zero-shot rows at a fixed
    size per language (the 'fixed k' sets of the ranking report), seeds averaged, the sd of
    the scores of one (design, target, k) set, averaged over sets, per k band. Why: a
    ranking can only be as good as the members' differences are larger than the noise."""
    f = frame[frame["zero_shot"].astype(bool) & (frame["regime"] == "per_language")]
    keys = DESIGN + [c for c in ("pool",) if c in f.columns]
    cells = f.groupby(keys + ["target", "k", "config_id"], sort=False)["score"].mean().reset_index()
    rows = []
    for key, g in cells.groupby(keys, sort=True):
        for lo, hi, label in K_BANDS:
            b = g[(g["k"] >= lo) & (g["k"] <= hi)]
            sd = b.groupby(["target", "k"])["score"].std(ddof=1).dropna()
            if len(sd):
                rows.append({"design": ":".join(map(str, key)), "k": label, "sets": int(len(sd)),
                             "members_per_set": float(b.groupby(["target", "k"]).size().mean()),
                             "sd_within_set": float(sd.mean())})
    return pd.DataFrame(rows)


def _markdown(head: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table: header, separator, one line per row of already formatted cells."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def format_table(table: pd.DataFrame) -> str:
    return _markdown(
        ["design", "targets", "configs", "within-target sd", "run-effect sd", "seed sd",
         "MAE target mean", "MAE + config ridge", "explained",
         "MAE oracle (in-sample run shift)", "oracle explained"],
        ([r["design"], r["targets"], r["configs"], f"{r['within_target_sd']:.2f}",
          f"{r['run_effect_sd']:.2f}",
          "—" if np.isnan(r["seed_sd"]) else f"{r['seed_sd']:.2f}",
          f"{r['mae_target_mean']:.3f}", f"{r['mae_config_ridge']:.3f}",
          f"{100 * r['explained']:+.0f}%", f"{r['mae_oracle_run']:.3f}",
          f"{100 * r['oracle_explained']:+.0f}%"] for r in table.to_dict("records")))


def format_within_sets(spread: pd.DataFrame, reliability: pd.DataFrame) -> str:
    """``--within-sets``: how much set members differ, then how well seeds agree on them."""
    out = _markdown(["design", "k", "sets", "members per set", "sd within a set"],
                    ([r["design"], r["k"], r["sets"], f"{r['members_per_set']:.1f}",
                      f"{r['sd_within_set']:.2f}"] for r in spread.to_dict("records")))
    if len(reliability):
        out += "\n\n" + _markdown(
            ["design", "k", "sets with several seeds", "members per set",
             "seed-to-seed Spearman", "seeds", "mean of the seeds (Spearman-Brown)"],
            ([r["design"], r["k"], r["sets"], f"{r['members_per_set']:.1f}",
              f"{r['seed_rho']:.2f}", f"{r['seeds']:.0f}", f"{r['mean_of_seeds_rho']:.2f}"]
             for r in reliability.to_dict("records")))
    return out


def format_unseen_targets(per_target: pd.DataFrame, summary: pd.DataFrame) -> str:
    """``--unseen-targets``: per-target errors, then the per-design summary."""
    return _markdown(
        ["design", "target", "predictor MAE", "best baseline MAE", "difference",
         "mean error (measured - predicted)"],
        ([r["design"], r["target"], f"{r['mae']:.2f}", f"{r['baseline']:.2f}",
          f"{r['diff']:+.2f}", f"{r['bias']:+.2f}"]
         for r in per_target.sort_values(["design", "diff"]).to_dict("records"))) \
        + "\n\n" + _markdown(
        ["design", "targets", "predictor", "best baseline", "difference [95% CI]",
         "sd of per-target differences", "needed for a CI clear of 0"],
        ([r["design"], r["targets"], f"{r['mae']:.2f}",
          f"{r['baseline_mae']:.2f} ({r['baseline']})",
          f"{r['diff']:+.2f} [{r['ci'][0]:+.2f}, {r['ci'][1]:+.2f}]", f"{r['sd_diff']:.2f}",
          f"{100 * r['needed']:.0f}% below the baseline"] for r in summary.to_dict("records")))


def seed_reliability(frame: pd.DataFrame) -> pd.DataFrame:
    """Test-retest reliability of the rankings: within each (design, target, k) set of
    source sets measured with several seeds (the fixed-budget regime), the Spearman
    correlation between two seeds' scores of the same members, averaged over seed pairs
    and sets, per k band; and the Spearman-Brown value for the mean of the seeds.

    Why: a predictor's rank correlation with the measured scores cannot systematically
    exceed the measured scores' correlation with themselves. When two runs of the same
    source sets rank them with rho 0.04, a ranking goal at that k tests seed noise.
    """
    f = frame[frame["zero_shot"].astype(bool)]
    keys = DESIGN + [c for c in ("pool", "regime") if c in f.columns]
    rows = []
    for key, g in f.groupby(keys, sort=True):
        per_set = []
        for (target, k), s in g.groupby(["target", "k"]):
            p = s.pivot_table(index="config_id", columns="seed", values="score")
            if p.shape[0] < 4 or p.shape[1] < 2:
                continue
            rhos = [spearmanr(p[a], p[b]).correlation for a, b in combinations(p.columns, 2)]
            if np.isfinite(rhos).any():
                per_set.append({"k": int(k), "rho": float(np.nanmean(rhos)),
                                "seeds": int(p.shape[1]), "members": int(p.shape[0])})
        if not per_set:
            continue
        sets = pd.DataFrame(per_set)
        for lo, hi, label in K_BANDS:
            b = sets[(sets["k"] >= lo) & (sets["k"] <= hi)]
            if len(b):
                r, n = float(b["rho"].mean()), float(b["seeds"].mean())
                rows.append({"design": ":".join(map(str, key)), "k": label, "sets": len(b),
                             "members_per_set": float(b["members"].mean()),
                             "seed_rho": r, "seeds": n,
                             "mean_of_seeds_rho": n * r / (1 + (n - 1) * r)})
    return pd.DataFrame(rows)


def unseen_target_scatter(frame: pd.DataFrame, *, seed: int = 0) -> tuple[pd.DataFrame,
                                                                           pd.DataFrame]:
    """Per target and per design: the nested leave-one-target-out predictor against the
    best baseline, and what a CI clear of 0 would need.

    Why: with T targets the target-bootstrap CI of the MAE difference is about
    +-1.96 * sd(per-target differences) / sqrt(T) wide, so at the observed scatter the
    improvement must exceed that half-width, whatever the point estimate. Returns
    (per-target table, per-design summary). ``frame`` as for :func:`noise_floor`; the
    inner CV leaves one target out up to 25 targets (above: 4 target-grouped folds).
    """
    d, _ = prepare(frame)
    res = nested_cv(d, "unseen_target", settings=SelectionSettings(inner_logo_max=25), seed=seed)
    y = d["score"].to_numpy(float)
    rows, summary = [], []
    for design in sorted(d["mm"].astype(str).unique()):
        sel = (d["mm"].astype(str) == design).to_numpy()
        tg = d["target_iso3"].astype(str).to_numpy()[sel]
        model = per_target_mae(y[sel], res.oof["model"][sel], tg)
        bases = {b: per_target_mae(y[sel], res.oof[b][sel], tg)
                 for b in ("mm_mean", "mm_class_mean")}
        best = min(bases, key=lambda b: bases[b].mean())
        bias = pd.Series(y[sel] - res.oof["model"][sel]).groupby(tg).mean()
        diff = model - bases[best]
        for t in model.index:
            rows.append({"design": design, "target": t, "mae": model[t],
                         "baseline": bases[best][t], "diff": diff[t], "bias": bias[t]})
        _, lo, hi = bootstrap_diff(model.to_numpy(), bases[best].to_numpy(), seed=seed)
        half = 1.96 * float(diff.std(ddof=1)) / np.sqrt(len(diff))
        summary.append({"design": design, "targets": len(diff), "mae": float(model.mean()),
                        "baseline": best, "baseline_mae": float(bases[best].mean()),
                        "diff": float(diff.mean()), "ci": (lo, hi),
                        "sd_diff": float(diff.std(ddof=1)),
                        "needed": half / float(bases[best].mean())})
    return pd.DataFrame(rows), pd.DataFrame(summary)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m predictor.studies.noise_floor",
                                description="How much within-target variation configuration "
                                            "features can explain, per design (leave one "
                                            "configuration out).")
    p.add_argument("--measurements", type=Path, nargs="*", default=[],
                   help="own results (store or export); default: SumEval only")
    p.add_argument("--published-dir", type=Path, default=None,
                   help="directory holding sumeval2022/ (default: the shared data rule)")
    p.add_argument("--within-sets", action="store_true",
                   help="instead: how much the members of each fixed-k ranking set differ")
    p.add_argument("--unseen-targets", action="store_true",
                   help="instead: per-target errors of the nested leave-one-target-out "
                        "predictor against the best baseline, and the improvement a CI "
                        "clear of 0 needs at that scatter (a few minutes with own data)")
    args = p.parse_args(argv)
    try:
        frame = build_dataset(args.measurements, published_dir=args.published_dir)
    except (FileNotFoundError, DataValidationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    frame, dropped = dedupe(frame)
    print(f"{len(frame)} rows ({dropped} exact duplicates dropped)", file=sys.stderr)
    if args.within_sets:
        print(format_within_sets(within_set_spread(frame), seed_reliability(frame)))
        return 0
    if args.unseen_targets:
        print(format_unseen_targets(*unseen_target_scatter(frame)))
        return 0
    print(format_table(noise_floor(frame)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
