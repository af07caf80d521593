"""The model card's validation tables as Markdown (``xlt-predict evaluate --markdown``).

Why: docs/results.md and the README quote these numbers; printing them from the card
keeps every quoted figure one command away from its source instead of copied by hand.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

BASELINE_COLUMNS = (("mae_mm_mean", "design mean"), ("mae_mm_class_mean", "+ pretraining class"),
                    ("mae_target_mean", "target mean"))


def _f(x: Any, nd: int = 2, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:+.{nd}f}" if sign else f"{x:.{nd}f}"


def _ci(ci: Sequence[float], nd: int = 2) -> str:
    return f"[{_f(ci[0], nd, True)}, {_f(ci[1], nd, True)}]"


def _header(head: Sequence[str]) -> list[str]:
    """A Markdown table's header row and separator."""
    return ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]


def cv_table(card: Mapping[str, Any]) -> str:
    """Per protocol and dataset: the predictor's target-weighted MAE, each baseline, and the
    difference to the best fair baseline with its target-bootstrap CI."""
    head = ["protocol", "dataset", "targets", "predictor MAE", *(n for _, n in BASELINE_COLUMNS),
            "vs best baseline [95% CI]", "change"]
    lines = _header(head)
    for r in card.get("cv_by_dataset", []):
        base = [_f(r.get(k)) for k, _ in BASELINE_COLUMNS]
        lines.append(f"| {r['protocol']} | {r['dataset']} | {r['targets']} | **{_f(r['mae'])}** | "
                     + " | ".join(base)
                     + f" | {_f(r['diff'], 2, True)} {_ci(r['diff_ci'])} ({r['best_baseline']}) | "
                       f"{-100 * r['rel_improvement']:+.0f}% |")
    return "\n".join(lines)


def ranking_table(card: Mapping[str, Any]) -> str:
    """Within-target ranking of source sets, with the fixed-k rows split by k."""
    head = ["dataset", "sets", "targets", "predictor ρ", "best URIEL distance ρ", "random ρ",
            "Δρ [95% CI]"]
    lines = _header(head)
    for r in card.get("ranking", []):
        b = r["best_distance"]
        lines.append(f"| {r['dataset']} | {r['kind']} ({r['sets']}) | {r['targets']} | "
                     f"**{_f(r['spearman']['model'], 3)}** | {_f(r['spearman'][b], 3)} ({b}) | "
                     f"{_f(r['spearman']['random'], 3)} | "
                     f"{_f(r['spearman_diff'], 3, True)} {_ci(r['spearman_diff_ci'], 3)} |")
        for band in r.get("by_k", []):
            lines.append(f"| ↳ | k = {band['k']} ({band['sets']}, {band['members_per_set']:.1f} "
                         f"configs each) | {band['targets']} | {_f(band['spearman_model'], 3)} | "
                         f"{_f(band['spearman_best_distance'], 3)} ({band['best_distance']}) | – | "
                         f"{_f(band['spearman_diff'], 3, True)} "
                         f"{_ci(band['spearman_diff_ci'], 3)} |")
    return "\n".join(lines)


def intervals_table(card: Mapping[str, Any]) -> str:
    """Held-out coverage of the 90% intervals per (basis, model, method, pretraining class)."""
    head = ["basis", "group", "targets", "± half-width", "held-out coverage", "worst target"]
    lines = _header(head)
    iv = card.get("intervals", {})
    for basis in ("unseen-target", "measured-target"):
        for group, g in (iv.get(basis) or {}).get("groups", {}).items():
            lines.append(f"| {basis} | {group.replace('|', ' · ')} | {g['targets']} | "
                         f"{_f(g['quantile'])} | {_f(g['coverage'], 3)} | "
                         f"{g.get('worst_target', '–')} {_f(g.get('worst_target_coverage'))} |")
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
        cells = [_f(by[(p, d, f)]["mae"] - allf["mae"], 2, True) if (p, d, f) in by else "–"
                 for f in fams]
        lines.append(f"| {p} | {d} | {_f(allf['mae'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def card_markdown(card: Mapping[str, Any]) -> str:
    td = card.get("training_data", {})
    parts = [f"Training rows: {td.get('rows')} ({td.get('duplicates_dropped')} exact duplicates "
             f"dropped → {td.get('rows_after_dedup')}); pools: {td.get('pools', '–')} "
             f"({td.get('rows_other_pools_excluded', 0)} rows of other pools excluded).",
             "", "### Cross-validation per dataset", "", cv_table(card),
             "", "### Ranking source sets within a target", "", ranking_table(card),
             "", "### Intervals", "", intervals_table(card),
             "", "### Ablation (fixed hyper-parameters, not nested)", "", ablation_table(card)]
    return "\n".join(parts)
