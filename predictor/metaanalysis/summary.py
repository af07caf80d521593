"""Every number of the meta-analysis, per stratum and target class (``analyse``), and the
one headline every surface shows (``headline``, ``headline_markdown``).

Why one summary: ``summary.json`` holds these records, and the report, the README, the app's
Home and Scaling pages read them from there instead of estimating again, so they give one
answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pandas as pd

from measure.knowledge.coverage import RESOURCE_CLASSES
from predictor.formatting import MISSING, interval, signed
from predictor.metaanalysis.designs import (add_one_pairs, best_vs_random, member_gaps,
                                            shapley_table)
from predictor.metaanalysis.dilution import equal_share_gaps
from predictor.metaanalysis.fewshot import PAIRS_CAP
from predictor.metaanalysis.prepare import (CENTRED_SUFFIX, DESIGN_TABLES, FULL_SINGLE_DESIGNS,
                                            METRICS, deduplicate, measure_command)
from predictor.metaanalysis.published import correlation_table, published_estimates
from predictor.metaanalysis.records import (collapse_table, singles_level, summarise_add_one,
                                            summarise_add_one_split, summarise_dilution,
                                            summarise_few_shot, summarise_gaps,
                                            summarise_shapley)
from predictor.metaanalysis.scaling import collapse_adjusted, per_target, scaling_estimates

__all__ = ["analyse", "headline", "headline_markdown", "published_estimates",
           "correlation_table", "scaling_estimates", "pairs_text", "find"]


def _designs(df: pd.DataFrame, metric: str, reps: int) -> dict[str, list[dict]]:
    """The design records of one metric, each from the table measured for it."""
    out: dict[str, list[dict]] = {k: [] for k in ("member_gaps", "add_one", "add_one_split",
                                                  "shapley", "dilution", "few_shot",
                                                  "singles_level")}
    full = df[df["design"].isin(FULL_SINGLE_DESIGNS) & (df["n_shots"] == 0)]
    out["member_gaps"] = summarise_gaps(member_gaps(full, metric), metric, reps)
    ao = df[df["design"] == "add-one"]
    if len(ao):
        pairs = add_one_pairs(ao, metric)
        out["add_one"] = summarise_add_one(pairs, metric, reps)
        out["add_one_split"] = summarise_add_one_split(pairs, metric, reps)
    sh = df[df["design"] == "shapley"]
    if len(sh):
        out["shapley"] = summarise_shapley(shapley_table(sh, metric), metric, reps)
    dil = df[df["design"] == "dilution"]
    if len(dil):
        out["dilution"] = summarise_dilution(equal_share_gaps(dil, metric), metric, reps)
    fs = df[df["design"] == "few-shot"]
    if len(fs):
        out["few_shot"] = summarise_few_shot(fs, metric, reps)
    out["singles_level"] = singles_level(df[df["design"] != "few-shot"], metric)
    return out


def to_measure(df: pd.DataFrame) -> list[dict]:
    """The #22 designs (plain and centred probe) with no table among the rows, and the
    commands that measure each."""
    have = {(d, m.endswith(CENTRED_SUFFIX)) for d, m in
            df[["design", "method"]].drop_duplicates().itertuples(index=False)} \
        if len(df) else set()
    return [{"design": d, "centred": c, "what": DESIGN_TABLES[d][1],
             "command": measure_command(d, c)}
            for d in DESIGN_TABLES for c in (False, True) if (d, c) not in have]


def analyse(df: pd.DataFrame, reps: int = 400, mixed: bool = True, log=None,
            greedy_path: pd.DataFrame | None = None) -> dict[str, Any]:
    """Every estimate of the meta-analysis on prepared rows (see ``prepare``/``load_tables``).

    Design records appear only when their table is among the rows (``to_measure`` lists the
    missing ones with their commands)."""
    df, n_dup = deduplicate(df)
    res: dict[str, Any] = {"duplicates_dropped": n_dup, "designs": sorted(df["design"].unique()),
                           "methods": sorted(df["method"].unique())}
    if "config_json" in df:
        res["backends"] = {d: sorted({str(json.loads(c).get("backend", "?"))
                                      for c in g["config_json"].unique()})
                           for d, g in df.groupby("design")}
    res["scaling"] = scaling_estimates(df, reps=reps, mixed=mixed, log=log)
    res["per_target"] = per_target(df, reps)
    res["collapse"] = collapse_table(df[df["design"] == "grid"])
    res["collapse_adjusted"] = collapse_adjusted(df, reps)
    parts: dict[str, list[dict]] = {}
    for metric in METRICS:
        for key, recs in _designs(df, metric, reps).items():
            parts.setdefault(key, []).extend(recs)
    res["member_gaps"] = parts["member_gaps"]
    for key in ("add_one", "add_one_split", "shapley", "dilution", "few_shot",
                "singles_level"):
        if parts[key]:
            res[key] = parts[key]
    gr = df[df["design"] == "greedy"]
    if len(gr):
        bvr = best_vs_random(gr, df[df["design"] == "grid"], greedy_path)
        if bvr:
            res["best_vs_random"] = bvr
    res["to_measure"] = to_measure(df)
    return res


# -- one headline ------------------------------------------------------------------------------
HEADLINE_POOL = "xnli/validation"
REGIME_SHORT = {"fixed_total": "fixed total", "per_language": "per-language"}
_KEY = ("model", "method", "pool", "regime", "target_class")


def find(summary: Mapping[str, Any], section: str, **match: Any) -> list[dict]:
    """The records of ``summary[section]`` whose keys equal ``match`` (a key missing from a
    record never matches)."""
    return [r for r in summary.get(section) or []
            if all(k in r and r[k] == v for k, v in match.items())]


def _one(summary: Mapping[str, Any], section: str, **match: Any) -> dict:
    found = find(summary, section, **match)
    return found[0] if found else {}


def _equal_data_gap(summary: Mapping[str, Any], key: dict, metric: str) -> dict:
    """The set − best member gap at equal data per member: the dilution design under a fixed
    total; the grid itself per language (each member has the whole budget in both)."""
    if key["regime"] == "per_language":
        g = _one(summary, "member_gaps", metric=metric, design="grid", **key)
        return {"gap": g.get("gap_best"), "ci": g.get("gap_best_ci"),
                "from": "grid (per-language)"} if g else {}
    g = _one(summary, "dilution", metric=metric, **key)
    return {"gap": g.get("gap_best"), "ci": g.get("gap_best_ci"),
            "from": "dilution design"} if g else {}


def headline(summary: Mapping[str, Any], metric: str = "macro_f1") -> list[dict]:
    """The headline rows every surface shows (report, README, Home, Scaling).

    Per measured model/method, the grid design on the ``HEADLINE_POOL`` pool (else the pool
    with most rows), both regimes, one row per target class: mixed-model slope per doubling
    with its CI, the two-way bootstrap CI, the slope once the set holds the target's best
    single source, saturation k (only where shown), and — where the design tables exist —
    the set − best member gap at equal data per member, the add-one gains of a language that
    is not / is a new best source, and the exchange rate of the few-shot design.
    """
    scaling = [e for e in summary.get("scaling", []) if e["metric"] == metric]
    if not scaling:
        return []
    pools = {e["pool"] for e in scaling}
    pool = HEADLINE_POOL if HEADLINE_POOL in pools else \
        max(pools, key=lambda p: sum(e["n_rows"] for e in scaling if e["pool"] == p))
    rows = []
    order = {c: i for i, c in enumerate(RESOURCE_CLASSES)}
    for e in sorted((e for e in scaling if e["pool"] == pool),
                    key=lambda e: (e["model"], e["method"], e["regime"],
                                   order.get(e["target_class"], 9))):
        key = {k: e[k] for k in _KEY}
        g = _one(summary, "member_gaps", metric=metric, design="grid", **key)
        a = _one(summary, "add_one", metric=metric, base_size=None, **key)
        not_best = _one(summary, "add_one_split", metric=metric, new_best=False, **key)
        new_best = _one(summary, "add_one_split", metric=metric, new_best=True, **key)
        fs = _one(summary, "few_shot", metric=metric, **key)
        eq = _equal_data_gap(summary, key, metric)
        rows.append({**key, "metric": metric, "slope": e["slope"], "ci": [e["ci_low"], e["ci_high"]],
                     "boot_ci": [e["boot_ci_low"], e["boot_ci_high"]],
                     "saturation_k": e["saturation_k"], "n_targets": e["n_targets"],
                     "given_best_member": e.get("slope_given_best_member"),
                     "given_contains_best": e.get("slope_given_contains_best"),
                     "gap_best": g.get("gap_best"), "gap_mean": g.get("gap_mean"),
                     "gap_best_equal": eq.get("gap"), "gap_best_equal_ci": eq.get("ci"),
                     "gap_best_equal_from": eq.get("from"),
                     "add_one_gain": a.get("gain"), "add_one_ci": a.get("ci"),
                     "add_one_not_best": not_best.get("gain"),
                     "add_one_not_best_ci": not_best.get("ci"),
                     "add_one_new_best": new_best.get("gain"),
                     "add_one_new_best_ci": new_best.get("ci"),
                     "exchange_pairs": fs.get("exchange_pairs"),
                     "exchange_pairs_ci": fs.get("exchange_pairs_ci"),
                     "exchange_max_shots": fs.get("max_shots")})
    return rows


def pairs_text(value: Any, ci: Any = None, max_shots: Any = None) -> str:
    """'140 [40, 900]' target pairs; '> 400' past the largest measured n; '–' when missing."""
    def one(x: Any) -> str:
        if x is None:
            return MISSING
        if x >= PAIRS_CAP:
            return "never"
        return f"{x:.0f}"
    if value is None:
        return MISSING
    text = one(value) if max_shots is None or value <= max_shots else f"> {max_shots}"
    if ci and None not in ci:
        text += f" [{one(ci[0])}, {one(ci[1])}]"
    return text


def _with_ci(x: Any, ci: Any) -> str:
    return MISSING if x is None else f"{signed(x)} {interval(*(ci or [None, None]))}"


def headline_markdown(summary: Mapping[str, Any], metric: str = "macro_f1") -> str:
    """The headline as one Markdown table: the exact text README, report and app show."""
    rows = headline(summary, metric)
    if not rows:
        return ""
    unit = "macro-F1" if metric == "macro_f1" else "kappa ×100"
    lines = [f"| model | pool | budget | targets | {unit} per doubling of k (mixed, 95% CI) "
             "| bootstrap 95% CI (targets × sets) | per doubling, given the set holds the "
             "best single source | set − best member at equal data per member "
             "| add one language: not a new best | add one: a new best "
             "| one more source (k 1 → 2) ≈ target pairs | saturation k |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cb = r["given_contains_best"] or {}
        lines.append(
            f"| {r['model']} {r['method']} | {r['pool']} | {REGIME_SHORT.get(r['regime'], r['regime'])} "
            f"| {r['target_class']} ({r['n_targets']}) | **{signed(r['slope'])}** "
            f"{interval(*r['ci'])} | {interval(*r['boot_ci'])} "
            f"| {_with_ci(cb.get('slope'), [cb.get('ci_low'), cb.get('ci_high')])} "
            f"| {_with_ci(r['gap_best_equal'], r['gap_best_equal_ci'])} "
            f"| {_with_ci(r['add_one_not_best'], r['add_one_not_best_ci'])} "
            f"| {_with_ci(r['add_one_new_best'], r['add_one_new_best_ci'])} "
            f"| {pairs_text(r['exchange_pairs'], r['exchange_pairs_ci'], r['exchange_max_shots'])} "
            f"| {r['saturation_k'] if r['saturation_k'] is not None else 'not shown'} |")
    return "\n".join(lines)
