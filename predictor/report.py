"""``xlt-predict report``: the meta-analysis as Markdown + PNG figures + ``summary.json``.

It answers the research question — does adding supervised languages k help zero-shot
transfer to low-resource targets? — with the estimators of ``predictor.analysis`` on the
measured tables (never pooling models, pools, regimes or designs) and, for comparison, on
the published SumEval 2022 XLM-R / T-ULRv6 results. ``summary.json`` holds every number;
``predictor.analysis.headline`` picks the headline that the README, the app's Home and
Scaling pages and this report all show.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from measure.knowledge.nli import CHANCE
from measure.knowledge.coverage import CC100_LOW_GIB, CLASS_LABELS
from predictor.analysis import (CLASS_RULE, CLASSES,
                                GREEDY_OBJECTIVES, LABELS, LOW_RESOURCE_XNLI, analyse,
                                correlation_table, headline, headline_markdown, load_tables,
                                published_estimates)

SUMMARY_VERSION = 2
MODEL_LABELS = {"me5-small": "multilingual-e5-small",
                "xlmr": "XLM-R large fine-tuned (SumEval 2022)",
                "tulrv6": "T-ULRv6 large fine-tuned (SumEval 2022)"}
REGIME_LABELS = {"per_language": "per-language budget (total grows with k)",
                 "fixed_total": "fixed total budget (split over k languages)",
                 "published": "published configurations (sizes vary; total examples controlled)"}
CLASS_COLOURS = {"absent": "#7570b3", "xnli-low": "#d95f02", "high": "#1b9e77"}


def _fmt(x: Any, nd: int = 2, sign: bool = True) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:+.{nd}f}" if sign else f"{x:.{nd}f}"


def _ci(lo: Any, hi: Any) -> str:
    return f"[{_fmt(lo)}, {_fmt(hi)}]"


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


# -- figures --------------------------------------------------------------------------------
def scaling_figure(summary: dict, model: str, method: str, pool: str, regime: str,
                   out: Path) -> Path | None:
    """Per-class mean macro-F1 by k (targets averaged) and the piecewise fit's segments."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [e for e in summary["scaling"] if e["model"] == model and e["method"] == method
            and e["pool"] == pool and e["regime"] == regime and e["metric"] == "macro_f1"
            and e["design"] == "grid"]
    if not recs:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for e in recs:
        pk = pd.DataFrame(e["per_k_mean"])
        c = CLASS_COLOURS.get(e["target_class"], "grey")
        ax.plot(pk["k"], pk["mean"], "o-", color=c, ms=4, lw=1, alpha=0.8,
                label=f"{e['target_class']} ({e['n_targets']} targets): mixed "
                      f"{_fmt(e['slope'])} per doubling, saturation k "
                      f"{e['saturation_k'] if e['saturation_k'] is not None else '–'}")
    ax.set_xscale("log", base=2)
    ticks = sorted({int(k) for e in recs for k in pd.DataFrame(e["per_k_mean"])["k"]})
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.minorticks_off()
    ax.axhline(CHANCE, color="grey", ls=":", lw=1)
    ax.set_xlabel("number of supervised languages k (log scale)")
    ax.set_ylabel("zero-shot macro-F1 (mean over targets)")
    ax.set_title(f"{MODEL_LABELS.get(model, model)} {method}, pool {pool}\n"
                 f"{REGIME_LABELS.get(regime, regime)}", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def _correlations(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Feature–score correlations on zero-shot rows, per data origin (raw features)."""
    from predictor.features import TransferFeatures
    out = {}
    for origin, g in frame[frame["zero_shot"]].groupby("origin"):
        raw = TransferFeatures().raw_features(g)
        cols = [c for c in raw.columns if not c.startswith("__") and not c.endswith("_unknown")
                and not c.startswith("target_absent")]
        out[str(origin)] = correlation_table(raw[cols], g["score"])
    return out


# -- the plain-language answer -------------------------------------------------------------------
def _sig(lo: Any, hi: Any) -> str:
    if lo is None or hi is None:
        return "unclear"
    return "up" if lo > 0 else ("down" if hi < 0 else "flat")


def _short_answer(main: dict, summary: dict, regime: str, pool: str) -> str:
    """One plain paragraph: does k help, how far, and is it more than selection?"""
    def word(r: dict) -> str:
        lo, hi = r["boot_ci"]
        return {"up": "helps", "down": "hurts", "flat": "makes no measurable difference",
                "unclear": "is unclear"}[_sig(lo, hi)]
    bits = [f"{word(r)} {cls} targets ({_fmt(r['slope'])} macro-F1 per doubling)"
            for cls in CLASSES if (r := main.get(cls))]
    sats = sorted({r["saturation_k"] for r in main.values() if r["saturation_k"] is not None})
    text = ("**Short answer.** With randomly drawn source sets at a "
            + ("fixed total budget" if regime == "fixed_total" else "per-language budget")
            + ", adding supervised languages " + "; ".join(bits) + ".")
    if sats:
        text += (" The gain per doubling is no longer distinguishable from zero after k = "
                 + " / ".join(str(k) for k in sats) + ".")
    gb = [(cls, r["given_best_member"]) for cls in CLASSES
          if (r := main.get(cls)) and r.get("given_best_member")]
    if gb:
        text += (" But it is mostly selection: with each set's best single member as a "
                 "covariate the slope becomes " + "; ".join(
                     f"{_fmt(b['slope'])} {_ci(b['ci_low'], b['ci_high'])} for {cls}"
                     for cls, b in gb)
                 + " — more languages help because a larger random set is more likely to "
                 "contain a good source, not because languages add up.")
    ao = [(cls, r) for cls in CLASSES if (r := main.get(cls)) and r.get("add_one_ci")]
    sizes = [a["base_size"] for a in summary.get("add_one", []) if a["base_size"] is not None]
    if ao and sizes:
        text += (" Adding one language to a fixed set at the same budget (the add-one design, "
                 "paired) changes macro-F1 by "
                 + "; ".join(f"{_fmt(r['add_one_gain'])} {_ci(*r['add_one_ci'])} ({cls})"
                             for cls, r in ao) + " on average over base sizes "
                 + "–".join(str(f(sizes)) for f in (min, max)) + ".")
    return text


def answer_text(summary: dict) -> list[str]:
    """The opening paragraphs: a plain answer built from the headline numbers."""
    out: list[str] = []
    rows = headline(summary, "macro_f1")
    krows = {(r["regime"], r["target_class"]): r for r in headline(summary, "kappa")}
    collapse = pd.DataFrame(summary.get("collapse", []))
    if not rows:
        out.append("No measured table with more than one k was given, so only the published "
                   "results below answer the question.")
        return out
    pool = rows[0]["pool"]
    ft = {r["target_class"]: r for r in rows if r["regime"] == "fixed_total"}
    pl = {r["target_class"]: r for r in rows if r["regime"] == "per_language"}
    main = ft or pl
    regime = "fixed_total" if ft else "per_language"
    parts = []
    for cls in CLASSES:
        r = main.get(cls)
        if not r:
            continue
        k = krows.get((regime, cls), {})
        parts.append(f"{CLASS_LABELS[cls]}: {_fmt(r['slope'])} macro-F1 per doubling "
                     f"{_ci(*r['boot_ci'])} (kappa {_fmt(k.get('slope'))} "
                     f"{_ci(*(k.get('boot_ci') or [None, None]))}), saturation k "
                     f"{r['saturation_k'] if r['saturation_k'] is not None else 'not reached'}")
    out.append(_short_answer(main, summary, regime, pool))
    budget = ("fixed total budget, so k is not confounded with data size" if ft
              else "per-language budget")
    out.append(f"**Answer, as measured** ({rows[0]['model']} {rows[0]['method']}, pool {pool}, "
               f"{budget}; "
               "95% CIs from a bootstrap over target languages and source sets): "
               + "; ".join(parts) + ".")
    # what the gain is made of
    gap_bits = []
    for cls in CLASSES:
        r = main.get(cls)
        if r and r.get("gap_best") is not None:
            gap_bits.append(f"{cls} {_fmt(r['gap_best'])} vs best member, "
                            f"{_fmt(r['gap_mean'])} vs mean member")
    if gap_bits:
        have = [main[c] for c in main if main[c].get("gap_best") is not None]
        below_best = all(r["gap_best"] < 0 for r in have)
        above_mean = all(r["gap_mean"] > 0 for r in have)
        verdict = ("Sets beat the average of their members but not the best one, so most of "
                   "what a larger random k buys is a better chance of containing a good single "
                   "source: selection rather than synergy."
                   if below_best and above_mean else
                   "Sets trail their best member." if below_best else
                   "Some sets beat their best member: there is a gain beyond selection.")
        out.append("**Sets against their own members.** A set of k ≥ 2 languages minus its "
                   "members trained alone (same pool, regime and budget, same seed), mean "
                   "macro-F1: " + "; ".join(gap_bits) + ". " + verdict)
    ao = summary.get("add_one")
    if ao:
        bits = []
        for cls in CLASSES:
            g = [a for a in ao if a["metric"] == "macro_f1" and a["target_class"] == cls
                 and a["regime"] == regime and a["pool"] == pool and a["base_size"] is not None]
            if g:
                bits.append(f"{cls}: " + ", ".join(f"|S|={a['base_size']} {_fmt(a['gain'])}"
                                                   for a in sorted(g, key=lambda a: a["base_size"])))
        if bits:
            out.append("**Adding one language to a fixed set** (paired, same budget and seed), "
                       "mean macro-F1 gain by base size: " + "; ".join(bits) + ".")
    sh = [r for r in summary.get("shapley", []) if r["metric"] == "macro_f1"
          and r["regime"] == regime and r["pool"] == pool]
    if sh:
        bits = []
        for full in sorted({r["full_set"] for r in sh}):
            rs = {r["target_class"]: r for r in sh if r["full_set"] == full}
            bits.append(f"{full}: " + ", ".join(
                f"{cls} targets led by {r['top_language']} (φ {_fmt(r['languages'][0]['phi'])}), "
                f"full set − best single {_fmt(r['full_minus_best_single'])}"
                for cls in CLASSES if (r := rs.get(cls))))
        adds = [r["additivity"] for r in sh if r.get("additivity") is not None]
        out.append("**Which languages carry the gain (exact Shapley values, all subsets of "
                   f"{len({r['full_set'] for r in sh})} five-language sets).** " + "; ".join(bits) + "."
                   + (f" In every set and target class a full set's gain over chance is "
                      f"{min(adds):.2f}–{max(adds):.2f} of the sum of its members' single gains "
                      "(1 = additive): the languages' contributions overlap instead of adding "
                      "up." if adds else ""))
    bvr = [r for r in summary.get("best_vs_random", []) if r["regime"] == regime
           and r["pool"] == pool and r.get("random_median") is not None]
    if bvr:
        bits = []
        for obj in sorted({r["objective"] for r in bvr}):
            rs = sorted((r for r in bvr if r["objective"] == obj), key=lambda r: r["k"])
            top = max(rs, key=lambda r: r["best"])
            med = [r["random_median"] for r in rs]
            bits.append(f"`{obj}`: the best greedy set is {top['best_set']} (k = {top['k']}, "
                        f"{top['best']:.1f}) against random-set medians of {min(med):.1f}–"
                        f"{max(med):.1f} at k = {rs[0]['k']}–{rs[-1]['k']}; the greedy set "
                        f"at k = {rs[-1]['k']} scores {rs[-1]['best']:.1f}")
        out.append("**Choosing well vs adding more** (greedy forward selection with the test "
                   "targets as its objective — an oracle upper bound; macro-F1). "
                   + "; ".join(bits) + ".")
    if not collapse.empty:
        c = collapse[(collapse["design"] == "grid") & (collapse["pool"] == pool)]
        c = c[c["regime"] == regime]
        ab = c[c["target_class"] == "absent"]
        if len(ab):
            out.append(
                f"**Collapse.** On the AmericasNLI targets (absent from pretraining) the probe "
                f"averages {ab['macro_f1'].mean():.1f} macro-F1 and {ab['kappa'].mean():.1f} "
                f"kappa (×100) and predicts *entailment* for {100 * ab['share_entailment'].min():.0f}–"
                f"{100 * ab['share_entailment'].max():.0f}% of pairs (mean per target); a "
                "gain in macro-F1 there is mostly a change in which label the collapsed "
                "classifier prefers, not understanding, and it is reported separately from the "
                "XNLI low-resource languages.")
    return out


CAVEATS = [
    "One frozen encoder (multilingual-e5-small, int8) with a logistic-regression probe and "
    "2,490 training pairs; fine-tuned large models (SumEval) behave differently.",
    f"xnli-low is only {len(LOW_RESOURCE_XNLI)} targets ({', '.join(LOW_RESOURCE_XNLI)}): its "
    "target-level uncertainty is large and the mixed model drops the random slope for it.",
    "AmericasNLI scores sit near chance (kappa near 0); slopes there are changes in label "
    "bias as much as in transfer.",
    "Random k-sets confound k with the chance of including a strong single source; the "
    "member-gap, add-one and Shapley designs separate the two where their tables exist.",
    "The test sets are the evaluation targets for every design (no separate development "
    "targets), so a greedy 'best' set is an optimistic upper bound.",
]


def build_report(frame: pd.DataFrame, out_dir: str | Path, *, card: dict | None = None,
                 command: str = "xlt-predict report",
                 measurements: Sequence[str | Path] = (), reps: int = 400,
                 log=None) -> dict[str, Any]:
    """Write report.md, summary.json and the figures; return the summary.

    ``frame`` is the predictor's tidy table (own rows + SumEval) for the published estimates
    and the correlations; ``measurements`` are the raw tables (their confusion matrices,
    pools and designs are needed for the measured estimates).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = [str(p) for p in measurements]
    rows = load_tables(tables) if tables else pd.DataFrame()
    greedy_path = None
    for t in tables:
        p = Path(t)
        if p.stem.endswith("-greedy") and p.with_name(p.stem + "-path.parquet").is_file():
            greedy_path = pd.read_parquet(p.with_name(p.stem + "-path.parquet"))
    res = analyse(rows, reps=reps, log=log, greedy_path=greedy_path) if len(rows) else {
        "scaling": [], "per_target": [], "collapse": [], "member_gaps": [], "designs": [],
        "duplicates_dropped": 0}
    published = published_estimates(frame, reps=reps)
    corr = _correlations(frame)
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
    summary["correlations"] = {o: t.assign(pearson_ci=t["pearson_ci"].map(list),
                                           spearman_ci=t["spearman_ci"].map(list)).to_dict("records")
                               for o, t in corr.items()}
    summary = _json_safe(summary)
    (out_dir / "report.md").write_text(render_markdown(summary, card), encoding="utf-8")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    for old in out_dir.glob("scaling_*.png"):
        if old.name not in figures:
            old.unlink()
    return summary


def render_markdown(s: dict, card: dict | None = None) -> str:
    lines: list[str] = []
    add = lines.append
    add("# Does adding supervised languages help low-resource targets?\n")
    for p in answer_text(s):
        add(p + "\n")
    add("**Caveats.**\n")
    for c in CAVEATS:
        add(f"* {c}")
    backends = s.get("backends", {})
    if len({b for bs in backends.values() for b in bs}) > 1:
        add("* The tables were measured with different int8 backends ("
            + "; ".join(f"{d}: {', '.join(bs)}" for d, bs in sorted(backends.items()))
            + "): comparisons are made within a table, except greedy vs random, whose table "
            "shows the offset between the two tables' identical single-source cells.")
    add("")
    add("## Headline (the numbers README, Home and Scaling show)\n")
    add(headline_markdown(s, "macro_f1") or "_no measured k-grid_")
    add("")
    add("The same with Cohen's kappa (×100, chance-corrected):\n")
    add(headline_markdown(s, "kappa") or "_no confusion matrices_")
    add("")
    add(f"Generated by `{s['command']}` from "
        f"{', '.join('`' + t + '`' for t in s['tables']) or 'published results only'}; "
        f"{s['duplicates_dropped']} duplicate rows dropped (same configuration, target and "
        f"score within one model/method/pool/regime/design); designs present: "
        f"{', '.join(s['designs']) or 'none'}.\n")
    # published
    add("## Compared with the published results and the literature\n")
    pub = s.get("published", [])
    if pub:
        add("SumEval 2022 XNLI results (XLM-R large, T-ULRv6 large, fine-tuned; "
            "configurations with k = 5–14 and very different sizes per language; score = "
            "accuracy). Within-target slope per doubling of k controlling log10 total examples, "
            "two-way bootstrap over targets and configurations; Spearman ρ between k and each "
            "configuration's mean zero-shot accuracy:\n")
        add("| model | targets | slope / doubling | 95% CI | ρ(k, config mean) | p | configs | k |")
        add("|---|---|---|---|---|---|---|---|")
        for e in pub:
            add(f"| {e['model']} | {e['target_class']} ({e['n_targets']}) | "
                f"**{_fmt(e['slope_within'])}** | {_ci(e['boot_ci_low'], e['boot_ci_high'])} | "
                f"{_fmt(e['spearman_k_config_mean'], 2)} | {_fmt(e['spearman_p'], 3, False)} | "
                f"{e['n_configs_all']} | {e['k_min']}–{e['k_max']} |")
        add("")
        rhos = ", ".join(f"{m} {_fmt(r, 2)}" for m, r in
                         sorted({(e["model"], e["spearman_k_config_mean"]) for e in pub}))
        small = all(abs(e["spearman_k_config_mean"]) < 0.2 for e in pub)
        flat = all(e["boot_ci_low"] is not None and e["boot_ci_low"] <= 0 <= e["boot_ci_high"]
                   for e in pub)
        add(f"In the published configurations ρ(k, accuracy) is {rhos}"
            + (": the number of fine-tuning languages is nearly uncorrelated with accuracy"
               if small else "") + (", and with the total size held fixed every within-target "
                                    "slope's CI includes 0" if flat else
                                    "; with the total size held fixed, see the slopes above")
            + (". For fine-tuned large models, once 5 or more languages are in, how many there "
               "are does not measurably matter.\n" if flat and small else ".\n"))
    sat = sorted({r["saturation_k"] for r in headline(s) if r["regime"] == "fixed_total"
                  and r["saturation_k"] is not None})
    add("**Literature.** Lim et al. (2024, *Analysis of Multi-Source Language Training in "
        "Cross-Lingual Transfer*, ACL), with the total training data held fixed as in the "
        "fixed-total regime here, report that the benefit of more source languages peaks "
        "around three and plateaus or declines beyond; the measured saturation k at a fixed "
        f"total is {' / '.join(map(str, sat)) or 'not reached'} (per class, headline table)"
        + (", in the same range of 3–5 source languages. " if sat and all(3 <= k <= 5 for k in sat)
           else ". ") + "SumEval has no target absent from "
        "pretraining, so the AmericasNLI class has no published counterpart.\n")
    # classes and method
    add("## Target classes and method\n")
    add(f"**Classes (defined from outside the results).** {s['classes']['rule']}.\n")
    add("**Method.** Every estimate is for one (model, method, training pool, budget regime, "
        "design); nothing is pooled across them. Zero-shot rows only. Seeds are averaged into "
        "(source set, target) cells. *Mixed*: statsmodels MixedLM `y ~ log2 k` with variance "
        "components for target intercepts, target × log2 k random slopes (≥ 3 targets) and "
        "source-set intercepts over one all-rows group (REML), Wald 95% CI. *Bootstrap*: "
        f"{s['bootstrap_reps']} two-way cluster-bootstrap replicates resampling targets and "
        "source sets independently, of the within-target least-squares slope. *Saturation*: "
        "piecewise-linear in log2 k with knots k = 2, 4, 8; the saturation k is the end of "
        "the last segment whose gain CI lies above 0 (1 = no segment gains). Kappa = Cohen's "
        "kappa × 100 from the confusion matrix.\n")
    add("## All scaling estimates\n")
    add("*Given best member*: the within-target slope with the set's best single member's "
        "score as a covariate (bootstrap CI) — what k adds once the chance of containing a "
        "strong source is accounted for.\n")
    add("| model | pool | regime | metric | targets | mixed slope | 95% CI | bootstrap 95% CI | "
        "given best member | segments: gain per doubling [CI] | saturation k | rows | cells | "
        "sets |")
    add("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for e in s["scaling"]:
        seg = "; ".join(f"{g['k_from']}–{g['k_to']}: {_fmt(g['gain_per_doubling'])} "
                        f"{_ci(g['ci_low'], g['ci_high'])}" for g in e["segments"]) or "–"
        b = e.get("slope_given_best_member")
        gb = f"{_fmt(b['slope'])} {_ci(b['ci_low'], b['ci_high'])}" if b else "–"
        add(f"| {e['model']} {e['method']} | {e['pool']} | {e['regime']} | {e['metric']} | "
            f"{e['target_class']} ({e['n_targets']}) | **{_fmt(e.get('slope'))}** | "
            f"{_ci(e.get('ci_low'), e.get('ci_high'))} | "
            f"{_ci(e['boot_ci_low'], e['boot_ci_high'])} | {gb} | {seg} | "
            f"{e['saturation_k'] if e['saturation_k'] is not None else '–'} | {e['n_rows']} | "
            f"{e['n_cells']} | {e['n_sets']} |")
    add("")
    for f in s.get("figures", []):
        add(f"![scaling]({f})\n")
    # member gaps
    if s.get("member_gaps"):
        add("## Sets against their own members (selection vs synergy)\n")
        add("Each set's score minus its best and its mean single member's score (singles of the "
            "same table, pool and regime; same seed where measured). Mean over rows, two-way "
            "bootstrap CI.\n")
        add("| design | model | pool | regime | metric | targets | set − best member | 95% CI | "
            "set − mean member | 95% CI | share beating best | rows |")
        add("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for g in s["member_gaps"]:
            add(f"| {g['design']} | {g['model']} | {g['pool']} | {g['regime']} | {g['metric']} | "
                f"{g['target_class']} ({g['n_targets']}) | **{_fmt(g['gap_best'])}** | "
                f"{_ci(*g['gap_best_ci'])} | {_fmt(g['gap_mean'])} | {_ci(*g['gap_mean_ci'])} | "
                f"{g['share_beating_best']:.2f} | {g['n_rows']} |")
        add("")
    if s.get("add_one"):
        add("## Add one language (paired gain, same budget and seed)\n")
        add("| model | pool | regime | metric | targets | base size | mean gain | 95% CI | "
            "share > 0 | pairs | bases |")
        add("|---|---|---|---|---|---|---|---|---|---|---|")
        for a in s["add_one"]:
            add(f"| {a['model']} | {a['pool']} | {a['regime']} | {a['metric']} | "
                f"{a['target_class']} ({a['n_targets']}) | "
                f"{a['base_size'] if a['base_size'] is not None else 'all'} | "
                f"**{_fmt(a['gain'])}** | {_ci(*a['ci'])} | {a['share_positive']:.2f} | "
                f"{a['n_pairs']} | {a['n_bases']} |")
        add("")
    if s.get("shapley"):
        add("## Shapley values on all subsets of 5-language sets\n")
        add("Exact Shapley value φ of each language (v(∅) = uniform guess: 33.3 macro-F1, "
            "0 kappa), mean over the class's targets with a bootstrap CI over targets. "
            "*Interaction* = v(full) − v(∅) − Σ (v(single) − v(∅)): the non-additive part "
            "(negative = redundancy).\n")
        add("*Additivity* = (v(full) − v(∅)) / Σ (v(single) − v(∅)), median over targets "
            "(1 = the members' gains add up; 1/5 = the set is worth one member).\n")
        add("| model | pool | regime | metric | set | targets | φ per language [95% CI] | "
            "interaction | additivity | full − best single |")
        add("|---|---|---|---|---|---|---|---|---|---|")
        for r in s["shapley"]:
            ph = ", ".join(f"{x['language']} {_fmt(x['phi'])} {_ci(*x['ci'])}"
                           for x in r["languages"])
            add(f"| {r['model']} | {r['pool']} | {r['regime']} | {r['metric']} | {r['full_set']} "
                f"| {r['target_class']} ({r['n_targets']}) | {ph} | {_fmt(r['interaction'])} "
                f"{_ci(*r['interaction_ci'])} | {_fmt(r.get('additivity'), 2, False)} | "
                f"{_fmt(r['full_minus_best_single'])} "
                f"{_ci(*r['full_minus_best_single_ci'])} |")
        add("")
    if s.get("best_vs_random"):
        add("## Choosing well vs adding more: greedy best set against random sets\n")
        add("Greedy forward selection (`xlt-measure greedy`) maximises an objective measured on "
            "the test targets themselves — an oracle upper bound of what choosing the sources "
            "well is worth. Objectives: "
            + "; ".join(f"`{k}` = {v}" for k, v in GREEDY_OBJECTIVES.items())
            + ". Random sets: the grid's sampled sets at the same k, pool and regime (seeds "
            "averaged). *Singles offset*: the mean difference between the greedy table's and "
            "the grid's single-source scores on the same objective — the two tables may use "
            "different int8 backends, so differences smaller than this are not meaningful.\n")
        add("| model | pool | regime | objective | k | greedy set | its score | random median | "
            "random 10–90% | share of random sets beaten | random sets | singles offset |")
        add("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in s["best_vs_random"]:
            add(f"| {r['model']} | {r['pool']} | {r['regime']} | {r['objective']} | {r['k']} | "
                f"{r['best_set']} | {_fmt(r['best'], 2, False)} | "
                f"{_fmt(r.get('random_median'), 2, False)} | {_fmt(r.get('random_p10'), 1, False)}–"
                f"{_fmt(r.get('random_p90'), 1, False)} | "
                f"{_fmt(r.get('share_random_beaten'), 2, False)} | {r.get('n_random', 0)} | "
                f"{_fmt(r.get('singles_offset_vs_grid'))} |")
        add("")
    if s.get("collapse"):
        add("## Class collapse: scores and predicted-label shares per target (grid)\n")
        add("Mean over zero-shot rows. Shares are the fractions of test pairs predicted as each "
            "label (the test sets are balanced: 1/3 each).\n")
        add("| model | pool | regime | target | class | macro-F1 | kappa | accuracy | "
            "pred. entailment | pred. neutral | pred. contradiction | rows with F1 < 33.3 |")
        add("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in s["collapse"]:
            add(f"| {r['model']} | {r['pool']} | {r['regime']} | {r['target']} | "
                f"{r['target_class']} | {r['macro_f1']:.1f} | {_fmt(r['kappa'], 1, False)} | "
                f"{r['accuracy']:.1f} | "
                + " | ".join(f"{_fmt(r['share_' + lab], 2, False)}" for lab in LABELS)
                + f" | {r['share_below_chance_f1']:.2f} |")
        add("")
    if s.get("per_target"):
        add("## Per-target slopes (macro-F1 per doubling; bootstrap over source sets)\n")
        add("| model | pool | regime | metric | target | class | slope | 95% CI | sets |")
        add("|---|---|---|---|---|---|---|---|---|")
        for r in s["per_target"]:
            add(f"| {r['model']} | {r['pool']} | {r['regime']} | {r['metric']} | {r['target']} | "
                f"{r['target_class']} | {_fmt(r['slope'])} | {_ci(r['ci_low'], r['ci_high'])} | "
                f"{r['n_sets']} |")
        add("")
    add("## Correlation of each feature with zero-shot transfer\n")
    add("Pearson and Spearman correlation over zero-shot rows with 95% CIs (Fisher z; "
        "Bonett–Wright variance for Spearman). Rows are not independent, so treat these CIs as "
        "optimistic; the grouped estimates above are the ones to rely on.\n")
    for origin, recs in s.get("correlations", {}).items():
        add(f"### origin: {origin}\n")
        add("| feature | n | Pearson r | 95% CI | Spearman ρ | 95% CI |")
        add("|---|---|---|---|---|---|")
        for r in recs:
            add(f"| {r['feature']} | {r['n']} | {_fmt(r['pearson'], 3)} | "
                f"[{_fmt(r['pearson_ci'][0], 3)}, {_fmt(r['pearson_ci'][1], 3)}] | "
                f"{_fmt(r['spearman'], 3)} | [{_fmt(r['spearman_ci'][0], 3)}, "
                f"{_fmt(r['spearman_ci'][1], 3)}] |")
        add("")
    if card is not None:
        add("## The predictor\n")
        add(f"Selected model: **{card.get('selected_model')}**. Its cross-validation tables are "
            "in the model card (`xlt-predict evaluate`).\n")
    return "\n".join(lines)


def readme_section(s: dict) -> str:
    """README's "The meta-analysis" section, printed from summary.json (never typed by hand):
    ``python -m predictor.report models/report/summary.json``."""
    out = ["### The meta-analysis — `models/report/report.md`", "",
           "```bash", s["command"], "```", ""]
    paras = answer_text(s)
    out += [paras[0], ""] if paras else []
    out += ["Change in zero-shot macro-F1 per doubling of the number of supervised languages "
            "(the headline `summary.json` holds; the report, the Home and the Scaling pages "
            "show the same table):", "", headline_markdown(s, "macro_f1"), ""]
    pub = s.get("published", [])
    if pub:
        out.append("Published SumEval 2022 results (fine-tuned XLM-R / T-ULRv6 large, "
                   f"k = {min(e['k_min'] for e in pub)}–{max(e['k_max'] for e in pub)}, "
                   "total size controlled): "
                   + "; ".join(f"{e['model']} {e['target_class']} {_fmt(e['slope_within'])} "
                               f"{_ci(e['boot_ci_low'], e['boot_ci_high'])}"
                               for e in pub)
                   + " per doubling; Spearman ρ between k and a configuration's mean accuracy "
                   + ", ".join(f"{m} {_fmt(r, 2)}" for m, r in
                               sorted({(e['model'], e['spearman_k_config_mean']) for e in pub}))
                   + ".")
        out.append("")
    out.append(f"Target classes: {s['classes']['rule']}. Kappa, the per-target slopes, "
               "class collapse, the designs (member gaps, add-one, Shapley, greedy vs random) "
               "and the caveats are in the report. This section is printed by "
               "`python -m predictor.report models/report/summary.json`.")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    import sys
    print(readme_section(json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))), end="")
