"""The report's figure: mean zero-shot macro-F1 against k per target class with its 95%
band (targets × sets bootstrap), one PNG per (model, method, pool, regime) of the grid
design.

Why apart from the report text: matplotlib is imported only when a figure is drawn, so the
text, the README section and the app's pages never load it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from measure.knowledge.nli import CHANCE
from predictor.formatting import CLASS_COLOURS, signed

MODEL_LABELS = {"me5-small": "multilingual-e5-small",
                "xlmr": "XLM-R large fine-tuned (SumEval 2022)",
                "tulrv6": "T-ULRv6 large fine-tuned (SumEval 2022)"}
REGIME_LABELS = {"per_language": "per-language budget (total grows with k)",
                 "fixed_total": "fixed total budget (split over k languages)",
                 "published": "published configurations (sizes vary; total examples controlled)"}


def scaling_figure(summary: dict, model: str, method: str, pool: str, regime: str,
                   out: Path) -> Path | None:
    """Per-class mean macro-F1 by k (targets averaged) with its two-way bootstrap 95% band."""
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
                      f"{signed(e['slope'])} per doubling, saturation "
                      f"{'k ' + str(e['saturation_k']) if e['saturation_k'] else 'not shown'}")
        if {"ci_low", "ci_high"} <= set(pk.columns):
            ax.fill_between(pk["k"], pk["ci_low"].astype(float), pk["ci_high"].astype(float),
                            color=c, alpha=0.15, lw=0)
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
