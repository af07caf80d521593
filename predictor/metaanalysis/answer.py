"""The meta-analysis's answer in words, built from ``summary.json`` alone: the report's
opening paragraphs, the README section, and the text of the app's Home and Scaling pages.

Why from the summary: the text is never typed by hand, so every surface states the numbers
the estimators produced, and a page can show it without estimating anything.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from measure.knowledge.coverage import CLASS_LABELS, RESOURCE_CLASSES
from predictor.formatting import interval, signed
from predictor.metaanalysis.summary import headline, headline_markdown


def _sig(lo: Any, hi: Any) -> str:
    if lo is None or hi is None:
        return "unclear"
    return "up" if lo > 0 else ("down" if hi < 0 else "flat")


def _short_answer(main: dict, summary: dict, regime: str) -> str:
    """One plain paragraph: does k help, how far, and is it more than selection?"""
    def word(r: dict) -> str:
        lo, hi = r["boot_ci"]
        return {"up": "helps", "down": "hurts", "flat": "makes no measurable difference",
                "unclear": "is unclear"}[_sig(lo, hi)]
    bits = [f"{word(r)} {cls} targets ({signed(r['slope'])} macro-F1 per doubling)"
            for cls in RESOURCE_CLASSES if (r := main.get(cls))]
    sats = sorted({r["saturation_k"] for r in main.values() if r["saturation_k"] is not None})
    text = ("**Short answer.** With randomly drawn source sets at a "
            + ("fixed total budget" if regime == "fixed_total" else "per-language budget")
            + ", adding supervised languages " + "; ".join(bits) + ".")
    if sats:
        text += (" The gain per doubling is no longer distinguishable from zero after k = "
                 + " / ".join(str(k) for k in sats) + ".")
    gb = [(cls, r["given_best_member"]) for cls in RESOURCE_CLASSES
          if (r := main.get(cls)) and r.get("given_best_member")]
    if gb:
        text += (" But it is mostly selection: with each set's best single member as a "
                 "covariate the slope becomes " + "; ".join(
                     f"{signed(b['slope'])} {interval(b['ci_low'], b['ci_high'])} for {cls}"
                     for cls, b in gb)
                 + " — more languages help because a larger random set is more likely to "
                 "contain a good source, not because languages add up.")
    ao = [(cls, r) for cls in RESOURCE_CLASSES if (r := main.get(cls)) and r.get("add_one_ci")]
    sizes = [a["base_size"] for a in summary.get("add_one", []) if a["base_size"] is not None]
    if ao and sizes:
        text += (" Adding one language to a fixed set at the same budget (the add-one design, "
                 "paired) changes macro-F1 by "
                 + "; ".join(f"{signed(r['add_one_gain'])} {interval(*r['add_one_ci'])} ({cls})"
                             for cls, r in ao) + " on average over base sizes "
                 + "–".join(str(f(sizes)) for f in (min, max)) + ".")
    return text


def _as_measured(rows: list[dict], main: dict, kappa: dict, regime: str) -> str:
    """The headline numbers per class, macro-F1 and kappa."""
    parts = []
    for cls in RESOURCE_CLASSES:
        r = main.get(cls)
        if not r:
            continue
        k = kappa.get((regime, cls), {})
        parts.append(f"{CLASS_LABELS[cls]}: {signed(r['slope'])} macro-F1 per doubling "
                     f"{interval(*r['boot_ci'])} (kappa {signed(k.get('slope'))} "
                     f"{interval(*(k.get('boot_ci') or [None, None]))}), saturation k "
                     f"{r['saturation_k'] if r['saturation_k'] is not None else 'not reached'}")
    budget = ("fixed total budget, so k is not confounded with data size"
              if regime == "fixed_total" else "per-language budget")
    return (f"**Answer, as measured** ({rows[0]['model']} {rows[0]['method']}, pool "
            f"{rows[0]['pool']}, {budget}; "
            "95% CIs from a bootstrap over target languages and source sets): "
            + "; ".join(parts) + ".")


def _member_gaps(main: dict) -> str | None:
    """What the gain is made of: sets against their best and their mean member."""
    gap_bits = [f"{cls} {signed(r['gap_best'])} vs best member, "
                f"{signed(r['gap_mean'])} vs mean member"
                for cls in RESOURCE_CLASSES
                if (r := main.get(cls)) and r.get("gap_best") is not None]
    if not gap_bits:
        return None
    have = [main[c] for c in main if main[c].get("gap_best") is not None]
    below_best = all(r["gap_best"] < 0 for r in have)
    above_mean = all(r["gap_mean"] > 0 for r in have)
    verdict = ("Sets beat the average of their members but not the best one, so most of "
               "what a larger random k buys is a better chance of containing a good single "
               "source: selection rather than synergy."
               if below_best and above_mean else
               "Sets trail their best member." if below_best else
               "Some sets beat their best member: there is a gain beyond selection.")
    return ("**Sets against their own members.** A set of k ≥ 2 languages minus its "
            "members trained alone (same pool, regime and budget, same seed), mean "
            "macro-F1: " + "; ".join(gap_bits) + ". " + verdict)


def _add_one(summary: dict, regime: str, pool: str) -> str | None:
    """The paired add-one gain by base size, per class."""
    bits = []
    for cls in RESOURCE_CLASSES:
        g = [a for a in summary.get("add_one") or [] if a["metric"] == "macro_f1"
             and a["target_class"] == cls and a["regime"] == regime and a["pool"] == pool
             and a["base_size"] is not None]
        if g:
            bits.append(f"{cls}: " + ", ".join(f"|S|={a['base_size']} {signed(a['gain'])}"
                                               for a in sorted(g, key=lambda a: a["base_size"])))
    if not bits:
        return None
    return ("**Adding one language to a fixed set** (paired, same budget and seed), "
            "mean macro-F1 gain by base size: " + "; ".join(bits) + ".")


def _shapley(summary: dict, regime: str, pool: str) -> str | None:
    """Which languages carry the gain, and how far their contributions add up."""
    sh = [r for r in summary.get("shapley", []) if r["metric"] == "macro_f1"
          and r["regime"] == regime and r["pool"] == pool]
    if not sh:
        return None
    bits = []
    for full in sorted({r["full_set"] for r in sh}):
        rs = {r["target_class"]: r for r in sh if r["full_set"] == full}
        bits.append(f"{full}: " + ", ".join(
            f"{cls} targets led by {r['top_language']} (φ {signed(r['languages'][0]['phi'])}), "
            f"full set − best single {signed(r['full_minus_best_single'])}"
            for cls in RESOURCE_CLASSES if (r := rs.get(cls))))
    adds = [r["additivity"] for r in sh if r.get("additivity") is not None]
    return ("**Which languages carry the gain (exact Shapley values, all subsets of "
            f"{len({r['full_set'] for r in sh})} five-language sets).** " + "; ".join(bits) + "."
            + (f" In every set and target class a full set's gain over chance is "
               f"{min(adds):.2f}–{max(adds):.2f} of the sum of its members' single gains "
               "(1 = additive): the languages' contributions overlap instead of adding "
               "up." if adds else ""))


def _best_vs_random(summary: dict, regime: str, pool: str) -> str | None:
    """The greedy (oracle) set against the random sets at the same k."""
    bvr = [r for r in summary.get("best_vs_random", []) if r["regime"] == regime
           and r["pool"] == pool and r.get("random_median") is not None]
    if not bvr:
        return None
    bits = []
    for obj in sorted({r["objective"] for r in bvr}):
        rs = sorted((r for r in bvr if r["objective"] == obj), key=lambda r: r["k"])
        top = max(rs, key=lambda r: r["best"])
        med = [r["random_median"] for r in rs]
        bits.append(f"`{obj}`: the best greedy set is {top['best_set']} (k = {top['k']}, "
                    f"{top['best']:.1f}) against random-set medians of {min(med):.1f}–"
                    f"{max(med):.1f} at k = {rs[0]['k']}–{rs[-1]['k']}; the greedy set "
                    f"at k = {rs[-1]['k']} scores {rs[-1]['best']:.1f}")
    return ("**Choosing well vs adding more** (greedy forward selection with the test "
            "targets as its objective — an oracle upper bound; macro-F1). "
            + "; ".join(bits) + ".")


def _collapse(summary: dict, regime: str, pool: str) -> str | None:
    """How far the probe collapses onto one label on the targets absent from pretraining."""
    collapse = pd.DataFrame(summary.get("collapse", []))
    if collapse.empty:
        return None
    c = collapse[(collapse["design"] == "grid") & (collapse["pool"] == pool)]
    ab = c[(c["regime"] == regime) & (c["target_class"] == "absent")]
    if not len(ab):
        return None
    return (f"**Collapse.** On the AmericasNLI targets (absent from pretraining) the probe "
            f"averages {ab['macro_f1'].mean():.1f} macro-F1 and {ab['kappa'].mean():.1f} "
            f"kappa (×100) and predicts *entailment* for {100 * ab['share_entailment'].min():.0f}–"
            f"{100 * ab['share_entailment'].max():.0f}% of pairs (mean per target); a "
            "gain in macro-F1 there is mostly a change in which label the collapsed "
            "classifier prefers, not understanding, and it is reported separately from the "
            "XNLI low-resource languages.")


def answer_text(summary: dict) -> list[str]:
    """The opening paragraphs: a plain answer built from the headline numbers."""
    rows = headline(summary, "macro_f1")
    if not rows:
        return ["No measured table with more than one k was given, so only the published "
                "results below answer the question."]
    kappa = {(r["regime"], r["target_class"]): r for r in headline(summary, "kappa")}
    pool = rows[0]["pool"]
    ft = {r["target_class"]: r for r in rows if r["regime"] == "fixed_total"}
    pl = {r["target_class"]: r for r in rows if r["regime"] == "per_language"}
    main = ft or pl
    regime = "fixed_total" if ft else "per_language"
    paragraphs = [_short_answer(main, summary, regime),
                  _as_measured(rows, main, kappa, regime),
                  _member_gaps(main),
                  _add_one(summary, regime, pool),
                  _shapley(summary, regime, pool),
                  _best_vs_random(summary, regime, pool),
                  _collapse(summary, regime, pool)]
    return [p for p in paragraphs if p is not None]


def _published_sentence(pub: list[dict]) -> str:
    return ("Published SumEval 2022 results (fine-tuned XLM-R / T-ULRv6 large, "
            f"k = {min(e['k_min'] for e in pub)}–{max(e['k_max'] for e in pub)}, "
            "total size controlled): "
            + "; ".join(f"{e['model']} {e['target_class']} {signed(e['slope_within'])} "
                        f"{interval(e['boot_ci_low'], e['boot_ci_high'])}"
                        for e in pub)
            + " per doubling; Spearman ρ between k and a configuration's mean accuracy "
            + ", ".join(f"{m} {signed(r, 2)}" for m, r in
                        sorted({(e['model'], e['spearman_k_config_mean']) for e in pub}))
            + ".")


def readme_section(s: dict) -> str:
    """README's "The meta-analysis" section, printed from summary.json (never typed by hand):
    ``python -m predictor.metaanalysis readme-section models/report/summary.json``."""
    out = ["### The meta-analysis — `models/report/report.md`", "",
           "```bash", s["command"], "```", ""]
    paras = answer_text(s)
    out += [paras[0], ""] if paras else []
    out += ["Change in zero-shot macro-F1 per doubling of the number of supervised languages "
            "(the headline `summary.json` holds; the report, the Home and the Scaling pages "
            "show the same table):", "", headline_markdown(s, "macro_f1"), ""]
    pub = s.get("published", [])
    if pub:
        out += [_published_sentence(pub), ""]
    out.append(f"Target classes: {s['classes']['rule']}. Kappa, the per-target slopes, "
               "class collapse, the designs (member gaps, add-one, Shapley, greedy vs random) "
               "and the caveats are in the report. This section is printed by "
               "`python -m predictor.metaanalysis readme-section models/report/summary.json`.")
    return "\n".join(out) + "\n"
