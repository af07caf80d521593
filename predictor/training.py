"""Fit the shipped predictor: dedup -> nested CV per protocol -> intervals -> ranking ->
ablation -> final selection and refit -> save.

Why one function: ``xlt-predict fit`` and the tests must produce the same artefact, and
the order matters -- every number in the card comes from outer folds whose training rows
alone chose the model; the final model is chosen by the same inner CV on all rows.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from measure.knowledge.languages import resolve_target
from predictor import dataset, intervals, persist, validation
from predictor.features import FEATURES, describe
from predictor.models import BASELINES, LEARNED
from predictor.validation import (PROTOCOLS, SELECTION_PROTOCOL, NestedResult, Spec,
                                  designs_by_spec, feature_matrix, format_ranking, format_report, meta_of,
                                  nested_cv, prepare, protocol_report, ranking_report,
                                  select_spec, _spearman)

ABLATION_PROTOCOLS = ("unseen_target", "unseen_family", "unseen_config")


def feature_families(names: Sequence[str]) -> dict[str, list[str]]:
    """Family -> its columns among ``names`` (``predictor.features.FEATURE_FAMILIES`` when it
    exists; else URIEL distances, pretraining coverage, script, k and sizes)."""
    try:
        from predictor.features import FEATURE_FAMILIES  # type: ignore[attr-defined]
        fams = {str(k): list(v) for k, v in FEATURE_FAMILIES.items()}
    except ImportError:
        from predictor.features import GROUPS
        fams = {"uriel": GROUPS["distances"] + GROUPS["diversity"],
                "pretraining": GROUPS["pretraining"], "script": GROUPS["script"],
                "k_and_sizes": GROUPS["sizes"]}
    out = {}
    for fam, cols in fams.items():
        hit = [n for n in names if n in set(cols) or any(
            c.endswith("*") and n.startswith(c[:-1]) for c in cols)]
        if hit and not fam.startswith("ident"):
            out[fam] = hit
    return out


def cv_records(frame: pd.DataFrame, res: NestedResult, label: str) -> list[dict[str, Any]]:
    """Summary rows per candidate (model + baselines): target-weighted MAE (each dataset and
    each target equal), row RMSE, Spearman and mean within-target Spearman."""
    y = frame["score"].to_numpy(float)
    tg = frame["target_iso3"].astype(str).to_numpy()
    ds = frame["dataset"].astype(str).to_numpy()
    ok = ~np.isnan(res.oof["model"])
    from predictor.validation import tw_mae
    out = []
    for name in ("model", *BASELINES):
        p = res.oof[name][ok]
        within = [_spearman(y[ok][tg[ok] == t], p[tg[ok] == t]) for t in np.unique(tg[ok])]
        within = [w for w in within if not math.isnan(w)]
        out.append({"protocol": res.protocol, "basis": res.basis,
                    "model": label if name == "model" else name, "folds": len(res.splits),
                    "rows": int(ok.sum()), "mae": tw_mae(y[ok], p, tg[ok], ds[ok]),
                    "rmse": float(np.sqrt(np.mean((p - y[ok]) ** 2))),
                    "spearman": _spearman(y[ok], p),
                    "spearman_within_target": float(np.mean(within)) if within else math.nan,
                    "seconds": res.seconds if name == "model" else 0.0,
                    "selection_rule": res.rule if name == "model" else None})
    return out


def support_info(frame: pd.DataFrame, has_profile: np.ndarray | None = None) -> dict[str, Any]:
    """What the training rows cover per (model, method): k, sizes, targets, their scripts,
    pretraining classes and how far apart the training targets are (URIEL)."""
    from predictor.features import pair_distances
    out: dict[str, Any] = {}
    for mm, g in frame.groupby("mm"):
        ns = [n for tc in g["train_config"] for n in tc.values()]
        iso = sorted(g["target_iso3"].astype(str).unique())
        nn = []
        if len(iso) >= 2:
            D = pair_distances(iso, iso, "featural")
            np.fill_diagonal(D, np.nan)
            nn = np.nanmin(np.where(np.isnan(D), np.inf, D), axis=1)
        scripts = sorted({resolve_target(t).script or "?" for t in g["target"].astype(str)})
        out[str(mm)] = {"k": [int(g["k"].min()), int(g["k"].max())],
                        "n_per_language": [int(min(ns)), int(max(ns))],
                        "targets": iso, "target_scripts": scripts,
                        "pclasses": sorted(g["pclass"].astype(str).unique()),
                        "profile_share": (float(np.mean(has_profile[frame["mm"] == mm]))
                                          if has_profile is not None else 0.0),
                        "featural_nn_max": float(np.max(nn)) if len(nn) else math.nan}
    return out


def spec_label(per_design: dict[str, Spec]) -> str:
    """One name for a per-design choice: the spec when every design chose the same one."""
    names = sorted({sp.name for sp in per_design.values()})
    if len(names) == 1:
        return names[0]
    return "per design: " + "; ".join(f"{m}: {sp.name}" for m, sp in sorted(per_design.items()))


def fit_per_design(per_design: dict[str, Spec], X: np.ndarray, y: np.ndarray,
                   meta: pd.DataFrame, seed: int = 0) -> dict[str, Any]:
    """{mm: fitted model}: each distinct spec fitted once on all rows, used for its designs."""
    fitted = {name: sp.build(seed, designs=mms).fit(X, y, meta)
              for name, (sp, mms) in designs_by_spec(per_design).items()}
    return {m: fitted[sp.name] for m, sp in per_design.items()}


def fit_predictor(frame: pd.DataFrame, out_dir: str | Path, *,
                  candidates: Sequence[str] | None = None,
                  protocols: Sequence[str] = PROTOCOLS, alpha: float = 0.1, seed: int = 0,
                  ablation: bool = True, sources: dict[str, Any] | None = None,
                  log: Callable[[str], None] | None = None,
                  normalized_intervals: bool = False) -> dict[str, Any]:
    """Nested CV under every protocol, intervals, ranking, ablation, final fit, save."""
    t0 = time.perf_counter()
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    families = [c for c in (candidates or LEARNED) if c in LEARNED] or list(LEARNED)
    d, dropped = prepare(frame)
    log(f"{len(frame)} rows, {dropped} exact duplicates dropped -> {len(d)}")
    protocols = list(dict.fromkeys([SELECTION_PROTOCOL, "unseen_config", *protocols]))
    cache: dict[Any, Any] = {}
    results: dict[str, NestedResult] = {}
    report: list[dict[str, Any]] = []
    for p in protocols:
        try:
            res = nested_cv(d, p, families=families, seed=seed, feature_cache=cache, log=log)
        except ValueError as exc:  # e.g. one target language, no family to leave out
            log(f"{p}: skipped ({exc})")
            continue
        if not res.splits:
            log(f"{p}: skipped (no fold possible)")
            continue
        results[p] = res
        report += protocol_report(d, res, seed=seed)
    log(format_report(report))

    # final specs: inner CV on all rows, same grouping as the protocol that answers
    unseen_info: dict[str, Any] = {}
    seen_info: dict[str, Any] = {}
    unseen_spec, unseen_inner = select_spec(d, SELECTION_PROTOCOL, families=families, seed=seed,
                                            feature_cache=cache, info=unseen_info)
    seen_spec, seen_inner = select_spec(d, "unseen_config", families=families, seed=seed,
                                        feature_cache=cache, info=seen_info)
    tf, X = cache[("all", seed)]
    names = list(tf.get_feature_names_out())
    y = d["score"].to_numpy(float)
    meta = meta_of(d)
    with threadpool_limits(limits=1):
        unseen = fit_per_design(unseen_spec, X, y, meta, seed)
        seen = fit_per_design(seen_spec, X, y, meta, seed)
    unseen_label, seen_label = spec_label(unseen_spec), spec_label(seen_spec)

    cv = []
    for p, res in results.items():
        label = unseen_label if res.basis == "unseen-target" else seen_label
        cv += cv_records(d, res, label)
        for r in cv[-len(BASELINES) - 1:]:
            r["outer_choices"] = dict(pd.Series(res.choices).value_counts()) \
                if r["model"] == label else {}

    # intervals: unseen-target residuals per (model|method|pclass) group; measured-target
    # residuals from the unseen-configuration protocol
    calib: dict[str, Any] = {}
    for basis, p in (("unseen-target", SELECTION_PROTOCOL), ("measured-target", "unseen_config")):
        if p in results:
            ok = ~np.isnan(results[p].oof["model"])
            calib[basis] = intervals.calibrate_groups(
                y[ok], results[p].oof["model"][ok], d["target_iso3"].astype(str).to_numpy()[ok],
                d["mm"].to_numpy()[ok], d["pclass"].to_numpy()[ok], alpha=alpha)
    for basis, c in calib.items():
        for r in intervals.coverage_summary(c):
            log(f"interval {basis:<15} {r['group']:<28} {r['targets']:>2} targets "
                f"+-{r['half_width']:.2f}  coverage {r['coverage']:.3f} "
                f"(worst {r['worst_target']}: {r['worst_target_coverage']:.3f})")

    within_sd: dict[str, float] = {}
    if SELECTION_PROTOCOL in results:
        r = pd.DataFrame({"r": y - results[SELECTION_PROTOCOL].oof["model"], "mm": d["mm"],
                          "t": d["target_iso3"].astype(str)}).dropna()
        r["w"] = r["r"] - r.groupby(["mm", "t"])["r"].transform("mean")
        within_sd = {str(k): float(v) for k, v in r.groupby("mm")["w"].std().items()}

    ranking = []
    if SELECTION_PROTOCOL in results:
        feats = pd.DataFrame(X, columns=names)
        ranking = ranking_report(d, results[SELECTION_PROTOCOL].oof["model"], feats, seed=seed)
        log(format_ranking(ranking))

    ablation_rows = []
    if ablation:
        fams = feature_families(names)
        for p in ABLATION_PROTOCOLS:
            if p not in results:
                continue
            spec = unseen_spec if results[p].basis == "unseen-target" else seen_spec
            label = unseen_label if results[p].basis == "unseen-target" else seen_label
            for fam, cols in [("none", [])] + list(fams.items()):
                r = nested_cv(d, p, seed=seed, fixed=spec, drop_columns=cols,
                              feature_cache=cache)
                for rec in protocol_report(d, r, seed=seed):
                    ablation_rows.append({"protocol": p, "dropped": fam, "model": label,
                                          "dataset": rec["dataset"], "mae": rec["mae"],
                                          "targets": rec["targets"]})
            log(f"ablation {p} done ({time.perf_counter() - t0:.0f} s)")
        base = {(a["protocol"], a["dataset"]): a["mae"] for a in ablation_rows
                if a["dropped"] == "none"}
        for a in ablation_rows:
            a["delta_vs_all"] = a["mae"] - base[(a["protocol"], a["dataset"])]

    card = {
        "created_unix": int(time.time()),
        "task": "xnli",
        "score_scale": "0-100 (the model's metric: accuracy for SumEval models, macro-F1 own)",
        "selected_model": unseen_label,
        "seen_target_model": seen_label,
        "selected_per_design": {"unseen-target": {m: sp.name for m, sp in unseen_spec.items()},
                                "measured-target": {m: sp.name for m, sp in seen_spec.items()}},
        "selection": ("nested CV, per (model, method): the learner and its parameters are "
                      "chosen by an inner CV on the outer training rows only -- "
                      + ("leave one target out" if validation.INNER_LOGO_MAX
                         else "4 target-grouped folds")
                      + " for the unseen-target model, 4 configuration-grouped folds for the "
                      "measured-target model; the outer folds report. Rule: "
                      + "; ".join(f"{b} model: {validation.RULE_TEXT[r]}"
                                  for b, r in validation.SELECTION_RULE.items())),
        "selection_rule": dict(validation.SELECTION_RULE),
        "within_stage": bool(validation.WITHIN_STAGE),
        "inner_cv_all_rows": {"unseen-target": unseen_inner, "measured-target": seen_inner,
                              "rule": dict(validation.SELECTION_RULE)},
        "inner_cv_choice": {"unseen-target": unseen_info, "measured-target": seen_info},
        "candidates": families,
        "baselines": list(BASELINES),
        "training_data": {
            "fingerprint_sha256": dataset.fingerprint(frame),
            "rows": int(len(frame)), "rows_after_dedup": int(len(d)),
            "duplicates_dropped": int(dropped),
            "by_origin": {str(k): int(v) for k, v in d["origin"].value_counts().items()},
            "targets": sorted(d["target"].unique().tolist()),
            "configs": int(d["config_id"].nunique()),
            **(sources or {}),
        },
        "models": dataset.model_catalogue(d),
        "support": support_info(d, X[:, names.index("has_profile")]
                                if "has_profile" in names else None),
        "features": [{"name": n, "description": describe(n)} for n in names],
        "feature_docs": FEATURES,
        "feature_families": feature_families(names),
        "cv": cv,
        "cv_by_dataset": report,
        "intervals": {"alpha": alpha, "unit": "target language (target-weighted conformal)",
                      "min_targets_per_group": intervals.MIN_TARGETS,
                      "out_of_support_widen": intervals.OUT_OF_SUPPORT_WIDEN,
                      **{b: c for b, c in calib.items()},
                      "coverage": {b: intervals.coverage_summary(c) for b, c in calib.items()}},
        "ranking": ranking,
        "within_target_residual_sd": within_sd,
        "ablation": ablation_rows,
        "fit_seconds": round(time.perf_counter() - t0, 1),
    }
    bundle = {"features": tf, "unseen": {m: v.to_state() for m, v in unseen.items()},
              "seen": {m: v.to_state() for m, v in seen.items()}}
    persist.save(bundle, out_dir, card)
    return persist.read_card(out_dir)
