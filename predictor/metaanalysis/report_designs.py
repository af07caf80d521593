"""The sections of ``report.md`` for the designs of issue #22: dilution control, the add-one
split, the null worlds, the few-shot arms and exchange rate, collapse against the
same-label-share null, and the plain and centred probes side by side.

Why a module of its own: each section is a table over ``summary.json`` records and a
sentence on how it was computed (its model and its CI method); a design whose table is
missing gets the command that measures it instead, so the report can be regenerated as the
tables land.
"""

from __future__ import annotations

from predictor.formatting import interval, number, signed
from predictor.metaanalysis.answer import how_to_measure
from predictor.metaanalysis.prepare import CENTRED_SUFFIX, DESIGN_TABLES
from predictor.metaanalysis.summary import find, pairs_text

_TWO_WAY = ("two-way cluster bootstrap over targets and source sets (a replicate draws both "
            "independently; a row's weight is the product of its target's and its set's "
            "draw counts), percentile 95% CIs")


def _ci(x, ci) -> str:
    return f"{signed(x)} {interval(*(ci or [None, None]))}"


def _not_measured(s: dict, design: str) -> list[str]:
    plain = how_to_measure(s, design)
    centred = how_to_measure(s, design, centred=True)
    return ([f"Not measured yet: {DESIGN_TABLES[design][1]}{plain}.\n"] if plain else []) + \
        ([f"The centred probe's re-measure is missing{centred}.\n"] if centred else [])


def dilution_section(s: dict) -> list[str]:
    lines = ["## Dilution control: sets against their members at equal data per member\n",
             "Design: " + DESIGN_TABLES["dilution"][1] + ". Each set's score minus its best "
             "and its mean member's, each member trained alone on the share it had in the set "
             "(a single within one example of it), same seed where measured. *With / without "
             "best source*: whether the set holds the target's best single source at that "
             "share. *Averaging world*: the gap a set scoring its members' mean would show "
             "(a pure-selection world shows 0). CIs: " + _TWO_WAY + ".\n"]
    recs = s.get("dilution") or []
    if recs:
        lines += ["| model | method | regime | metric | targets | set − best member | "
                  "set − mean member | with best source | without | averaging world | "
                  "rows | sets |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in recs:
            w, wo = r.get("with_best_source") or {}, r.get("without_best_source") or {}
            lines.append(
                f"| {r['model']} | {r['method']} | {r['regime']} | {r['metric']} | "
                f"{r['target_class']} ({r['n_targets']}) | **{_ci(r['gap_best'], r['gap_best_ci'])}** "
                f"| {_ci(r['gap_mean'], r['gap_mean_ci'])} | "
                f"{_ci(w.get('gap_best'), w.get('gap_best_ci')) if w else '–'} | "
                f"{_ci(wo.get('gap_best'), wo.get('gap_best_ci')) if wo else '–'} | "
                f"{_ci(r['null_averaging_gap_best'], r['null_averaging_gap_best_ci'])} | "
                f"{r['n_rows']} | {r['n_sets']} |")
        lines.append("")
    return lines + _not_measured(s, "dilution")


def null_worlds_section(s: dict) -> list[str]:
    recs = [e for e in s.get("scaling", []) if e.get("null_worlds")]
    if not recs:
        return []
    lines = ["## Null worlds: what the estimators return when the answer is known\n",
             "Fed the real single scores (members on the whole budget, seeds averaged), "
             "*selection*: a set scores its best member; *averaging*: a set scores its "
             "members' mean. Point estimates of the same within-target fits as the measured "
             "columns: reference lines, not estimates.\n",
             "| model | pool | regime | metric | targets | measured slope | selection world | "
             "averaging world | measured, given best member | selection world | "
             "averaging world |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in recs:
        nw, gb = e["null_worlds"], e.get("slope_given_best_member") or {}
        lines.append(
            f"| {e['model']} {e['method']} | {e['pool']} | {e['regime']} | {e['metric']} | "
            f"{e['target_class']} | {signed(e['slope_within'])} | "
            f"{signed(nw['selection']['slope'])} | {signed(nw['averaging']['slope'])} | "
            f"{signed(gb.get('slope'))} | {signed(nw['selection']['given_best_member'])} | "
            f"{signed(nw['averaging']['given_best_member'])} |")
    return lines + [""]


def add_one_split_section(s: dict) -> list[str]:
    recs = s.get("add_one_split") or []
    if not recs:
        return []
    lines = ["## Adding a new best source vs adding another language\n",
             "The add-one pairs split by whether the added language, trained alone, beats "
             "every member of the base alone on that target (a *new best*: selection) or not "
             "(what combining does). Per-language: every member keeps its whole 2,490 pairs; "
             "fixed total: the shares shrink. CIs: " + _TWO_WAY + " (sets = base sets).\n",
             "| model | method | pool | regime | metric | targets | added language | mean gain "
             "| share > 0 | pairs |", "|---|---|---|---|---|---|---|---|---|---|"]
    for a in recs:
        lines.append(f"| {a['model']} | {a['method']} | {a['pool']} | {a['regime']} | "
                     f"{a['metric']} | {a['target_class']} ({a['n_targets']}) | "
                     f"{'a new best' if a['new_best'] else 'not a new best'} | "
                     f"**{_ci(a['gain'], a['ci'])}** | {a['share_positive']:.2f} | "
                     f"{a['n_pairs']} |")
    return lines + [""]


def few_shot_section(s: dict) -> list[str]:
    lines = ["## What target data buys: few-shot arms and the exchange rate\n",
             "Design: " + DESIGN_TABLES["few-shot"][1] + " (the pairs come from a split "
             "that is never scored).\n"]
    recs = s.get("few_shot") or []
    if recs:
        r0 = recs[0]
        lines += [f"*Model*: {r0['fit_model']}. *Exchange rate*: {r0['exchange_rule']}. "
                  f"*CIs*: {r0['ci_method']}.\n",
                  "| model | method | metric | targets | per doubling of k | first "
                  "pairs | per doubling of pairs | one more source ≈ target pairs | cells |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in recs:
            lines.append(
                f"| {r['model']} | {r['method']} | {r['metric']} | {r['target_class']} "
                f"({', '.join(r['targets'])}) | {_ci(r['gain_per_doubling_k'], r['gain_per_doubling_k_ci'])} "
                f"| {r['first_shots']}: {_ci(r['gain_first_shots'], r['gain_first_shots_ci'])} "
                f"| {_ci(r['gain_per_doubling_shots'], r['gain_per_doubling_shots_ci'])} "
                f"| **{pairs_text(r['exchange_pairs'], r['exchange_pairs_ci'], r['max_shots'])}** "
                f"| {r['n_cells']} |")
        lines += ["", "Mean macro-F1 per arm (targets averaged) and the mean paired gain over "
                  "the same source set without target pairs:\n",
                  "| method | targets | k | n pairs | mean | gain over n = 0 | cells |",
                  "|---|---|---|---|---|---|---|"]
        for r in find(s, "few_shot", metric="macro_f1"):
            lines += [f"| {r['method']} | {r['target_class']} | {a['k']} | {a['n']} | "
                      f"{a['mean']:.1f} | {signed(a['gain_vs_none'])} | {a['n_cells']} |"
                      for a in r["arms"]]
        lines.append("")
    return lines + _not_measured(s, "few-shot")


def collapse_adjusted_section(s: dict) -> list[str]:
    recs = s.get("collapse_adjusted") or []
    if not recs:
        return []
    lines = ["## Collapse vs information: scores above the same-label-share null\n",
             "*Null*: the expected macro-F1 of a classifier that predicts each label with the "
             "probe's predicted-label shares but independently of the pair (per label "
             "2·p·q / (p + q), p the gold share, q the predicted share). *Above null* = "
             "macro-F1 − null: the collapse-adjusted score. Targets averaged; slopes per "
             "doubling of k with " + _TWO_WAY + ".\n",
             "| model | pool | regime | targets | macro-F1 | null | above null | kappa | "
             "slope: macro-F1 | null | above null | share of the slope that is the null's |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in recs:
        lines.append(
            f"| {r['model']} {r['method']} | {r['pool']} | {r['regime']} | "
            f"{r['target_class']} ({r['n_targets']}) | {r['macro_f1']:.1f} | "
            f"{r['null_f1']:.1f} | **{r['f1_above_null']:.1f}** | {r['kappa']:.1f} | "
            f"{_ci(r['macro_f1_slope'], r['macro_f1_slope_ci'])} | "
            f"{_ci(r['null_f1_slope'], r['null_f1_slope_ci'])} | "
            f"{_ci(r['f1_above_null_slope'], r['f1_above_null_slope_ci'])} | "
            f"{number(r.get('share_of_slope_from_collapse'), 2)} |")
    return lines + [""]


def _by_method(s: dict, section: str, **match) -> dict:
    return {(r["method"], r["target_class"]): r for r in find(s, section, **match)}


def methods_section(s: dict) -> list[str]:
    """The plain and the centred probe side by side on every design both were measured on."""
    methods = [m for m in s.get("methods", []) if m.endswith(CENTRED_SUFFIX)]
    if not methods:
        return ["## The centred probe\n",
                "The probe with each language's embeddings centred on its own mean "
                "(`[probe] centre = \"language\"`) has no table here yet."
                + "".join(how_to_measure(s, d, centred=True) for d in DESIGN_TABLES) + "\n"]
    plain = [m.removesuffix(CENTRED_SUFFIX) for m in methods]
    lines = ["## The plain and the centred probe side by side (macro-F1, fixed total)\n",
             "Same designs, same cells but for the probe option; each number is the design "
             "record of its method (the sections above give the CIs).\n",
             "| method | targets | singles (add-one table, 2,490 pairs) | set − best member, "
             "equal data | add one: not a new best | add one: a new best | one more source ≈ "
             "target pairs |", "|---|---|---|---|---|---|---|"]
    lv = _by_method(s, "singles_level", metric="macro_f1", design="add-one",
                    regime="fixed_total")
    dil = _by_method(s, "dilution", metric="macro_f1")
    nb = _by_method(s, "add_one_split", metric="macro_f1", regime="fixed_total", new_best=False)
    yb = _by_method(s, "add_one_split", metric="macro_f1", regime="fixed_total", new_best=True)
    fs = _by_method(s, "few_shot", metric="macro_f1")
    for m in sorted(set(plain) | set(methods)):
        for cls in ("absent", "xnli-low", "high"):
            key = (m, cls)
            if not any(key in d for d in (lv, dil, nb, yb, fs)):
                continue
            f = fs.get(key)
            lines.append(
                f"| {m} | {cls} | {number((lv.get(key) or {}).get('mean'), 1)} | "
                f"{signed((dil.get(key) or {}).get('gap_best'))} | "
                f"{signed((nb.get(key) or {}).get('gain'))} | "
                f"{signed((yb.get(key) or {}).get('gain'))} | "
                f"{pairs_text(f['exchange_pairs'], None, f['max_shots']) if f else '–'} |")
    return lines + [""]
