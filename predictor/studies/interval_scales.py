"""Locally scaled intervals: would a per-row scale lift the worst-covered targets?

Why: the shipped 90% intervals are one half-width per (model, pretraining class) group, so a
target whose every score sits far from the prediction (T-ULRv6 Urdu, XLM-R Russian, Aymara)
is covered almost nowhere while the group as a whole is covered 0.88-0.96. Normalised
conformal prediction (Papadopoulos et al. 2008; Lei et al. 2018) divides each residual by a
scale known at prediction time and multiplies the calibrated quantile back by it, so rows the
scale marks as hard get wider intervals. The scales tried here are disagreements between the
model and a comparator fitted on the same folds (and the spread of the inner CV's best
specs), each with the group's median scale added so no row gets a zero width:

    nonconformity = |y - model| / (s + median(s));  half-width = q * (s + median(s))

Calibration and coverage as the card's (``predictor.intervals``): per group, each target
left out in turn, target-weighted quantile of the others. **Post hoc**: the scales were
chosen after seeing the out-of-fold residuals of ``predictor.studies.spec_averaging``, on
the same targets; a scale that looks good here would need its own nested check before it
could ship.

    python -m predictor.studies.interval_scales /tmp/spec-averaging.oof.parquet
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from predictor.intervals import target_weighted_quantile

MODEL = "min+within"
#: scale name -> comparator columns whose absolute disagreement with the model is the scale
#: (several: their mean); "constant" is the shipped interval
SCALES: dict[str, tuple[str, ...]] = {
    "constant": (),
    "vs entropy OLS": ("entropy_ols",),
    "vs relatives (geographic)": ("relatives_geographic",),
    "vs entropy OLS + relatives": ("entropy_ols", "relatives_geographic"),
    "vs five comparators": ("entropy_ols", "relatives_geographic", "relatives_model",
                            "class_config", "litmus_gbm"),
    "spread of the top-5 specs": ("sd-top5",),
}


def scale_of(oof: pd.DataFrame, columns: Sequence[str], model: str = MODEL) -> np.ndarray:
    """The per-row scale: 1 for none, a spread column as it is, else the mean absolute
    disagreement between the model and the comparators."""
    if not columns:
        return np.ones(len(oof))
    if len(columns) == 1 and columns[0].startswith("sd-"):
        return oof[columns[0]].to_numpy(float)
    pred = oof[model].to_numpy(float)
    return np.mean([np.abs(pred - oof[c].to_numpy(float)) for c in columns], axis=0)


def scaled_coverage(y: np.ndarray, pred: np.ndarray, scale: np.ndarray, targets: np.ndarray,
                    alpha: float = 0.1) -> dict[str, Any]:
    """Held-out coverage of one group: each target left out of the quantile in turn."""
    s = scale + (np.median(scale) if np.ptp(scale) > 0 else 0.0)
    resid = np.abs(y - pred)
    nc = resid / s
    per_target, widths = {}, []
    for t in np.unique(targets):
        out = targets == t
        q = target_weighted_quantile(nc[~out], targets[~out], alpha)
        half = q * s[out]
        per_target[str(t)] = float((resid[out] <= half).mean())
        widths.append(float(np.mean(half)))
    worst = min(per_target, key=per_target.__getitem__)
    return {"coverage": float(np.mean(list(per_target.values()))), "worst_target": worst,
            "worst_coverage": per_target[worst], "mean_half_width": float(np.mean(widths)),
            "per_target": per_target}


def study(oof: pd.DataFrame, alpha: float = 0.1) -> dict[str, dict[str, Any]]:
    """{scale: {group: scaled_coverage}} for every scale whose columns the table has."""
    out: dict[str, dict[str, Any]] = {}
    for name, cols in SCALES.items():
        if not set(cols) <= set(oof.columns):
            continue
        scale = scale_of(oof, cols)
        groups = {}
        for (mm, pclass), g in oof.groupby(["mm", "pclass"]):
            i = g.index.to_numpy()
            groups[f"{mm.split('|')[0]} · {pclass}"] = scaled_coverage(
                oof["y"].to_numpy(float)[i], oof[MODEL].to_numpy(float)[i], scale[i],
                g["target"].to_numpy().astype(str), alpha)
        out[name] = groups
    return out


def table(result: dict[str, dict[str, Any]]) -> str:
    groups = list(next(iter(result.values())))
    lines = ["| scale | " + " | ".join(groups) + " |", "| --- |" + " --- |" * len(groups)]
    for name, g in result.items():
        lines.append(f"| {name} | " + " | ".join(
            f"{v['coverage']:.3f}, worst {v['worst_target']} {v['worst_coverage']:.2f}, "
            f"± {v['mean_half_width']:.2f}" for v in g.values()) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m predictor.studies.interval_scales",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("oof", type=Path, help="out-of-fold table of predictor.studies."
                                           "spec_averaging (its --out with .oof.parquet)")
    ap.add_argument("--out", type=Path, default=None, help="also write the result as JSON")
    args = ap.parse_args(argv)
    if not args.oof.is_file():
        ap.error(f"{args.oof}: no such file (run python -m predictor.studies.spec_averaging "
                 "--out FILE.json first)")
    oof = pd.read_parquet(args.oof)
    missing = {"mm", "pclass", "target", "y", MODEL} - set(oof.columns)
    if missing:
        ap.error(f"{args.oof}: lacks columns {sorted(missing)}; not a spec_averaging table")
    result = study(oof.reset_index(drop=True))
    print(table(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
