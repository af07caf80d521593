"""Fit the shipped predictor: data -> grouped CV -> model choice -> intervals -> refit -> save.

Why one function: ``xlt-predict fit`` and tests must produce the same artefact, and the
order matters -- the model is chosen and the intervals are calibrated on the
*unseen-target* out-of-fold predictions before the final refit on all rows.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from predictor import dataset, intervals, persist
from predictor.features import FEATURES, describe
from predictor.models import BASELINES, make_candidates
from predictor.validation import (PROTOCOLS, SELECTION_PROTOCOL, CVResult, cross_validate,
                                  protocol_splits, select_model)


def scale_model() -> Any:
    """Model of the absolute unseen-target residual (for normalised intervals)."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.pipeline import Pipeline

    from predictor.features import TransferFeatures
    return Pipeline([("features", TransferFeatures()),
                     ("reg", RandomForestRegressor(n_estimators=100, min_samples_leaf=20,
                                                   max_features=0.5, random_state=0, n_jobs=1))])


def _oof_scale(frame: pd.DataFrame, abs_resid: np.ndarray) -> np.ndarray:
    out = np.full(len(frame), np.nan)
    with threadpool_limits(limits=1):
        for train, test in protocol_splits(frame, SELECTION_PROTOCOL):
            m = scale_model().fit(frame.iloc[train], abs_resid[train])
            out[test] = m.predict(frame.iloc[test])
    return out


def fit_predictor(frame: pd.DataFrame, out_dir: str | Path, *, candidates: Sequence[str] | None = None,
                  protocols: Sequence[str] = PROTOCOLS, alpha: float = 0.1,
                  normalized_intervals: bool = False, seed: int = 0,
                  sources: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run CV, pick the model by unseen-target MAE, calibrate intervals, refit, save. Returns the card."""
    t0 = time.perf_counter()
    all_cands = make_candidates(seed)
    names = list(all_cands) if candidates is None else list(candidates)
    unknown = [n for n in names if n not in all_cands]
    if unknown:
        raise ValueError(f"unknown candidate models {unknown}; choose from {sorted(all_cands)}")
    if SELECTION_PROTOCOL not in protocols:
        protocols = [SELECTION_PROTOCOL, *protocols]
    cv: CVResult = cross_validate(frame, {n: all_cands[n] for n in names}, protocols=protocols,
                                  seed=seed)
    chosen = select_model(cv.table)
    y = frame["score"].to_numpy(float)
    oof = cv.oof[(SELECTION_PROTOCOL, chosen)]
    groups = frame["target_iso3"].astype(str).to_numpy()
    scale_oof = None
    scale_est = None
    if normalized_intervals:
        scale_oof = _oof_scale(frame, np.abs(y - oof))
    calib = intervals.calibrate(y, oof, groups, alpha=alpha, scale=scale_oof)
    model_keys = (frame["model"].astype(str) + "|" + frame["method"].astype(str)).to_numpy()
    by_model = intervals.calibrate_by_model(y, oof, groups, model_keys, alpha=alpha,
                                            scale=scale_oof)
    with threadpool_limits(limits=1):  # see validation.cross_validate
        final = all_cands[chosen]().fit(frame, y)
        if normalized_intervals:
            scale_est = scale_model().fit(frame, np.abs(y - oof))
    feature_names: list[str] = []
    if hasattr(final, "named_steps") and "features" in final.named_steps:
        feature_names = list(final.named_steps["features"].get_feature_names_out())
    card = {
        "created_unix": int(time.time()),
        "task": "xnli",
        "score_scale": "0-100 (the model's metric: accuracy for SumEval models, macro-F1 own)",
        "selected_model": chosen,
        "selection": f"lowest MAE under the {SELECTION_PROTOCOL} protocol",
        "candidates": names,
        "baselines": [b for b in BASELINES if b in names],
        "training_data": {
            "fingerprint_sha256": dataset.fingerprint(frame),
            "rows": int(len(frame)),
            "by_origin": {str(k): int(v) for k, v in frame["origin"].value_counts().items()},
            "targets": sorted(frame["target"].unique().tolist()),
            "configs": int(frame["config_id"].nunique()),
            **(sources or {}),
        },
        "models": dataset.model_catalogue(frame),
        "features": [{"name": n, "description": describe(n)} for n in feature_names],
        "feature_docs": FEATURES,
        "cv": cv.table.to_dict("records"),
        "intervals": {**calib.to_dict(), "protocol": SELECTION_PROTOCOL,
                      "by_model": {k: c.to_dict() for k, c in by_model.items()}},
        "fit_seconds": round(time.perf_counter() - t0, 1),
    }
    persist.save({"point": final, "scale": scale_est}, out_dir, card)
    return persist.read_card(out_dir)
