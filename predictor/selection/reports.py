"""What the card reports of a nested CV: per dataset against the best fair baseline, and a
summary row per candidate.

Reports are per dataset -- ``origin:model:target_dataset`` (own me5-small on XNLI, own
me5-small on AmericasNLI, SumEval XLM-R, SumEval T-ULRv6) -- with every target weighted
equally (mean over targets of the per-target MAE), and the difference to the best
baseline of that dataset with a 95% bootstrap CI over target languages (not rows).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from predictor.models.baselines import BASELINES
from predictor.selection.metrics import bootstrap_diff, per_target_mae, spearman, tw_mae
from predictor.selection.nested import SHIFTED_OOF, NestedResult
from predictor.selection.protocols import FAIR_BASELINES


def protocol_report(frame: pd.DataFrame, res: NestedResult, *, seed: int = 0
                    ) -> list[dict[str, Any]]:
    """One record per dataset (and 'all'): target-weighted MAE of the model and of each
    baseline, the best fair baseline, the difference with its target-bootstrap CI."""
    y = frame["score"].to_numpy(float)
    tg = frame["target_iso3"].astype(str).to_numpy()
    ds = frame["dataset"].astype(str).to_numpy()
    ok = ~np.isnan(res.oof["model"])
    fair = [b for b in FAIR_BASELINES[res.basis] if b in res.oof]
    shifted = res.oof.get(SHIFTED_OOF)
    out = []
    for d in sorted(np.unique(ds[ok])):
        m = ok & (ds == d)
        pt = {n: per_target_mae(y[m], res.oof[n][m], tg[m]) for n in ("model", *fair)}
        best = min(fair, key=lambda b: pt[b].mean())
        diff, lo, hi = bootstrap_diff(pt["model"].to_numpy(), pt[best].to_numpy(), seed=seed)
        rec = {"protocol": res.protocol, "basis": res.basis, "dataset": d,
               "targets": int(len(pt["model"])), "rows": int(m.sum()),
               "mae": float(pt["model"].mean()),
               **{f"mae_{b}": float(pt[b].mean()) for b in fair},
               "best_baseline": best, "diff": diff, "diff_ci": [lo, hi],
               "rel_improvement": float(1 - pt["model"].mean() / pt[best].mean()),
               "targets_better": int((pt["model"] < pt[best]).sum())}
        if shifted is not None:
            rec["mae_shifted_profiles"] = float(per_target_mae(y[m], shifted[m], tg[m]).mean())
        out.append(rec)
    return out


def cv_records(frame: pd.DataFrame, res: NestedResult, label: str) -> list[dict[str, Any]]:
    """Summary rows per candidate (model + baselines): target-weighted MAE (each dataset and
    each target equal), row RMSE, Spearman and mean within-target Spearman."""
    y = frame["score"].to_numpy(float)
    tg = frame["target_iso3"].astype(str).to_numpy()
    ds = frame["dataset"].astype(str).to_numpy()
    ok = ~np.isnan(res.oof["model"])
    out = []
    for name in ("model", *BASELINES):
        p = res.oof[name][ok]
        within = [spearman(y[ok][tg[ok] == t], p[tg[ok] == t]) for t in np.unique(tg[ok])]
        within = [w for w in within if not math.isnan(w)]
        out.append({"protocol": res.protocol, "basis": res.basis,
                    "model": label if name == "model" else name, "folds": len(res.splits),
                    "rows": int(ok.sum()), "mae": tw_mae(y[ok], p, tg[ok], ds[ok]),
                    "rmse": float(np.sqrt(np.mean((p - y[ok]) ** 2))),
                    "spearman": spearman(y[ok], p),
                    "spearman_within_target": float(np.mean(within)) if within else math.nan,
                    "seconds": res.seconds if name == "model" else 0.0,
                    "selection_rule": res.rule if name == "model" else None})
    return out
