"""The meta-analysis as files: ``report.md``, ``summary.json`` and the PNG figures.

It answers the research question — does adding supervised languages k help zero-shot
transfer to low-resource targets? — with the estimators of this package on the measured
tables (never pooling models, pools, regimes or designs) and, for comparison, on the
published SumEval 2022 XLM-R / T-ULRv6 results. ``summary.json`` holds every number;
:func:`predictor.metaanalysis.summary.headline` picks the headline that the README, the
app's Home and Scaling pages and this report all show.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from measure.designs import OBJECTIVES
from measure.knowledge.coverage import CC100_LOW_GIB, CLASS_LABELS
from measure.knowledge.nli import LABELS
from predictor.dataset import read_measurements, tidy_own
from predictor.features import TransferFeatures
from predictor.formatting import interval, number, signed, spec_label
from predictor.metaanalysis.answer import answer_text
from predictor.metaanalysis.estimates import SATURATION_RULE
from predictor.metaanalysis.figures import scaling_figure
from predictor.metaanalysis.items import (ITEM_REPS, collect_points, item_bootstrap, item_sds,
                                          load_items, read_item_sds, widen_with_sds,
                                          write_item_sds)
from predictor.metaanalysis.prepare import (CENTRED_SUFFIX, CLASS_RULE, LOW_RESOURCE_XNLI,
                                            load_tables)
from predictor.metaanalysis.published import correlation_table, published_estimates
from predictor.metaanalysis.report_designs import (add_one_split_section,
                                                   collapse_adjusted_section, dilution_section,
                                                   few_shot_section, methods_section,
                                                   null_worlds_section)
from predictor.metaanalysis.summary import analyse, headline, headline_markdown, to_measure

SUMMARY_VERSION = 3

#: why the intervals are what they are, and what would make them complete
INTERVALS = (
    "Every CI resamples target languages and source sets jointly (two-way cluster bootstrap). "
    "The targets of a class are not independent samples of test items: XNLI test is "
    "parallel, so every XNLI target is scored on translations of the same 2,001 capped "
    "items, and the AmericasNLI test sets translate the same Spanish XNLI pairs. Resampling "
    "targets therefore treats item noise shared by translations as independent, and the "
    "intervals are optimistic about item sampling. Resampling items jointly across targets "
    "needs per-item predictions, which the tables behind this report were measured without; "
    "a store measured now keeps them (`xlt-measure export --items DIR`), and `xlt-predict "
    "report --items DIR` then widens every interval for item sampling.")


def _table_names(dirs: Sequence[str]) -> list[str]:
    """Item directories named as their tables (``.../items-design-dilution`` ->
    ``design-dilution``)."""
    return [Path(d).name.removeprefix("items-") for d in dirs]


def intervals_text(s: dict) -> str:
    """The report's *Intervals* paragraph: with an item bootstrap, what it resampled."""
    ib = s.get("item_bootstrap")
    if not ib:
        return INTERVALS
    borrowed = ib.get("borrowed_from")
    where = "" if not borrowed else (
        " The item SDs are borrowed: these tables were measured before item predictions were "
        "stored, so each estimate's SD comes from the same analysis run on a re-measure of "
        f"the same designs (`{borrowed['file']}`: {len(borrowed['dirs'])} of its "
        f"{len(borrowed['tables'])} tables re-measured with item predictions, "
        f"{', '.join(_table_names(borrowed['dirs']))}; the rows of the others keep their "
        "scores in every replicate, so an estimate that rests on them alone keeps its "
        "interval; estimates are matched by design, class, regime, k and the like). A "
        "re-measured cell differs from the shipped one by the int8 encoder's batch noise "
        "(docs/results.md), so these are the SDs of the same designs on near-identical "
        "scores, not of these exact scores.")
    return ("Every CI resamples target languages and source sets jointly (two-way cluster "
            f"bootstrap) and is widened for item sampling: {ib['replicates']} item replicates "
            f"reweight the {ib['source_items']:,} source items (one Poisson(1) weight per "
            "item, shared by every language and cell that scores a translation of it: XNLI "
            "test pair ids, and each AmericasNLI test row mapped to the XNLI test pair it "
            "translates), every row's confusion matrix and scores are recomputed, and every "
            f"estimate is recomputed on each replicate; {ib['rule']}. "
            f"{'In the re-measure, ' if borrowed else ''}"
            f"{ib['rows_with_items']:,} of {ib['rows']:,} rows carry item predictions "
            f"(the others keep their scores in every replicate); "
            f"{ib['intervals_widened']:,}"
            f"{' of ' + format(ib['intervals'], ',') if borrowed else ''} intervals widened."
            f"{where}")

CAVEATS = [
    "One frozen encoder (multilingual-e5-small, int8) with a logistic-regression probe and "
    "2,490 training pairs; fine-tuned large models (SumEval) behave differently.",
    f"xnli-low is only {len(LOW_RESOURCE_XNLI)} targets ({', '.join(LOW_RESOURCE_XNLI)}): its "
    "target-level uncertainty is large and the mixed model drops the random slope for it.",
    "AmericasNLI scores sit near chance (kappa near 0); slopes there are changes in label "
    "bias as much as in transfer.",
    "Random k-sets confound k with the chance of including a strong single source, and "
    "under a fixed total with the best member's smaller share (dilution); the dilution, "
    "add-one and few-shot designs separate the three where their tables exist.",
    "The per-language regime on XNLI validation is k translations of the same 2,490 pairs "
    "(the pool is parallel), not k times the data.",
    "Targets share translated test items, so intervals over targets are optimistic (see "
    "Method).",
    "The test sets are the evaluation targets for every design (no separate development "
    "targets), so a greedy 'best' set is an optimistic upper bound.",
]


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return None if not math.isfinite(float(obj)) else round(float(obj), 6)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def _correlations(frame: pd.DataFrame) -> dict[str, list[dict]]:
    """Feature–score correlations on zero-shot rows, per data origin (raw features)."""
    out = {}
    for origin, g in frame[frame["zero_shot"]].groupby("origin"):
        raw = TransferFeatures().raw_features(g)
        cols = [c for c in raw.columns if not c.startswith("__") and not c.endswith("_unknown")
                and not c.startswith("target_absent")]
        t = correlation_table(raw[cols], g["score"])
        out[str(origin)] = t.assign(pearson_ci=t["pearson_ci"].map(list),
                                    spearman_ci=t["spearman_ci"].map(list)).to_dict("records")
    return out


def _correlation_frame(frame: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its own rows taken from the plain tables only: a table of target shots
    or of the centred probe is another method, and feature correlations mix nothing.

    The own rows are rebuilt only when such a table was given (the frame holds no design)."""
    if rows.empty or "table" not in rows:
        return frame
    odd = rows[(rows["n_shots"] > 0) | rows["method"].str.endswith(CENTRED_SUFFIX)]
    if odd.empty:
        return frame
    plain = [t for t in rows["table"].unique() if t not in set(odd["table"])]
    own = [tidy_own(read_measurements(t), source=t) for t in plain]
    return pd.concat([frame[frame["origin"] != "own"], *own], ignore_index=True)


def _item_bootstrap(rows: pd.DataFrame, res: dict[str, Any], items: Sequence[str | Path],
                    item_reps: int, tables: Sequence[str], log,
                    sds_out: str | Path | None = None) -> dict[str, Any]:
    """Widen ``res``'s intervals in place for item sampling; what was resampled. With
    ``sds_out``, the SDs are also saved there (:func:`write_item_sds`) for ``--item-sds``."""
    greedy = _greedy_path(tables)
    replicates, info = item_bootstrap(
        rows, load_items(items),
        lambda r: analyse(r, reps=0, mixed=False, greedy_path=greedy), reps=item_reps, log=log)
    if not info["rows_with_items"]:
        raise ValueError(f"no row of --measurements has per-item predictions in --items "
                         f"{' '.join(map(str, items))}: export them from the stores these "
                         "tables came from (xlt-measure export --store S --out T --items DIR)")
    sds = item_sds(replicates)
    info["intervals_widened"] = widen_with_sds(res, sds)
    info["dirs"] = [str(d) for d in items]
    if sds_out is not None:
        write_item_sds(sds_out, sds, {**info, "tables": list(tables)})
    return info


def item_options_problem(items: Sequence[Any], item_sds: Any, item_sds_out: Any) -> str | None:
    """What is wrong with the item options together (None: nothing): the one rule the
    command line checks before any work and :func:`build_report` enforces for callers."""
    if items and item_sds:
        return "--items and --item-sds both widen the intervals: give one"
    if item_sds_out and not items:
        return "--item-sds-out saves the SDs that --items measures: pass --items too"
    return None


def _borrowed_item_sds(res: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """Widen ``res``'s intervals in place by the SDs of an item-SD file (measured on other
    tables of the same designs); what they were measured on, as the report states it."""
    sds, measured = read_item_sds(path)
    widened = widen_with_sds(res, sds)
    if not widened:
        raise ValueError(f"--item-sds {path}: none of its SDs matches an estimate of these "
                         "tables (it was measured on other designs); write one from "
                         "re-measured tables of the same designs")
    keep = ("replicates", "seed", "rows", "rows_with_items", "source_items", "rule")
    estimates: dict[tuple, float] = {}
    collect_points(res, (), estimates)
    return {**{k: measured[k] for k in keep if k in measured}, "intervals_widened": widened,
            "intervals": len(estimates),
            "borrowed_from": {"file": str(path), "tables": measured.get("tables", []),
                              "dirs": measured.get("dirs", [])}}


def _greedy_path(tables: Sequence[str]) -> pd.DataFrame | None:
    """The greedy search's path (``xlt-measure greedy --path-out``) beside a greedy table."""
    path = None
    for t in tables:
        p = Path(t)
        if p.stem.endswith("-greedy") and p.with_name(p.stem + "-path.parquet").is_file():
            path = pd.read_parquet(p.with_name(p.stem + "-path.parquet"))
    return path


def build_report(frame: pd.DataFrame, out_dir: str | Path, *, card: dict | None = None,
                 command: str = "xlt-predict report",
                 measurements: Sequence[str | Path] = (), reps: int = 400,
                 items: Sequence[str | Path] = (), item_reps: int = ITEM_REPS,
                 item_sds_out: str | Path | None = None, item_sds: str | Path | None = None,
                 log=None) -> dict[str, Any]:
    """Write report.md, summary.json and the figures; return the summary.

    ``frame`` is the predictor's tidy table (own rows + SumEval) for the published estimates
    and the correlations; ``measurements`` are the raw tables (their confusion matrices,
    pools and designs are needed for the measured estimates); ``items``: directories of
    per-item predictions (``xlt-measure export --items``) that widen every interval of the
    measured estimates for item sampling (:mod:`predictor.metaanalysis.items`);
    ``item_sds_out``: also save those SDs to this file; ``item_sds``: instead of ``items``,
    widen by the SDs of such a file, measured on a re-measure of the same designs (for
    tables measured before item predictions were stored).
    """
    problem = item_options_problem(items, item_sds, item_sds_out)
    if problem:
        raise ValueError(problem)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = [str(p) for p in measurements]
    rows = load_tables(tables) if tables else pd.DataFrame()
    res = analyse(rows, reps=reps, log=log, greedy_path=_greedy_path(tables)) if len(rows) else {
        "scaling": [], "per_target": [], "collapse": [], "member_gaps": [], "designs": [],
        "methods": [], "duplicates_dropped": 0, "to_measure": to_measure(pd.DataFrame())}
    if items and len(rows):
        res["item_bootstrap"] = _item_bootstrap(rows, res, items, item_reps, tables, log,
                                                sds_out=item_sds_out)
    elif item_sds and len(rows):
        res["item_bootstrap"] = _borrowed_item_sds(res, item_sds)
    published = published_estimates(frame, reps=reps)
    correlations = _correlations(_correlation_frame(frame, rows))
    summary: dict[str, Any] = {
        "version": SUMMARY_VERSION, "command": command, "tables": tables,
        "classes": {"rule": CLASS_RULE, "cc100_low_gib": CC100_LOW_GIB,
                    "labels": CLASS_LABELS, "xnli_low": list(LOW_RESOURCE_XNLI)},
        "bootstrap_reps": reps, **res, "published": published}
    summary["headline"] = {"macro_f1": headline(summary, "macro_f1"),
                           "kappa": headline(summary, "kappa")}
    figures = []
    seen = {(e["model"], e["method"], e["pool"], e["regime"]) for e in summary["scaling"]}
    for model, method, pool, regime in sorted(seen):
        name = f"scaling_{model}_{method}_{pool.replace('/', '-')}_{regime}.png"
        if scaling_figure(summary, model, method, pool, regime, out_dir / name):
            figures.append(name)
    summary["figures"] = figures
    summary["correlations"] = correlations
    summary = _json_safe(summary)
    (out_dir / "report.md").write_text(render_markdown(summary, card), encoding="utf-8")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    for old in out_dir.glob("scaling_*.png"):
        if old.name not in figures:
            old.unlink()
    return summary


# -- report.md, one function per section --------------------------------------------------------
def _opening(s: dict) -> list[str]:
    lines = ["# Does adding supervised languages help low-resource targets?\n"]
    lines += [p + "\n" for p in answer_text(s)]
    lines.append("**Caveats.**\n")
    lines += [f"* {c}" for c in CAVEATS]
    backends = s.get("backends", {})
    if len({b for bs in backends.values() for b in bs}) > 1:
        lines.append("* The tables were measured with different int8 backends ("
                     + "; ".join(f"{d}: {', '.join(bs)}" for d, bs in sorted(backends.items()))
                     + "): comparisons are made within a table, except greedy vs random, whose "
                     "table shows the offset between the two tables' identical single-source "
                     "cells.")
    return lines + [""]


def _headline(s: dict) -> list[str]:
    return ["## Headline (the numbers README, Home and Scaling show)\n",
            headline_markdown(s, "macro_f1") or "_no measured k-grid_", "",
            "The same with Cohen's kappa (×100, chance-corrected):\n",
            headline_markdown(s, "kappa") or "_no confusion matrices_", "",
            f"Generated by `{s['command']}` from "
            f"{', '.join('`' + t + '`' for t in s['tables']) or 'published results only'}; "
            f"{s['duplicates_dropped']} duplicate rows dropped (same configuration, target and "
            f"score within one model/method/pool/regime/design); designs present: "
            f"{', '.join(s['designs']) or 'none'}.\n"]


def _published_table(pub: list[dict]) -> list[str]:
    lines = ["SumEval 2022 XNLI results (XLM-R large, T-ULRv6 large, fine-tuned; "
             "configurations with k = 5–14 and very different sizes per language; score = "
             "accuracy). Within-target slope per doubling of k controlling log10 total "
             "examples, two-way bootstrap over targets and configurations; Spearman ρ between "
             "k and each configuration's mean zero-shot accuracy:\n",
             "| model | targets | slope / doubling | 95% CI | ρ(k, config mean) | p | configs | k |",
             "|---|---|---|---|---|---|---|---|"]
    for e in pub:
        lines.append(f"| {e['model']} | {e['target_class']} ({e['n_targets']}) | "
                     f"**{signed(e['slope_within'])}** | "
                     f"{interval(e['boot_ci_low'], e['boot_ci_high'])} | "
                     f"{signed(e['spearman_k_config_mean'], 2)} | {number(e['spearman_p'], 3)} | "
                     f"{e['n_configs_all']} | {e['k_min']}–{e['k_max']} |")
    lines.append("")
    rhos = ", ".join(f"{m} {signed(r, 2)}" for m, r in
                     sorted({(e["model"], e["spearman_k_config_mean"]) for e in pub}))
    small = all(abs(e["spearman_k_config_mean"]) < 0.2 for e in pub)
    flat = all(e["boot_ci_low"] is not None and e["boot_ci_low"] <= 0 <= e["boot_ci_high"]
               for e in pub)
    lines.append(f"In the published configurations ρ(k, accuracy) is {rhos}"
                 + (": the number of fine-tuning languages is nearly uncorrelated with accuracy"
                    if small else "")
                 + (", and with the total size held fixed every within-target slope's CI "
                    "includes 0" if flat else
                    "; with the total size held fixed, see the slopes above")
                 + (". For fine-tuned large models, once 5 or more languages are in, how many "
                    "there are does not measurably matter.\n" if flat and small else ".\n"))
    return lines


def _published_and_literature(s: dict) -> list[str]:
    lines = ["## Compared with the published results and the literature\n"]
    if s.get("published"):
        lines += _published_table(s["published"])
    sat = sorted({r["saturation_k"] for r in headline(s) if r["regime"] == "fixed_total"
                  and r["saturation_k"] is not None})
    lines.append("**Literature.** Lim et al. (2024, *Analysis of Multi-Source Language "
                 "Training in Cross-Lingual Transfer*, ACL), with the total training data held "
                 "fixed as in the fixed-total regime here, report that the benefit of more "
                 "source languages peaks around three and plateaus or declines beyond; here "
                 + (f"a saturation at k = {' / '.join(map(str, sat))} is shown (per class, "
                    "headline table). " if sat else
                    "no saturation is shown at a fixed total: no interval separates an early "
                    "gain per doubling from a later one. ")
                 + "Muller et al. (2022, mT5) found few-shot gains log-linear in the number of "
                 "target examples, the model the few-shot section fits. SumEval has no target "
                 "absent from pretraining, so the AmericasNLI class has no published "
                 "counterpart.\n")
    return lines


def _method(s: dict) -> list[str]:
    return ["## Target classes and method\n",
            f"**Classes (defined from outside the results).** {s['classes']['rule']}.\n",
            "**Method.** Every estimate is for one (model, method, training pool, budget "
            "regime, design); nothing is pooled across them (the centred probe is its own "
            "method, `probe-centred`). Zero-shot rows only. Seeds are averaged into (source "
            "set, target) cells. *Mixed*: statsmodels MixedLM `y ~ log2 k` with variance "
            "components for target intercepts, target × log2 k random slopes (≥ 3 targets) "
            "and source-set intercepts over one all-rows group (REML), Wald 95% CI. "
            f"*Bootstrap*: {s['bootstrap_reps']} two-way cluster-bootstrap replicates "
            "resampling targets and source sets independently, of the within-target "
            "least-squares slope. *Given the best source*: the same slope with \"the set "
            "holds the target's best single source\" (from the singles of the same table) "
            f"as a covariate. *Saturation*: {SATURATION_RULE}. Kappa = Cohen's kappa × 100 "
            "from the confusion matrix; *above null* = macro-F1 minus the same-label-share "
            "null's (see Collapse).\n",
            f"**Intervals.** {intervals_text(s)}\n"]


def _slowdown(e: dict) -> str:
    return "; ".join(f"k = {d['k']}: {signed(d['before'])} → {signed(d['after'])}, drop "
                     f"{signed(d['drop'])} {interval(*d['drop_ci'])}"
                     for d in e.get("slowdown", [])) or "–"


def _scaling(s: dict) -> list[str]:
    lines = ["## All scaling estimates\n",
             "*Given best member*: the within-target slope with the set's best single "
             "member's score as a covariate; *given best source*: with \"the set holds the "
             "target's best single source\" as a covariate, and what holding it is worth "
             "(bootstrap CIs). *Before → after*: gain per doubling before and after a knot "
             "(two-piece fit) and the drop's CI; *segments*: the piecewise fit, descriptive.\n",
             "| model | pool | regime | metric | targets | mixed slope | 95% CI | bootstrap 95% "
             "CI | given best member | given best source (holding it) | before → after | "
             "segments: gain per doubling [CI] | saturation k | rows | cells | sets |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in s["scaling"]:
        seg = "; ".join(f"{g['k_from']}–{g['k_to']}: {signed(g['gain_per_doubling'])} "
                        f"{interval(g['ci_low'], g['ci_high'])}" for g in e["segments"]) or "–"
        b = e.get("slope_given_best_member")
        gb = f"{signed(b['slope'])} {interval(b['ci_low'], b['ci_high'])}" if b else "–"
        c = e.get("slope_given_contains_best")
        cb = (f"{signed(c['slope'])} {interval(c['ci_low'], c['ci_high'])} "
              f"({signed(c['contains_best'])} {interval(*c['contains_best_ci'])})" if c else "–")
        lines.append(
            f"| {e['model']} {e['method']} | {e['pool']} | {e['regime']} | {e['metric']} | "
            f"{e['target_class']} ({e['n_targets']}) | **{signed(e.get('slope'))}** | "
            f"{interval(e.get('ci_low'), e.get('ci_high'))} | "
            f"{interval(e['boot_ci_low'], e['boot_ci_high'])} | {gb} | {cb} | {_slowdown(e)} | "
            f"{seg} | {e['saturation_k'] if e['saturation_k'] is not None else 'not shown'} | "
            f"{e['n_rows']} | {e['n_cells']} | {e['n_sets']} |")
    lines.append("")
    return lines + [f"![scaling]({f})\n" for f in s.get("figures", [])]


def _member_gaps(s: dict) -> list[str]:
    if not s.get("member_gaps"):
        return []
    lines = ["## Sets against their members trained on the whole budget\n",
             "Each set's score minus its best and its mean single member's score (singles of "
             "the same table, pool and regime; same seed where measured). Mean over rows, "
             "two-way bootstrap CI. Under a fixed total a member of a k-set had 1/k of its "
             "single's data, so these gaps include dilution; the dilution control below "
             "compares at equal data.\n",
             "| design | model | pool | regime | metric | targets | set − best member | 95% CI | "
             "set − mean member | 95% CI | share beating best | rows |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for g in s["member_gaps"]:
        lines.append(
            f"| {g['design']} | {g['model']} | {g['pool']} | {g['regime']} | {g['metric']} | "
            f"{g['target_class']} ({g['n_targets']}) | **{signed(g['gap_best'])}** | "
            f"{interval(*g['gap_best_ci'])} | {signed(g['gap_mean'])} | "
            f"{interval(*g['gap_mean_ci'])} | {g['share_beating_best']:.2f} | {g['n_rows']} |")
    return lines + [""]


def _add_one(s: dict) -> list[str]:
    if not s.get("add_one"):
        return []
    lines = ["## Add one language (paired gain, same budget and seed)\n",
             "| model | pool | regime | metric | targets | base size | mean gain | 95% CI | "
             "share > 0 | pairs | bases |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for a in s["add_one"]:
        lines.append(f"| {a['model']} | {a['pool']} | {a['regime']} | {a['metric']} | "
                     f"{a['target_class']} ({a['n_targets']}) | "
                     f"{a['base_size'] if a['base_size'] is not None else 'all'} | "
                     f"**{signed(a['gain'])}** | {interval(*a['ci'])} | "
                     f"{a['share_positive']:.2f} | {a['n_pairs']} | {a['n_bases']} |")
    return lines + [""]


def _shapley(s: dict) -> list[str]:
    if not s.get("shapley"):
        return []
    lines = ["## Shapley values on all subsets of 5-language sets\n",
             "Exact Shapley value φ of each language (v(∅) = uniform guess: 33.3 macro-F1, "
             "0 kappa), mean over the class's targets with a bootstrap CI over targets. "
             "*Interaction* = v(full) − v(∅) − Σ (v(single) − v(∅)): the non-additive part "
             "(negative = redundancy).\n",
             "*Additivity* = (v(full) − v(∅)) / Σ (v(single) − v(∅)), median over targets "
             "(1 = the members' gains add up). It is about 1/5 whenever five members are "
             "interchangeable, and where v(full) and the singles lie below chance it divides "
             "one negative number by another: a redundancy ratio, not a synergy measure.\n",
             "| model | pool | regime | metric | set | targets | φ per language [95% CI] | "
             "interaction | additivity | full − best single |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in s["shapley"]:
        ph = ", ".join(f"{x['language']} {signed(x['phi'])} {interval(*x['ci'])}"
                       for x in r["languages"])
        lines.append(
            f"| {r['model']} | {r['pool']} | {r['regime']} | {r['metric']} | {r['full_set']} "
            f"| {r['target_class']} ({r['n_targets']}) | {ph} | {signed(r['interaction'])} "
            f"{interval(*r['interaction_ci'])} | {number(r.get('additivity'), 2)} | "
            f"{signed(r['full_minus_best_single'])} "
            f"{interval(*r['full_minus_best_single_ci'])} |")
    return lines + [""]


def _best_vs_random(s: dict) -> list[str]:
    if not s.get("best_vs_random"):
        return []
    lines = ["## Choosing well vs adding more: greedy best set against random sets\n",
             "Greedy forward selection (`xlt-measure greedy`) maximises an objective measured "
             "on the test targets themselves — an oracle upper bound of what choosing the "
             "sources well is worth. Objectives: "
             + "; ".join(f"`{k}` = {o.description}" for k, o in OBJECTIVES.items())
             + ". Random sets: the grid's sampled sets at the same k, pool and regime (seeds "
             "averaged). *Singles offset*: the mean difference between the greedy table's and "
             "the grid's single-source scores on the same objective — the two tables may use "
             "different int8 backends, so differences smaller than this are not meaningful.\n",
             "| model | pool | regime | objective | k | greedy set | its score | random median | "
             "random 10–90% | share of random sets beaten | random sets | singles offset |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in s["best_vs_random"]:
        lines.append(
            f"| {r['model']} | {r['pool']} | {r['regime']} | {r['objective']} | {r['k']} | "
            f"{r['best_set']} | {number(r['best'], 2)} | "
            f"{number(r.get('random_median'), 2)} | {number(r.get('random_p10'), 1)}–"
            f"{number(r.get('random_p90'), 1)} | "
            f"{number(r.get('share_random_beaten'), 2)} | {r.get('n_random', 0)} | "
            f"{signed(r.get('singles_offset_vs_grid'))} |")
    return lines + [""]


def _collapse(s: dict) -> list[str]:
    if not s.get("collapse"):
        return []
    lines = ["## Class collapse: scores and predicted-label shares per target (grid)\n",
             "Mean over zero-shot rows. Shares are the fractions of test pairs predicted as "
             "each label (the test sets are balanced: 1/3 each).\n",
             "| model | pool | regime | target | class | macro-F1 | null | above null | kappa "
             "| accuracy | pred. entailment | pred. neutral | pred. contradiction | rows with "
             "F1 < 33.3 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in s["collapse"]:
        lines.append(f"| {r['model']} | {r['pool']} | {r['regime']} | {r['target']} | "
                     f"{r['target_class']} | {r['macro_f1']:.1f} | {number(r.get('null_f1'), 1)}"
                     f" | {number(r.get('f1_above_null'), 1)} | {number(r['kappa'], 1)} | "
                     f"{r['accuracy']:.1f} | "
                     + " | ".join(f"{number(r['share_' + lab], 2)}" for lab in LABELS)
                     + f" | {r['share_below_chance_f1']:.2f} |")
    return lines + [""]


def _per_target(s: dict) -> list[str]:
    if not s.get("per_target"):
        return []
    lines = ["## Per-target slopes (macro-F1 per doubling; bootstrap over source sets)\n",
             "| model | pool | regime | metric | target | class | slope | 95% CI | sets |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in s["per_target"]:
        lines.append(f"| {r['model']} | {r['pool']} | {r['regime']} | {r['metric']} | "
                     f"{r['target']} | {r['target_class']} | {signed(r['slope'])} | "
                     f"{interval(r['ci_low'], r['ci_high'])} | {r['n_sets']} |")
    return lines + [""]


def _correlation_tables(s: dict) -> list[str]:
    lines = ["## Correlation of each feature with zero-shot transfer\n",
             "Pearson and Spearman correlation over zero-shot rows with 95% CIs (Fisher z; "
             "Bonett–Wright variance for Spearman). Rows are not independent, so treat these "
             "CIs as optimistic; the grouped estimates above are the ones to rely on.\n"]
    for origin, recs in s.get("correlations", {}).items():
        lines += [f"### origin: {origin}\n", "| feature | n | Pearson r | 95% CI | Spearman ρ | "
                  "95% CI |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['feature']} | {r['n']} | {signed(r['pearson'], 3)} | "
                  f"{interval(*r['pearson_ci'], 3)} | {signed(r['spearman'], 3)} | "
                  f"{interval(*r['spearman_ci'], 3)} |" for r in recs]
        lines.append("")
    return lines


def _predictor(card: dict) -> list[str]:
    """The fitted predictor as its card describes it (never a name typed here)."""
    lines = ["## The predictor\n"]
    per = card.get("selected_per_design") or {}
    if per:
        lines.append("Selected per protocol and design (from the model card):\n")
        for protocol, specs in per.items():
            lines.append(f"* {protocol}: " + "; ".join(
                f"{d.replace('|', ' · ')}: {spec_label(str(spec))}" for d, spec in specs.items()))
        lines.append("")
    else:
        lines.append(f"Selected model: {spec_label(str(card.get('selected_model')))}.\n")
    if card.get("selection"):
        lines.append(f"How it was chosen: {card['selection']}.\n")
    return lines + ["Its cross-validation tables are in the model card (`xlt-predict "
                    "evaluate`).\n"]


def render_markdown(s: dict, card: dict | None = None) -> str:
    """report.md from the summary (and the predictor's card, when there is one)."""
    lines: list[str] = []
    for section in (_opening, _headline, _published_and_literature, _method, _scaling,
                    null_worlds_section, _member_gaps, dilution_section, _add_one,
                    add_one_split_section, few_shot_section, methods_section,
                    collapse_adjusted_section, _shapley, _best_vs_random, _collapse,
                    _per_target, _correlation_tables):
        lines += section(s)
    if card is not None:
        lines += _predictor(card)
    return "\n".join(lines)
