"""The model card's validation tables, as plain text (``xlt-predict fit`` / ``evaluate``)
and as Markdown (``xlt-predict evaluate --markdown``).

Why one renderer: docs/results.md and the README quote these numbers; printing both forms
from the card, with the same number formats (:mod:`predictor.formatting`), keeps every
quoted figure one command away from its source instead of copied by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from predictor.formatting import (BASELINE_LABELS, baseline_label, dataset_label, interval,
                                  number, protocol_label, signed, spec_label)

BASELINE_COLUMNS = (("mae_mm_mean", "design mean"), ("mae_mm_class_mean", "+ pretraining class"),
                    ("mae_target_mean", "target mean"))

#: the one sign convention of every table comparing the predictor with a baseline
CHANGE_HEAD = "change vs best baseline (negative = better)"


def change(r: Mapping[str, Any]) -> str:
    """The predictor's MAE change against the best baseline in percent, '-47%' = 47% lower
    (better): the same sign as the difference beside it."""
    return f"{-100 * r['rel_improvement']:+.0f}%"


# -- plain text ---------------------------------------------------------------------------------
def format_table(table: pd.DataFrame) -> str:
    """The CV summary as aligned text, one block per protocol; the fitted specs are named
    "predictor" (``selected:`` below the tables says what they are), baselines in words."""
    cols = [c for c in ["protocol", "model", "folds", "mae", "rmse", "spearman",
                        "spearman_within_target"] if c in table.columns]
    t = table[cols].copy()
    if "protocol" in t:
        t["protocol"] = t["protocol"].map(protocol_label)
    if "model" in t:
        t["model"] = t["model"].map(lambda m: baseline_label(m) if m in BASELINE_LABELS
                                    else "predictor")
    for c in ("mae", "rmse", "spearman", "spearman_within_target"):
        if c in t:
            t[c] = t[c].map(lambda v: "nan" if pd.isna(v) else f"{v:.3f}")
    return t.to_string(index=False)


def format_report(records: Sequence[Mapping[str, Any]]) -> str:
    """The per-protocol, per-dataset table as aligned text (the change against the best
    baseline with the sign of the difference: negative = the predictor is better)."""
    lines = [f"{'protocol':<34} {'dataset':<30} {'tgts':>4} {'MAE':>6} {'design':>6} "
             f"{'+class':>6} {'target':>6}  {'vs best baseline [95% CI over targets]; ' + CHANGE_HEAD}"]
    for r in records:
        tm = r.get("mae_target_mean")
        ci = r["diff_ci"]
        lines.append(
            f"{protocol_label(r['protocol']):<34} {dataset_label(r['dataset']):<30} "
            f"{r['targets']:>4} {r['mae']:>6.2f} "
            f"{r['mae_mm_mean']:>6.2f} {r['mae_mm_class_mean']:>6.2f} "
            f"{'' if tm is None else f'{tm:.2f}':>6}  {r['diff']:+.2f} "
            f"[{ci[0]:+.2f}, {ci[1]:+.2f}] "
            f"vs {baseline_label(r['best_baseline'])} ({change(r)}, "
            f"{r['targets_better']}/{r['targets']} targets better)")
    return "\n".join(lines)


def format_ranking(records: Sequence[Mapping[str, Any]]) -> str:
    """The within-target ranking table as aligned text, fixed-k rows split by k."""
    lines = [f"{'dataset':<32} {'kind':<12} {'tgts':>4} {'sets':>5} {'model ρ':>8} "
             f"{'best dist ρ':>16} {'random ρ':>8}  {'Δρ (95% CI)':<24} "
             "NDCG@3 model/dist/rand"]
    for r in records:
        b = r["best_distance"]
        ci = r["spearman_diff_ci"]
        lines.append(
            f"{dataset_label(r['dataset']):<32} {r['kind']:<12} {r['targets']:>4} {r['sets']:>5} "
            f"{r['spearman']['model']:>8.3f} {b[:9]:>9} {r['spearman'][b]:>6.3f} "
            f"{r['spearman']['random']:>8.3f}  {r['spearman_diff']:+.3f} "
            f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"
            f"   {r['ndcg3']['model']:.3f}/{r['ndcg3'][b]:.3f}/{r['ndcg3']['random']:.3f}")
        for band in r.get("by_k", []):
            ci = band["spearman_diff_ci"]
            lines.append(f"{'':<32} {'  k = ' + band['k']:<12} {band['targets']:>4} "
                         f"{band['sets']:>5} {band['spearman_model']:>8.3f} "
                         f"{band['best_distance'][:9]:>9} {band['spearman_best_distance']:>6.3f} "
                         f"{'':>8}  {band['spearman_diff']:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]")
    return "\n".join(lines)


def _ablation_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """MAE with all features and its change per dropped family, one row per (protocol,
    dataset)."""
    ab = pd.DataFrame(rows)
    ab = ab.assign(protocol=ab["protocol"].map(protocol_label),
                   dataset=ab["dataset"].map(dataset_label))
    t = ab.pivot_table(index=["protocol", "dataset"], columns="dropped",
                       values="delta_vs_all").round(3)
    t.insert(0, "MAE all", ab[ab.dropped == "none"].set_index(["protocol", "dataset"])["mae"]
             .round(3))
    return t.drop(columns=["none"], errors="ignore").to_string()


def card_text(card: Mapping[str, Any]) -> str:
    """The whole card as ``xlt-predict evaluate`` prints it."""
    lines = ["== cross-validation summary (MAE: each dataset and each target weighted equally)",
             format_table(pd.DataFrame(card["cv"])),
             "\n== per dataset, vs the best fair baseline (95% CI over target languages)",
             format_report(card.get("cv_by_dataset", []))]
    if card.get("ranking"):
        lines += ["\n== within-target ranking of source sets (unseen-target protocol)",
                  format_ranking(card["ranking"])]
    iv = card["intervals"]
    lines.append(f"\n== {1 - iv['alpha']:.0%} intervals: held-out coverage per group "
                 "(target-weighted; each target of the group left out in turn)")
    for basis, recs in iv.get("coverage", {}).items():
        for r in recs:
            lines.append(f"  {basis:<15} {r['group'].replace('|', ' · '):<34} "
                         f"{r['targets']:>2} targets  "
                         f"+-{r['half_width']:6.2f}  coverage {r['coverage']:.3f}  "
                         f"(worst {r['worst_target']}: {r['worst_target_coverage']:.3f})")
    if card.get("ablation"):
        lines += ["\n== ablation: MAE change when a feature family is dropped (fixed "
                  "hyper-parameters)", _ablation_text(card["ablation"])]
    lines.append(f"\nselected for unseen targets: {spec_label(card['selected_model'])}\n"
                 f"selected for measured targets: "
                 f"{spec_label(str(card.get('seen_target_model')))}\n"
                 f"how: {card['selection']}")
    return "\n".join(lines)


# -- Markdown -----------------------------------------------------------------------------------
def _header(head: Sequence[str]) -> list[str]:
    """A Markdown table's header row and separator."""
    return ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]


def cv_table(card: Mapping[str, Any]) -> str:
    """Per protocol and dataset: the predictor's target-weighted MAE, each group-mean
    baseline, the best reference predictor, and the difference to the best fair comparator
    with its target-bootstrap CI."""
    head = ["protocol", "dataset", "targets", "predictor MAE", *(n for _, n in BASELINE_COLUMNS),
            "best reference predictor", "vs best baseline [95% CI]", CHANGE_HEAD]
    lines = _header(head)
    for r in card.get("cv_by_dataset", []):
        base = [number(r.get(k)) for k, _ in BASELINE_COLUMNS]
        base.append(_best_reference(r))
        lines.append(f"| {protocol_label(r['protocol'])} | {dataset_label(r['dataset'])} | "
                     f"{r['targets']} | **{number(r['mae'])}** | " + " | ".join(base)
                     + f" | {signed(r['diff'])} {interval(*r['diff_ci'])} "
                       f"({baseline_label(r['best_baseline'])}) | {change(r)} |")
    return "\n".join(lines)


def _best_reference(r: Mapping[str, Any]) -> str:
    """'3.52 (3-feature entropy OLS)': the best reference predictor of a report row."""
    refs = {k[4:]: v for k, v in r.items() if k.startswith("mae_") and k[4:] not in
            ("mm_mean", "mm_class_mean", "target_mean", "shifted_profiles") and v is not None}
    if not refs:
        return "–"
    best = min(refs, key=refs.get)
    return f"{number(refs[best])} ({baseline_label(best)})"


def comparators_table(card: Mapping[str, Any]) -> str:
    """Every comparator's target-weighted MAE per dataset, unseen-target protocol."""
    rows = [r for r in card.get("cv_by_dataset", []) if r["protocol"] == "unseen_target"]
    names = [k[4:] for k in (rows[0] if rows else {}) if k.startswith("mae_")
             and k != "mae_target_mean"]
    head = ["dataset", "predictor", *(baseline_label(n) for n in names)]
    lines = _header(head)
    for r in rows:
        cells = [number(r.get(f"mae_{n}")) for n in names]
        lines.append(f"| {dataset_label(r['dataset'])} | **{number(r['mae'])}** | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def regret_table(card: Mapping[str, Any]) -> str:
    """NDCG@3 and top-1 regret of the predictor against the best single feature (any URIEL
    distance or the raw per-source entropy) and random orderings, per dataset, kind and k."""
    head = ["dataset", "sets", "NDCG@3 predictor", "best single feature", "Δ NDCG@3 [95% CI]",
            "top-1 regret predictor", "regret best feature", "regret random"]
    lines = _header(head)
    for r in card.get("ranking", []):
        for label, rec in [(r["kind"], r), *((f"k = {b['k']}", b) for b in r.get("by_k", []))]:
            best = rec.get("best_single_ndcg")
            if best is None:
                continue
            lines.append(f"| {dataset_label(r['dataset'])} | {label} | "
                         f"**{number(rec['ndcg3']['model'], 3)}** | "
                         f"{number(rec['ndcg3'][best], 3)} ({best}) | "
                         f"{signed(rec['ndcg_diff_vs_best_single'], 3)} "
                         f"{interval(*rec['ndcg_diff_vs_best_single_ci'], 3)} | "
                         f"{number(rec['regret']['model'])} | "
                         f"{number(min(v for k, v in rec['regret'].items() if k not in ('model', 'random')))} | "
                         f"{number(rec['regret'].get('random'))} |")
    return "\n".join(lines)


def ranking_table(card: Mapping[str, Any]) -> str:
    """Within-target ranking of source sets, with the fixed-k rows split by k."""
    head = ["dataset", "sets", "targets", "predictor ρ", "best URIEL distance ρ", "random ρ",
            "Δρ [95% CI]"]
    lines = _header(head)
    for r in card.get("ranking", []):
        b = r["best_distance"]
        lines.append(f"| {dataset_label(r['dataset'])} | {r['kind']} ({r['sets']}) | "
                     f"{r['targets']} | "
                     f"**{number(r['spearman']['model'], 3)}** | "
                     f"{number(r['spearman'][b], 3)} ({b}) | "
                     f"{number(r['spearman']['random'], 3)} | "
                     f"{signed(r['spearman_diff'], 3)} {interval(*r['spearman_diff_ci'], 3)} |")
        for band in r.get("by_k", []):
            lines.append(f"| ↳ | k = {band['k']} ({band['sets']}, {band['members_per_set']:.1f} "
                         f"configs each) | {band['targets']} | "
                         f"{number(band['spearman_model'], 3)} | "
                         f"{number(band['spearman_best_distance'], 3)} "
                         f"({band['best_distance']}) | – | "
                         f"{signed(band['spearman_diff'], 3)} "
                         f"{interval(*band['spearman_diff_ci'], 3)} |")
    return "\n".join(lines)


def intervals_table(card: Mapping[str, Any]) -> str:
    """Held-out coverage of the 90% intervals per (basis, system, pretraining class)."""
    head = ["basis", "group", "targets", "± half-width", "held-out coverage", "worst target"]
    lines = _header(head)
    iv = card.get("intervals", {})
    for basis in ("unseen-target", "measured-target"):
        for group, g in (iv.get(basis) or {}).get("groups", {}).items():
            lines.append(f"| {basis} | {group.replace('|', ' · ')} | {g['targets']} | "
                         f"{number(g['quantile'])} | {number(g['coverage'], 3)} | "
                         f"{g.get('worst_target', '–')} "
                         f"{number(g.get('worst_target_coverage'))} |")
    return "\n".join(lines)


def ablation_table(card: Mapping[str, Any]) -> str:
    """MAE with every feature family and its change when one family is dropped."""
    rows = card.get("ablation", [])
    fams = sorted({r["dropped"] for r in rows} - {"none"})
    head = ["protocol", "dataset", "MAE, all features", *(f"− {f}" for f in fams)]
    lines = _header(head)
    keys = sorted({(r["protocol"], r["dataset"]) for r in rows})
    by = {(r["protocol"], r["dataset"], r["dropped"]): r for r in rows}
    for p, d in keys:
        allf = by.get((p, d, "none"))
        if allf is None:
            continue
        cells = [signed(by[(p, d, f)]["mae"] - allf["mae"]) if (p, d, f) in by else "–"
                 for f in fams]
        lines.append(f"| {protocol_label(p)} | {dataset_label(d)} | {number(allf['mae'])} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def _profiles_line(card: Mapping[str, Any]) -> str:
    """Which profile protocol the figures were measured with (a card from before protocols
    were recorded: the scored pairs)."""
    prof = (card.get("profiles") or {}).get("protocols")
    if not prof:
        return ("Profiles: built from the scored pairs (`scored-pairs`): unseen-target figures "
                "are label-free self-estimates, not predictions for an unseen language.")
    return "Profiles: " + "; ".join(f"{m}: " + ", ".join(f"{n} `{p}`" for p, n in c.items())
                                    for m, c in prof.items()) + "."


def card_markdown(card: Mapping[str, Any]) -> str:
    """The card's validation tables as one Markdown section."""
    td = card.get("training_data", {})
    pools = td.get("pools")
    pools = ("; ".join(f"{d.replace('|', ' · ')}: {pl}" for d, pl in pools.items())
             if isinstance(pools, Mapping) else pools or "–")
    parts = [f"Training rows: {td.get('rows')} ({td.get('duplicates_dropped')} exact duplicates "
             f"dropped → {td.get('rows_after_dedup')}); training pools: {pools} "
             f"({td.get('rows_other_pools_excluded', 0)} rows of other pools excluded).",
             "", _profiles_line(card),
             *_section("Cross-validation per dataset", cv_table(card)),
             *_section("Every comparator, unseen targets", comparators_table(card)),
             *_section("Ranking source sets within a target", ranking_table(card)),
             *_section("Choosing a set: NDCG@3 and top-1 regret", regret_table(card)),
             *_section("Intervals", intervals_table(card)),
             *_section("Ablation (fixed hyper-parameters, not nested)", ablation_table(card))]
    return "\n".join(parts)


def _section(title: str, table: str) -> list[str]:
    """A titled table, or nothing when the card has no rows for it (a card from before the
    table existed): an empty table would read as 'measured, nothing found'."""
    if table.count("\n") < 2:
        return []
    return ["", f"### {title}", "", table]
