"""The meta-analysis's answer in words, built from ``summary.json`` alone: the report's
opening paragraphs, the README section, and the text of the app's Home and Scaling pages.

Why from the summary: the text is never typed by hand, so every surface states the numbers
the estimators produced, and a page can show it without estimating anything. A design
whose table is missing is named with the command that measures it, never guessed at.
"""

from __future__ import annotations

from typing import Any

from measure.knowledge.coverage import CLASS_LABELS, RESOURCE_CLASSES
from predictor.formatting import interval, signed
from predictor.metaanalysis.prepare import CENTRED_SUFFIX
from predictor.metaanalysis.summary import (find, headline, headline_markdown, pairs_text)

#: what the per-language regime is on the XNLI validation pool, in one sentence
PARALLEL_POOL = ("XNLI validation is parallel: k per-language sources are k translations of "
                 "the same 2,490 pairs, so a larger k there adds translations of the same "
                 "pairs, not new pairs")


def _ci(x: Any, ci: Any) -> str:
    return f"{signed(x)} {interval(*(ci or [None, None]))}"


def _verdict(lo: Any, hi: Any) -> str:
    if lo is None or hi is None:
        return "unclear"
    return "up" if lo > 0 else ("down" if hi < 0 else "flat")


def _classes(main: dict, text) -> str:
    """'A (absent); B (xnli-low); C (high)' over the classes ``main`` holds."""
    return "; ".join(f"{text(r)} ({cls})" for cls in RESOURCE_CLASSES
                     if (r := main.get(cls)) is not None and text(r) is not None)


def how_to_measure(summary: dict, design: str, centred: bool = False) -> str:
    """' (measure it: `xlt-measure run ...`)' for a design whose table is missing, else ''."""
    cmd = [m["command"] for m in summary.get("to_measure", [])
           if m["design"] == design and m["centred"] == centred]
    return f" (measure it: `{cmd[0]}`)" if cmd else ""


def _what_k_does(main: dict, items: bool = False) -> str:
    return ("* **What k does.** Drawn at random at a fixed total budget, each doubling of the "
            "number of source languages changes zero-shot macro-F1 by "
            + _classes(main, lambda r: _ci(r["slope"], r["boot_ci"]))
            + " (mixed-model slope; bootstrap 95% CI over targets × source sets"
            + (", widened for test items resampled jointly across translations" if items
               else "") + ").")


def _selection(main: dict) -> str | None:
    have = {c: r["given_contains_best"] for c, r in main.items() if r.get("given_contains_best")}
    if not have:
        return None
    flat = all(_verdict(b["ci_low"], b["ci_high"]) == "flat" for b in have.values())
    srcs = {c: sorted(set(b.get("best_sources", {}).values())) for c, b in have.items()}
    named = "; ".join(f"{'/'.join(s)} for every {c} target" for c, s in srcs.items()
                      if len(s) == 1)
    return ("* **Selection.** Much of it is the chance that a larger random set holds the "
            "target's best single source" + (f" ({named})" if named else "")
            + ": with that as a covariate the slope per doubling is "
            + _classes(have, lambda b: _ci(b["slope"], [b["ci_low"], b["ci_high"]]))
            + ", and holding the best source is worth "
            + _classes(have, lambda b: _ci(b["contains_best"], b["contains_best_ci"]))
            + (". Nothing measurable is left of k once the best source is in."
               if flat else ". Part of the slope remains where its interval excludes 0."))


#: what a set − best member gap at equal data per member says, by the sign of its CI
_EQUAL_DATA_VERDICT = {
    "up": "it adds to the best member's (more data helps, whatever the language)",
    "down": "it hurts: the set trails its best member though it holds k times the data "
            "(interference from the other languages)",
    "flat": "nothing measurable either way",
    "unclear": "no interval"}


def _dilution(summary: dict, main: dict, per_language: dict) -> str:
    eq = {c: r for c, r in main.items() if r.get("gap_best_equal") is not None}
    text = "* **Dilution and synergy.** "
    if eq:
        text += ("At equal data per member (each member trained alone on the share 2,490/k "
                 "it gets in the set) a set scores " + _classes(
                     eq, lambda r: _ci(r["gap_best_equal"], r["gap_best_equal_ci"]))
                 + " against its best member alone at that share. The set holds k times "
                 "the member's data, so this is what the other members' data is worth: "
                 + "; ".join(f"{c}: " + _EQUAL_DATA_VERDICT[_verdict(*r["gap_best_equal_ci"])]
                             for c, r in eq.items()) + ".")
    else:
        text += ("Whether a set beats its best member at equal data per member is not "
                 "measured yet" + how_to_measure(summary, "dilution") + ".")
    pl = {c: r for c, r in per_language.items() if r.get("gap_best_equal") is not None}
    if pl:
        text += (" With every member at the whole 2,490 pairs (the per-language budget) a set "
                 "scores " + _classes(pl, lambda r: _ci(r["gap_best_equal"],
                                                         r["gap_best_equal_ci"]))
                 + " against its best member.")
    return text


def _add_one_split(regimes: dict[str, dict]) -> str | None:
    bits = []
    for regime, rows in regimes.items():
        have = {c: r for c, r in rows.items() if r.get("add_one_not_best") is not None}
        if have:
            bits.append(f"{regime.replace('_', '-')}: not a new best "
                        + _classes(have, lambda r: _ci(r["add_one_not_best"],
                                                       r["add_one_not_best_ci"]))
                        + "; a new best "
                        + _classes(have, lambda r: None if r["add_one_new_best"] is None else
                                   _ci(r["add_one_new_best"], r["add_one_new_best_ci"])))
    if not bits:
        return None
    return ("* **Adding one language** (paired, same budget and seed; *a new best* = the added "
            "language alone beats every member alone on that target): " + " — ".join(bits)
            + ".")


def _target_data(summary: dict) -> str:
    fs = [r for r in find(summary, "few_shot", metric="macro_f1")
          if not r["method"].endswith(CENTRED_SUFFIX)]
    if not fs:
        return ("* **Target data.** What labelled target pairs buy, and how they trade "
                "against source languages, is not measured yet"
                + how_to_measure(summary, "few-shot") + ".")
    by = {r["target_class"]: r for r in fs}
    return ("* **Target data** (few-shot arms, fixed total). The first "
            f"{fs[0]['first_shots']} labelled target pairs add "
            + _classes(by, lambda r: _ci(r["gain_first_shots"], r["gain_first_shots_ci"]))
            + "; each further doubling adds "
            + _classes(by, lambda r: _ci(r["gain_per_doubling_shots"],
                                         r["gain_per_doubling_shots_ci"]))
            + ". One more source language (k 1 → 2: "
            + _classes(by, lambda r: _ci(r["gain_per_doubling_k"], r["gain_per_doubling_k_ci"]))
            + ") is worth about "
            + _classes(by, lambda r: pairs_text(r["exchange_pairs"], r["exchange_pairs_ci"],
                                                r["max_shots"]))
            + " labelled target pairs.")


def _saturation(summary: dict, main: dict) -> str:
    shown = {c: r["saturation_k"] for c, r in main.items() if r["saturation_k"] is not None}
    recs = {r["target_class"]: r for r in find(summary, "scaling", metric="macro_f1",
                                               design="grid", **_stratum(main))}
    at4 = {c: s for c, r in recs.items() for s in r.get("slowdown", []) if s["k"] == 4}
    detail = _classes(at4, lambda s: f"{_ci(s['before'], s['before_ci'])} up to k = 4, "
                                     f"{_ci(s['after'], s['after_ci'])} after")
    if shown:
        head = ("The gain per doubling is shown to fall to zero after "
                + "; ".join(f"k = {k} for {' and '.join(c for c in shown if shown[c] == k)} "
                            "targets" for k in sorted(set(shown.values())))
                + " (before it the gain's CI lies above 0, after it the CI includes 0, and "
                "the drop's CI lies above 0)"
                + (f"; for {' and '.join(c for c in main if c not in shown)} targets no "
                   "saturation is shown" if len(shown) < len(main) else ""))
    else:
        head = "No saturation is shown: no interval separates an early gain from a later one"
    return f"* **Saturation.** {head}" + (
        f" (gain per doubling before and after k = 4: {detail})." if detail else ".")


def _stratum(main: dict) -> dict:
    r = next(iter(main.values()))
    return {k: r[k] for k in ("model", "method", "pool", "regime")}


def _centred(summary: dict) -> str | None:
    lv = [r for r in find(summary, "singles_level", metric="macro_f1")
          if r["method"].endswith(CENTRED_SUFFIX)]
    if not lv:
        return None
    plain = {(r["design"], r["regime"], r["target_class"], r["examples"]): r["mean"]
             for r in find(summary, "singles_level", metric="macro_f1")
             if not r["method"].endswith(CENTRED_SUFFIX)}
    bits = [f"{r['target_class']} {r['mean']:.1f} against {plain[k]:.1f}"
            for r in lv if r["regime"] == "fixed_total"
            and (k := (r["design"], r["regime"], r["target_class"], r["examples"])) in plain]
    return ("* **The centred probe** (each language's embeddings centred on its own mean, "
            "from unlabelled text) is measured on the same designs and reported beside the "
            "plain probe in the report" + (": single sources score " + "; ".join(bits[:3])
                                            + " macro-F1 (same table and budget)"
                                            if bits else "") + ".")


def _short_answer(summary: dict, rows: list[dict]) -> str:
    """The answer in a few bullets: what k does, what it is made of, what target data buys."""
    ft = {r["target_class"]: r for r in rows if r["regime"] == "fixed_total"}
    pl = {r["target_class"]: r for r in rows if r["regime"] == "per_language"}
    main = ft or pl
    lines = ["**Short answer.**", "", _what_k_does(main, bool(summary.get("item_bootstrap"))),
             _selection(main),
             _dilution(summary, main, pl),
             _add_one_split({"fixed_total": ft, "per_language": pl}),
             _target_data(summary), _saturation(summary, main),
             f"* **The per-language regime.** {PARALLEL_POOL}.", _centred(summary)]
    return "\n".join(line for line in lines if line is not None)


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
                     f"{interval(*(k.get('boot_ci') or [None, None]))}), saturation "
                     f"{'at k = ' + str(r['saturation_k']) if r['saturation_k'] else 'not shown'}")
    budget = ("fixed total budget, so k is not confounded with data size"
              if regime == "fixed_total" else "per-language budget")
    return (f"**Answer, as measured** ({rows[0]['model']} {rows[0]['method']}, pool "
            f"{rows[0]['pool']}, {budget}; "
            "95% CIs from a bootstrap over target languages and source sets): "
            + "; ".join(parts) + ".")


def _member_gaps(summary: dict, main: dict) -> str | None:
    """Sets against their members at full data, and the two null worlds as reference lines."""
    have = {c: r for c, r in main.items() if r.get("gap_best") is not None}
    if not have:
        return None
    text = ("**Sets against their own members, and the null worlds.** Against members trained "
            "alone on the whole budget (so under a fixed total each member of the set had "
            "1/k of its single's data) a set of k ≥ 2 scores "
            + _classes(have, lambda r: f"{signed(r['gap_best'])} vs its best member, "
                                       f"{signed(r['gap_mean'])} vs its mean member")
            + "; that gap includes the cost of cutting the best member's data (dilution).")
    scal = {r["target_class"]: r for r in find(summary, "scaling", metric="macro_f1",
                                               design="grid", **_stratum(main))}
    nulls = {c: r for c, r in scal.items() if r.get("null_worlds")
             and r.get("slope_given_best_member")}
    if nulls:
        text += (" Fed the real single scores, a pure-selection world (a set scores its best "
                 "member) gives a best-member covariate slope of "
                 + _classes(nulls, lambda r: signed(r["null_worlds"]["selection"]
                                                   ["given_best_member"]))
                 + " and a pure-averaging world (a set scores its members' mean) "
                 + _classes(nulls, lambda r: signed(r["null_worlds"]["averaging"]
                                                   ["given_best_member"]))
                 + "; measured: " + _classes(nulls, lambda r: _ci(
                     r["slope_given_best_member"]["slope"],
                     [r["slope_given_best_member"]["ci_low"],
                      r["slope_given_best_member"]["ci_high"]]))
                 + ". A negative covariate slope lies between the two worlds: it is no "
                 "evidence for selection on its own; the dilution design decides.")
    return text


def _add_one(summary: dict, regime: str, pool: str) -> str | None:
    """The paired add-one gain by base size, per class."""
    bits = []
    for cls in RESOURCE_CLASSES:
        g = [a for a in find(summary, "add_one", metric="macro_f1", target_class=cls,
                             regime=regime, pool=pool) if a["base_size"] is not None
             and not a["method"].endswith(CENTRED_SUFFIX)]
        if g:
            bits.append(f"{cls}: " + ", ".join(f"|S|={a['base_size']} {signed(a['gain'])}"
                                               for a in sorted(g, key=lambda a: a["base_size"])))
    if not bits:
        return None
    return ("**Adding one language to a fixed set** (paired, same budget and seed), "
            "mean macro-F1 gain by base size: " + "; ".join(bits) + ".")


def _few_shot_detail(summary: dict) -> str | None:
    fs = find(summary, "few_shot", metric="macro_f1")
    if not fs:
        return None
    r0 = fs[0]
    return ("**What target data buys (few-shot arms).** Model: " + r0["fit_model"] + ". "
            "Exchange rate: " + r0["exchange_rule"] + ". CIs: " + r0["ci_method"] + ". "
            + "; ".join(f"{r['method']} {r['target_class']} ({', '.join(r['targets'])}): "
                        f"k {_ci(r['gain_per_doubling_k'], r['gain_per_doubling_k_ci'])} per "
                        f"doubling, first {r['first_shots']} pairs "
                        f"{_ci(r['gain_first_shots'], r['gain_first_shots_ci'])}, then "
                        f"{_ci(r['gain_per_doubling_shots'], r['gain_per_doubling_shots_ci'])} "
                        f"per doubling of pairs: one more source ≈ "
                        f"{pairs_text(r['exchange_pairs'], r['exchange_pairs_ci'], r['max_shots'])}"
                        " pairs" for r in fs) + ".")


def _shapley(summary: dict, regime: str, pool: str) -> str | None:
    """Which languages carry the gain; the additivity ratio is not a synergy measure."""
    sh = [r for r in find(summary, "shapley", metric="macro_f1", regime=regime, pool=pool)]
    if not sh:
        return None
    bits = []
    for full in sorted({r["full_set"] for r in sh}):
        rs = {r["target_class"]: r for r in sh if r["full_set"] == full}
        bits.append(f"{full}: " + ", ".join(
            f"{cls} targets led by {r['top_language']} (φ {signed(r['languages'][0]['phi'])}), "
            f"full set − best single {signed(r['full_minus_best_single'])}"
            for cls in RESOURCE_CLASSES if (r := rs.get(cls))))
    return ("**Which languages carry the gain (exact Shapley values, all subsets of "
            f"{len({r['full_set'] for r in sh})} five-language sets).** " + "; ".join(bits)
            + ". The report's additivity ratio (full set's gain over chance / the sum of its "
            "members' single gains) is about 1/5 wherever five members are interchangeable, "
            "and where the gains are negative it divides one negative number by another: it "
            "measures redundancy, not synergy.")


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


def _collapse(summary: dict, main: dict) -> str | None:
    """Collapse onto one label: the probe against the same-label-share null."""
    ca = {r["target_class"]: r for r in find(summary, "collapse_adjusted", design="grid",
                                             **_stratum(main))}
    if not ca:
        return None
    return ("**Collapse vs information.** A classifier that predicts each label as often as "
            "the probe does but reads nothing of the pair (the same-label-share null) scores "
            + _classes(ca, lambda r: f"{r['null_f1']:.1f} against the probe's "
                                     f"{r['macro_f1']:.1f} (kappa {r['kappa']:.1f})")
            + " macro-F1. Of the slope per doubling of k, the null's part (less collapse) is "
            + _classes(ca, lambda r: _ci(r["null_f1_slope"], r["null_f1_slope_ci"]))
            + " and the part above the null (information) is "
            + _classes(ca, lambda r: _ci(r["f1_above_null_slope"],
                                         r["f1_above_null_slope_ci"]))
            + ". Kappa is chance-corrected for the label shares already.")


def answer_text(summary: dict) -> list[str]:
    """The opening paragraphs: the short answer first, then what each design shows."""
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
    paragraphs = [_short_answer(summary, rows),
                  _as_measured(rows, main, kappa, regime),
                  _member_gaps(summary, main),
                  _add_one(summary, regime, pool),
                  _few_shot_detail(summary),
                  _collapse(summary, main),
                  _shapley(summary, regime, pool),
                  _best_vs_random(summary, regime, pool)]
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
            "and what it is made of (the headline `summary.json` holds; the report, the Home "
            "and the Scaling pages show the same table):", "",
            headline_markdown(s, "macro_f1"), ""]
    pub = s.get("published", [])
    if pub:
        out += [_published_sentence(pub), ""]
    missing = s.get("to_measure") or []
    if missing:
        out += ["Designs of issue #22 not in this report yet (each section of the report says "
                "what it would show): " + "; ".join(
                    f"{m['design']}{' (centred probe)' if m['centred'] else ''}: "
                    f"`{m['command']}`" for m in missing) + ".", ""]
    out.append(f"Target classes: {s['classes']['rule']}. Kappa, the per-target slopes, "
               "class collapse, the designs (member gaps, dilution, add-one, few-shot, "
               "Shapley, greedy vs random), the centred probe and the caveats are in the "
               "report. This section is printed by "
               "`python -m predictor.metaanalysis readme-section models/report/summary.json`.")
    return "\n".join(out) + "\n"
