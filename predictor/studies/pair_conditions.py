"""What the label-free signal costs when its conditions fail: label-skewed and unrelated pairs.

Why: a target's profile reads the source probes' predicted-label distributions on the
target's unlabelled pairs (entropy: a probe that collapses onto one label transfers badly).
That reading assumes in-domain NLI pairs with roughly balanced labels. This study breaks
one condition at a time, on pairs that are never scored (``python -m measure.profile
build-shipped --protocol disjoint-pairs --part A --pairs-condition C``), and measures the
unseen-target error it causes:

* ``skew-entailment`` / ``skew-neutral`` / ``skew-contradiction``: 80% of the pairs carry
  one gold label, read against ``size-control`` (balanced pairs, the same smaller count);
* ``unrelated``: each premise with another pair's hypothesis (no NLI relation);
* ``text-only``: no pairs at all.

Protocol (``disjoint-pairs``, frozen specification): leave one target out over the 22 own
targets; in each fold the *shipped* specification (the card's ``selected_per_design``, not
re-selected) is fitted on the other targets' rows with their shipped profiles
(disjoint-pairs, AmericasNLI scored on half B), and the held-out target's rows are
predicted once per condition with the features of that condition's profile. The fitted
models are shared, so conditions differ only in the held-out target's profile. Because the
specification was chosen on these targets (by an inner CV on all rows), absolute MAEs are
slightly optimistic; the differences between conditions are what the study reads.

Each condition is reported twice: ``read`` takes the profile's label-free columns at face
value; ``served`` is what ``xlt-predict`` answers, where a profile whose pairs fail
``pairs_check`` (or that has no pairs) has its label-free columns replaced by the mean of
the same configuration's training targets of its pretraining class, as
:class:`predictor.serving.imputation.ProfileImputer` does.

    python -m predictor.studies.pair_conditions --out models/studies/pair-conditions.json
"""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from measure.knowledge.paths import MODELS, resolve_default
from predictor.features.profiles import find_profile, profiles_root
from predictor.selection.metrics import bootstrap_diff, per_target_mae
from predictor.selection.nested import feature_matrix, predict_per_design
from predictor.selection.protocols import meta_of, protocol_splits
from predictor.selection.specs import Spec, specs_for
from predictor.serving.imputation import LABEL_FREE_COLUMNS
from predictor.studies import study_parser
from predictor.studies.profile_protocols import training_rows

OWN_SYSTEM = "me5-small|probe"
#: condition -> profiles directory under the models directory (build commands in the docs)
CONDITIONS = {
    "as-drawn": "profiles",
    "size-control": "profiles-disjoint-size-control-A",
    "skew-entailment": "profiles-disjoint-skew-entailment-A",
    "skew-neutral": "profiles-disjoint-skew-neutral-A",
    "skew-contradiction": "profiles-disjoint-skew-contradiction-A",
    "unrelated": "profiles-disjoint-unrelated-A",
    "text-only": "profiles-text-only",
}
#: what each condition is read against
REFERENCE = {"size-control": "as-drawn", "skew-entailment": "size-control",
             "skew-neutral": "size-control", "skew-contradiction": "size-control",
             "unrelated": "size-control", "text-only": "as-drawn"}


def shipped_specs(card: dict[str, Any]) -> dict[str, Spec]:
    """The card's unseen-target specification per system, as :class:`Spec` objects (every
    grid point with and without its within-target stage, matched by name)."""
    grid = specs_for("unseen-target")
    by_name = {s.name: s for s in grid}
    by_name.update({w.name: w for w in (dataclasses.replace(s, within=True) for s in grid)})
    chosen = card["selected_per_design"]["unseen-target"]
    missing = sorted(set(chosen.values()) - set(by_name))
    if missing:
        raise ValueError(f"the card's specs {missing} are not in this version's grid: refit "
                         "the predictor (xlt-predict fit) with this version")
    return {mm: by_name[name] for mm, name in chosen.items()}


def pairs_read(profiles: Path, target: str) -> bool:
    """Does the target's profile in ``profiles`` have label-free columns that serving reads
    (pairs, and pairs that look like NLI pairs)?"""
    root = profiles_root(str(profiles))
    prof, _ = find_profile(root, "me5-small", target) if root is not None else (None, None)
    if prof is None or not prof.get("label_free_by_source"):
        return False
    check = prof.get("pairs_check")
    return not (isinstance(check, dict) and check.get("looks_like_nli") is False)


def served_columns(X: np.ndarray, Xt: np.ndarray, names: list[str], train_meta: pd.DataFrame,
                   test_meta: pd.DataFrame, train_cfg: np.ndarray, test_cfg: np.ndarray
                   ) -> np.ndarray:
    """``Xt`` with the label-free columns replaced by the mean over the training rows of the
    same (system, pretraining class, configuration) -- the serving imputer's rule (peers of
    the class, the same configuration; all the class's rows where none has it)."""
    cols = [names.index(c) for c in LABEL_FREE_COLUMNS if c in names]
    out = Xt.copy()
    key_tr = pd.Series(train_meta["mm"].astype(str) + "|" + train_meta["pclass"].astype(str))
    key_te = test_meta["mm"].astype(str) + "|" + test_meta["pclass"].astype(str)
    block = pd.DataFrame(X[:, cols], columns=cols)
    by_cfg = block.groupby([key_tr.to_numpy(), train_cfg]).mean()
    by_cls = block.groupby(key_tr.to_numpy()).mean()
    for i, (k, c) in enumerate(zip(key_te.tolist(), test_cfg.tolist())):
        if (k, c) in by_cfg.index:
            out[i, cols] = by_cfg.loc[(k, c)].to_numpy()
        elif k in by_cls.index:
            out[i, cols] = by_cls.loc[k].to_numpy()
    return out


def run(models: Path, card: dict[str, Any], published: str | None,
        conditions: Sequence[str], log: Callable[[str], None], seed: int = 0) -> pd.DataFrame:
    """Out-of-fold predictions of the own targets' rows under every condition, read and
    served, as one long table (dataset, target, y, condition, mode, prediction)."""
    dirs = {c: models / CONDITIONS[c] for c in conditions}
    for c, p in dirs.items():
        if not p.is_dir():
            raise FileNotFoundError(f"{p}: build it first (docs/results.md, 'When the pairs "
                                    f"break the conditions'), condition {c}")
    specs = shipped_specs(card)
    d = training_rows(models, published, "test/B-of-2")
    meta = meta_of(d)
    y = d["score"].to_numpy(float)
    cfg = d["config_id"].astype(str).to_numpy()
    own = (d["mm"].astype(str) == OWN_SYSTEM).to_numpy()
    parts = []
    t0 = time.perf_counter()
    splits = [(tr, te) for tr, te in protocol_splits(d, "unseen_target", seed=seed)
              if own[te].any()]
    with threadpool_limits(limits=1):
        for i, (train, test) in enumerate(splits):
            test = test[own[test]]
            target = str(d["target_iso3"].iloc[test[0]])
            tf, X = feature_matrix(d, train, str(dirs.get("as-drawn", models / "profiles")))
            names = [str(n) for n in tf.get_feature_names_out()]
            fitted: dict[str, Any] = {}
            rows = d.iloc[test]
            lang = str(rows["target"].iloc[0])
            for c, where in dirs.items():
                tfc = copy.copy(tf)
                tfc.profiles_dir = str(where)
                Xc = tfc.transform(rows)
                read = pairs_read(where, lang)
                modes = {"read": Xc, "served": Xc if read else served_columns(
                    X[train], Xc, names, meta.iloc[train], meta.iloc[test], cfg[train],
                    cfg[test])}
                for mode, Xm in modes.items():
                    p = predict_per_design(specs, X[train], y[train], meta.iloc[train], Xm,
                                           meta.iloc[test], seed, fitted=fitted)
                    parts.append(pd.DataFrame({
                        "dataset": rows["dataset"].to_numpy(), "target": target,
                        "pclass": rows["pclass"].to_numpy(), "y": y[test], "condition": c,
                        "mode": mode, "prediction": p, "pairs_read": read}))
            log(f"fold {i + 1}/{len(splits)} {target}: {time.perf_counter() - t0:.0f} s")
    return pd.concat(parts, ignore_index=True)


def summarise(oof: pd.DataFrame, quantiles: dict[str, float], seed: int = 0) -> dict[str, Any]:
    """Per (dataset, condition, mode): MAE with targets weighted equally, mean signed error,
    the difference to the condition's reference with a 95% bootstrap CI over targets, the
    targets whose pairs serving would not read, and the coverage of the card's 90% interval
    half-widths (per pretraining class) on these held-out rows."""
    out: dict[str, Any] = {}
    for (ds, cond, mode), g in oof.groupby(["dataset", "condition", "mode"], sort=False):
        mae = per_target_mae(g["y"].to_numpy(), g["prediction"].to_numpy(),
                             g["target"].to_numpy())
        err = g["prediction"] - g["y"]
        half = g["pclass"].map(lambda c: quantiles.get(str(c), np.nan)).to_numpy(float)
        cover = (np.abs(err.to_numpy()) <= half)
        per_t_cov = pd.Series(cover).groupby(g["target"].to_numpy()).mean()
        rec: dict[str, Any] = {
            "targets": int(mae.size), "mae": float(mae.mean()),
            "bias": float(err.groupby(g["target"]).mean().mean()),
            "coverage": float(per_t_cov.mean()), "worst_coverage": float(per_t_cov.min()),
            "targets_not_read": sorted(g.loc[~g["pairs_read"], "target"].unique().tolist()),
            "per_target": {t: round(float(v), 3) for t, v in mae.items()}}
        ref = REFERENCE.get(cond)
        if ref is not None:
            h = oof[(oof["dataset"] == ds) & (oof["condition"] == ref) & (oof["mode"] == mode)]
            if len(h):
                base = per_target_mae(h["y"].to_numpy(), h["prediction"].to_numpy(),
                                      h["target"].to_numpy()).reindex(mae.index)
                diff, lo, hi = bootstrap_diff(mae.to_numpy(), base.to_numpy(), seed=seed)
                rec.update({"reference": ref, "reference_mae": float(base.mean()),
                            "diff": diff, "diff_ci": [lo, hi]})
        out.setdefault(str(ds), {}).setdefault(str(cond), {})[str(mode)] = rec
    return out


def card_quantiles(card: dict[str, Any]) -> dict[str, float]:
    """The card's unseen-target 90% half-width per pretraining class of the own system."""
    groups = card["intervals"]["unseen-target"]["groups"]
    return {k.rsplit("|", 1)[1]: float(v["quantile"]) for k, v in groups.items()
            if k.startswith(OWN_SYSTEM + "|")}


def format_table(summary: dict[str, Any]) -> str:
    """A markdown table: per dataset and condition, read and served MAE against the
    reference, bias and coverage (served)."""
    lines = ["| dataset | condition | MAE read | MAE served | vs reference (served) [95% CI] "
             "| bias served | 90% coverage served (worst target) | pairs not read |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for ds, conds in summary.items():
        for cond, modes in conds.items():
            r, s = modes["read"], modes["served"]
            vs = (f"{s['diff']:+.2f} [{s['diff_ci'][0]:+.2f}, {s['diff_ci'][1]:+.2f}] vs "
                  f"{s['reference']} {s['reference_mae']:.2f}" if "diff" in s else "--")
            lines.append(f"| {ds} | {cond} | {r['mae']:.2f} | {s['mae']:.2f} | {vs} | "
                         f"{s['bias']:+.2f} | {s['coverage']:.2f} ({s['worst_coverage']:.2f}) | "
                         f"{len(s['targets_not_read'])}/{s['targets']} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = study_parser("predictor.studies.pair_conditions", __doc__)
    ap.add_argument("--conditions", default=",".join(CONDITIONS),
                    help=f"comma-separated, of {', '.join(CONDITIONS)} (as-drawn always runs)")
    args = ap.parse_args(argv)
    conditions = ["as-drawn"] + [c.strip() for c in args.conditions.split(",")
                                 if c.strip() and c.strip() != "as-drawn"]
    bad = sorted(set(conditions) - set(CONDITIONS))
    if bad:
        ap.error(f"unknown conditions {bad}; choose from {', '.join(CONDITIONS)}")
    models = args.models_dir or resolve_default(MODELS)
    card = json.loads((models / "predictor" / "model_card.json").read_text(encoding="utf-8"))
    try:
        oof = run(models, card, args.published_dir, conditions,
                  lambda m: print(m, file=sys.stderr, flush=True))
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = summarise(oof, card_quantiles(card))
    print(format_table(summary))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"protocol": "disjoint-pairs, frozen shipped spec, "
                                    "leave one own target out", "conditions": summary},
                                   indent=1), encoding="utf-8")
    oof.to_parquet(args.out.with_suffix(".oof.parquet"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
