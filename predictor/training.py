"""Fit the shipped predictor: dedup -> nested CV per protocol -> intervals -> ranking ->
ablation -> final selection and refit -> save.

Why one entry point: ``xlt-predict fit`` and the tests must produce the same artefact, and
the order matters -- every number in the card comes from outer folds whose training rows
alone chose the model; the final model is chosen by the same inner CV on all rows. The
search's settings (:class:`~predictor.selection.SelectionSettings`) come in as an argument
and the card records them from it.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from measure.knowledge.languages import resolve_target
from predictor import dataset, intervals, persist
from predictor.card import format_ranking, format_report
from predictor.features import FEATURE_FAMILIES, FEATURES, describe, pair_distances
from predictor.features.profiles import profile_protocols
from predictor.models import BASELINES, LEARNED
from predictor.selection import (DEFAULT_SETTINGS, PROTOCOLS, RULE_TEXT, SELECTION_PROTOCOL,
                                 SHIFTED_OOF, NestedResult, SelectionSettings, Spec, cv_records,
                                 designs_by_spec, meta_of, nested_cv, prepare, protocol_report,
                                 ranking_report, select_spec)

ABLATION_PROTOCOLS = ("unseen_target", "unseen_family", "unseen_config")


def feature_families(names: Sequence[str]) -> dict[str, list[str]]:
    """Family -> its columns among ``names`` (``predictor.features.FEATURE_FAMILIES``; a
    trailing '*' matches a prefix); identity families are left out."""
    out = {}
    for fam, cols in FEATURE_FAMILIES.items():
        hit = [n for n in names if n in set(cols) or any(
            c.endswith("*") and n.startswith(c[:-1]) for c in cols)]
        if hit and not str(fam).startswith("ident"):
            out[str(fam)] = hit
    return out


def support_info(frame: pd.DataFrame, has_profile: np.ndarray | None = None) -> dict[str, Any]:
    """What the training rows cover per system: k, sizes, targets, their scripts,
    pretraining classes and how far apart the training targets are (URIEL)."""
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
    """One name for a per-system choice: the spec when every system chose the same one."""
    names = sorted({sp.name for sp in per_design.values()})
    if len(names) == 1:
        return names[0]
    return "per design: " + "; ".join(f"{m}: {sp.name}" for m, sp in sorted(per_design.items()))


def fit_per_design(per_design: dict[str, Spec], X: np.ndarray, y: np.ndarray,
                   meta: pd.DataFrame, seed: int = 0) -> dict[str, Any]:
    """{mm: fitted model}: each distinct spec fitted once on all rows, used for its systems."""
    fitted = {name: sp.build(seed, designs=mms).fit(X, y, meta)
              for name, (sp, mms) in designs_by_spec(per_design).items()}
    return {m: fitted[sp.name] for m, sp in per_design.items()}


@dataclass
class Final:
    """The shipped model's choice (inner CV on all rows) and its fitted models, per basis."""

    unseen_spec: dict[str, Spec]
    seen_spec: dict[str, Spec]
    unseen_inner: dict[str, dict[str, float]]
    seen_inner: dict[str, dict[str, float]]
    unseen_info: dict[str, Any]
    seen_info: dict[str, Any]
    unseen: dict[str, Any]
    seen: dict[str, Any]

    @property
    def unseen_label(self) -> str:
        return spec_label(self.unseen_spec)

    @property
    def seen_label(self) -> str:
        return spec_label(self.seen_spec)

    def for_basis(self, basis: str) -> tuple[dict[str, Spec], str]:
        """(spec per system, its label) of the model that answers ``basis``."""
        if basis == "unseen-target":
            return self.unseen_spec, self.unseen_label
        return self.seen_spec, self.seen_label


def run_protocols(d: pd.DataFrame, protocols: Sequence[str], *, families: Sequence[str],
                  seed: int, settings: SelectionSettings, cache: dict[Any, Any],
                  log: Callable[[str], None]) -> tuple[dict[str, NestedResult], list[dict]]:
    """The nested CV of every protocol that can run on ``d``, and its per-dataset report."""
    results: dict[str, NestedResult] = {}
    report: list[dict[str, Any]] = []
    for p in protocols:
        try:
            res = nested_cv(d, p, settings=settings, families=families, seed=seed,
                            feature_cache=cache, log=log)
        except ValueError as exc:  # e.g. one target language, no family to leave out
            log(f"{p}: skipped ({exc})")
            continue
        if not res.splits:
            log(f"{p}: skipped (no fold possible)")
            continue
        results[p] = res
        report += protocol_report(d, res, seed=seed)
    log(format_report(report))
    return results, report


def fit_final(d: pd.DataFrame, *, families: Sequence[str], seed: int,
              settings: SelectionSettings, cache: dict[Any, Any]) -> Final:
    """Final specs by the inner CV on all rows (same grouping as the protocol that
    answers), each fitted on all rows."""
    unseen_info: dict[str, Any] = {}
    seen_info: dict[str, Any] = {}
    unseen_spec, unseen_inner = select_spec(d, SELECTION_PROTOCOL, settings=settings,
                                            families=families, seed=seed, feature_cache=cache,
                                            info=unseen_info)
    seen_spec, seen_inner = select_spec(d, "unseen_config", settings=settings,
                                        families=families, seed=seed, feature_cache=cache,
                                        info=seen_info)
    _, X = cache[("all", seed)]
    y = d["score"].to_numpy(float)
    meta = meta_of(d)
    with threadpool_limits(limits=1):
        unseen = fit_per_design(unseen_spec, X, y, meta, seed)
        seen = fit_per_design(seen_spec, X, y, meta, seed)
    return Final(unseen_spec, seen_spec, unseen_inner, seen_inner, unseen_info, seen_info,
                 unseen, seen)


def cv_summary(d: pd.DataFrame, results: dict[str, NestedResult], final: Final) -> list[dict]:
    """:func:`~predictor.selection.cv_records` of every protocol, the model's row with the
    specs its outer folds chose."""
    cv: list[dict[str, Any]] = []
    for res in results.values():
        _, label = final.for_basis(res.basis)
        cv += cv_records(d, res, label)
        for r in cv[-len(BASELINES) - 1:]:
            r["outer_choices"] = dict(pd.Series(res.choices).value_counts()) \
                if r["model"] == label else {}
    return cv


def calibrate(d: pd.DataFrame, results: dict[str, NestedResult], alpha: float,
              log: Callable[[str], None]) -> dict[str, Any]:
    """Interval calibration per basis: unseen-target residuals per (system, pclass) group,
    measured-target residuals from the unseen-configuration protocol."""
    y = d["score"].to_numpy(float)
    tg, mm, pc = (d["target_iso3"].astype(str).to_numpy(), d["mm"].to_numpy(),
                  d["pclass"].to_numpy())
    calib: dict[str, Any] = {}
    for basis, p in (("unseen-target", SELECTION_PROTOCOL), ("measured-target", "unseen_config")):
        if p not in results:
            continue
        # with shifted profiles, both residual sets: the intervals must hold for a profile
        # from another source too (each target still counts once)
        preds = [results[p].oof[k] for k in ("model", SHIFTED_OOF) if k in results[p].oof]
        ok = [~np.isnan(q) for q in preds]
        calib[basis] = intervals.calibrate_groups(
            np.concatenate([y[o] for o in ok]), np.concatenate([q[o] for q, o in zip(preds, ok)]),
            np.concatenate([tg[o] for o in ok]), np.concatenate([mm[o] for o in ok]),
            np.concatenate([pc[o] for o in ok]), alpha=alpha)
        if len(preds) > 1:
            calib[basis]["provenance_coverage"] = intervals.provenance_coverage(
                calib[basis], {"disjoint": (y[ok[0]] - preds[0][ok[0]], tg[ok[0]], mm[ok[0]],
                                            pc[ok[0]]),
                               "shifted": (y[ok[1]] - preds[1][ok[1]], tg[ok[1]], mm[ok[1]],
                                           pc[ok[1]])}, alpha)
    for basis, c in calib.items():
        for r in intervals.coverage_summary(c):
            log(f"interval {basis:<15} {r['group']:<28} {r['targets']:>2} targets "
                f"+-{r['half_width']:.2f}  coverage {r['coverage']:.3f} "
                f"(worst {r['worst_target']}: {r['worst_target_coverage']:.3f})")
    return calib


def within_target_sd(d: pd.DataFrame, results: dict[str, NestedResult]) -> dict[str, float]:
    """Per system, the SD of the unseen-target residuals around each target's mean."""
    if SELECTION_PROTOCOL not in results:
        return {}
    y = d["score"].to_numpy(float)
    r = pd.DataFrame({"r": y - results[SELECTION_PROTOCOL].oof["model"], "mm": d["mm"],
                      "t": d["target_iso3"].astype(str)}).dropna()
    r["w"] = r["r"] - r.groupby(["mm", "t"])["r"].transform("mean")
    return {str(k): float(v) for k, v in r.groupby("mm")["w"].std().items()}


def run_ablation(d: pd.DataFrame, results: dict[str, NestedResult], final: Final,
                 names: Sequence[str], *, seed: int, cache: dict[Any, Any],
                 log: Callable[[str], None], t0: float) -> list[dict[str, Any]]:
    """MAE per protocol and dataset with each feature family dropped (the final specs
    fixed: not nested), and its change against all features."""
    rows: list[dict[str, Any]] = []
    fams = feature_families(names)
    for p in ABLATION_PROTOCOLS:
        if p not in results:
            continue
        spec, label = final.for_basis(results[p].basis)
        for fam, cols in [("none", [])] + list(fams.items()):
            r = nested_cv(d, p, seed=seed, fixed=spec, drop_columns=cols, feature_cache=cache)
            for rec in protocol_report(d, r, seed=seed):
                rows.append({"protocol": p, "dropped": fam, "model": label,
                             "dataset": rec["dataset"], "mae": rec["mae"],
                             "targets": rec["targets"]})
        log(f"ablation {p} done ({time.perf_counter() - t0:.0f} s)")
    base = {(a["protocol"], a["dataset"]): a["mae"] for a in rows if a["dropped"] == "none"}
    for a in rows:
        a["delta_vs_all"] = a["mae"] - base[(a["protocol"], a["dataset"])]
    return rows


def selection_card(final: Final, settings: SelectionSettings,
                   families: Sequence[str]) -> dict[str, Any]:
    """The card's fields on how the model was chosen, from the settings it was chosen with."""
    rules = settings.rules
    return {
        "selected_model": final.unseen_label,
        "seen_target_model": final.seen_label,
        "selected_per_design": {
            "unseen-target": {m: sp.name for m, sp in final.unseen_spec.items()},
            "measured-target": {m: sp.name for m, sp in final.seen_spec.items()}},
        "selection": ("nested CV, per (model, method): the learner and its parameters are "
                      "chosen by an inner CV on the outer training rows only -- "
                      + ("leave one target out" if settings.inner_logo_max
                         else "4 target-grouped folds")
                      + " for the unseen-target model, 4 configuration-grouped folds for the "
                      "measured-target model; the outer folds report. Rule: "
                      + "; ".join(f"{b} model: {RULE_TEXT[r]}" for b, r in rules.items())),
        "selection_rule": dict(rules),
        "within_stage": bool(settings.within_stage),
        "inner_cv_all_rows": {"unseen-target": final.unseen_inner,
                              "measured-target": final.seen_inner, "rule": dict(rules)},
        "inner_cv_choice": {"unseen-target": final.unseen_info,
                            "measured-target": final.seen_info},
        "candidates": list(families),
        "baselines": list(BASELINES),
    }


def training_data_card(frame: pd.DataFrame, d: pd.DataFrame, dropped: int,
                       sources: dict[str, Any] | None) -> dict[str, Any]:
    """The card's account of the rows the model was fitted on."""
    return {"fingerprint_sha256": dataset.fingerprint(frame),
            "rows": int(len(frame)), "rows_after_dedup": int(len(d)),
            "duplicates_dropped": int(dropped),
            "by_origin": {str(k): int(v) for k, v in d["origin"].value_counts().items()},
            "targets": sorted(d["target"].unique().tolist()),
            "configs": int(d["config_id"].nunique()),
            **(sources or {})}


def profiles_card(settings: SelectionSettings) -> dict[str, Any]:
    """The profile protocols behind the fit's features (predictor.features.profile_protocols)."""
    return {"protocols": profile_protocols(settings.profiles_dir),
            "directory": "models directory's profiles/" if settings.profiles_dir is None
            else Path(settings.profiles_dir).name}


def intervals_card(calib: dict[str, Any], alpha: float) -> dict[str, Any]:
    return {"alpha": alpha, "unit": "target language (target-weighted conformal)",
            "min_targets_per_group": intervals.MIN_TARGETS,
            "out_of_support_widen": intervals.OUT_OF_SUPPORT_WIDEN,
            **{b: c for b, c in calib.items()},
            "coverage": {b: intervals.coverage_summary(c) for b, c in calib.items()}}


def fit_predictor(frame: pd.DataFrame, out_dir: str | Path, *,
                  candidates: Sequence[str] | None = None,
                  protocols: Sequence[str] = PROTOCOLS, alpha: float = 0.1, seed: int = 0,
                  ablation: bool = True, sources: dict[str, Any] | None = None,
                  log: Callable[[str], None] | None = None,
                  settings: SelectionSettings = DEFAULT_SETTINGS) -> dict[str, Any]:
    """Nested CV under every protocol, intervals, ranking, ablation, final fit, save; the
    search runs under ``settings`` and the card records them."""
    t0 = time.perf_counter()
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    families = [c for c in (candidates or LEARNED) if c in LEARNED] or list(LEARNED)
    d, dropped = prepare(frame)
    log(f"{len(frame)} rows, {dropped} exact duplicates dropped -> {len(d)}")
    protocols = list(dict.fromkeys([SELECTION_PROTOCOL, "unseen_config", *protocols]))
    cache: dict[Any, Any] = {}
    results, report = run_protocols(d, protocols, families=families, seed=seed,
                                    settings=settings, cache=cache, log=log)
    final = fit_final(d, families=families, seed=seed, settings=settings, cache=cache)
    tf, X = cache[("all", seed)]
    names = list(tf.get_feature_names_out())
    cv = cv_summary(d, results, final)
    calib = calibrate(d, results, alpha, log)
    within_sd = within_target_sd(d, results)
    ranking = []
    if SELECTION_PROTOCOL in results:
        ranking = ranking_report(d, results[SELECTION_PROTOCOL].oof["model"],
                                 pd.DataFrame(X, columns=names), seed=seed)
        log(format_ranking(ranking))
    ablation_rows = run_ablation(d, results, final, names, seed=seed, cache=cache, log=log,
                                 t0=t0) if ablation else []
    card = {
        "created_unix": int(time.time()),
        "task": "xnli",
        "score_scale": "0-100 (the model's metric: accuracy for SumEval models, macro-F1 own)",
        **selection_card(final, settings, families),
        "training_data": training_data_card(frame, d, dropped, sources),
        "profiles": profiles_card(settings),
        "models": dataset.model_catalogue(d),
        "support": support_info(d, X[:, names.index("has_profile")]
                                if "has_profile" in names else None),
        "features": [{"name": n, "description": describe(n)} for n in names],
        "feature_docs": FEATURES,
        "feature_families": feature_families(names),
        "cv": cv,
        "cv_by_dataset": report,
        "intervals": intervals_card(calib, alpha),
        "ranking": ranking,
        "within_target_residual_sd": within_sd,
        "ablation": ablation_rows,
        "fit_seconds": round(time.perf_counter() - t0, 1),
    }
    bundle = {"features": tf, "unseen": {m: v.to_state() for m, v in final.unseen.items()},
              "seen": {m: v.to_state() for m, v in final.seen.items()}}
    persist.save(bundle, out_dir, card)
    return persist.read_card(out_dir)
