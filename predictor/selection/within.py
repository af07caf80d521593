"""The second decision of the search: does a system's chosen spec get the within-target stage?

Why a second, separate decision instead of grid points: one HGB per system and inner fold
for each of the 29 linear grid points would multiply the fit's cost by ~30; the stage only
re-orders configurations within a target, so it is judged on top of the first stage the
inner CV already chose.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from predictor.selection.metrics import tw_mae
from predictor.selection.protocols import BASIS, inner_splits, meta_of
from predictor.selection.specs import Spec, designs_by_spec


def choose_within(frame: pd.DataFrame, train: np.ndarray, protocol: str,
                  chosen: Mapping[str, Spec], X: np.ndarray, seed: int = 0,
                  info: dict[str, Any] | None = None) -> dict[str, Spec]:
    """Per system, the chosen unseen-target spec with the within-target stage
    (``ZModel(within=WITHIN_HGB)``) when that lowers its inner target-weighted MAE, else
    the spec as chosen. Only ``train`` rows are used (indices into ``frame``; ``X`` is the
    whole feature matrix), so the outer test rows never inform the decision.

    The inner folds are 4 target-grouped folds (``logo_max=0``) whatever the settings'
    ``inner_logo_max``: each costs a tree ensemble per system."""
    if BASIS[protocol] != "unseen-target" or not chosen:
        return dict(chosen)
    y = frame["score"].to_numpy(float)
    meta = meta_of(frame)
    tg = frame["target_iso3"].astype(str).to_numpy()
    ds = frame["dataset"].astype(str).to_numpy()
    mm = frame["mm"].astype(str).to_numpy()
    off = np.full(len(frame), np.nan)
    on = np.full(len(frame), np.nan)
    with threadpool_limits(limits=1):
        for itr, ite in inner_splits(frame, train, protocol, seed=seed, logo_max=0):
            for sp, mms in designs_by_spec(chosen).values():
                rows = ite[np.isin(mm[ite], mms)]
                if not len(rows):
                    continue
                model = replace(sp, within=True).build(seed, designs=mms) \
                    .fit(X[itr], y[itr], meta.iloc[itr])
                on[rows] = model.predict(X[rows], meta.iloc[rows])
                off[rows] = model.predict(X[rows], meta.iloc[rows], within=False)
    out: dict[str, Spec] = {}
    for m, sp in chosen.items():
        rows = train[(mm[train] == m) & ~np.isnan(on[train])]
        if not len(rows):
            out[m] = sp
            continue
        mae_off = tw_mae(y[rows], off[rows], tg[rows], ds[rows])
        mae_on = tw_mae(y[rows], on[rows], tg[rows], ds[rows])
        out[m] = replace(sp, within=True) if mae_on < mae_off else sp
        if info is not None:
            info[m] = {"inner_mae_without": mae_off, "inner_mae_with": mae_on,
                       "within": bool(mae_on < mae_off)}
    return out


def record_within(decided: dict[str, Spec], w_info: Mapping[str, Any],
                  info: dict[str, Any] | None) -> dict[str, Spec]:
    """``decided`` (from :func:`choose_within`), its per-system details filed under
    ``within_stage`` in the selection ``info`` of the first decision."""
    if info is not None:
        for m, v in w_info.items():
            info.setdefault(m, {})["within_stage"] = v
    return decided
