"""Split-conformal prediction intervals from unseen-target cross-validation residuals.

Why these residuals: an interval for a language the model has never seen must be as
wide as the errors on *held-out languages*, not on held-out rows of known languages
(which are far smaller). The residuals come from leave-one-target-out CV, the
quantile is the finite-sample conformal one, and coverage is checked honestly: each
target language in turn is left out of the calibration set and the coverage of its
own residuals is measured (``heldout_coverage``). Residuals of one language are
correlated (a language is easy or hard for every configuration), so per-language
coverage varies; the card reports the mean and the worst language.

Per model: residuals of different models (and metrics: SumEval accuracy, own macro-F1)
have different spreads, so ``calibrate_by_model`` also calibrates each (model, method)
with enough rows on its own residuals; other rows use the pooled quantile.

Optionally normalised: with a per-row ``scale`` (an estimate of how hard the row is,
e.g. a model of the absolute residual), the quantile is taken of ``|r| / scale`` and
the interval is ``prediction +- q * scale``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

SCORE_MIN, SCORE_MAX = 0.0, 100.0
MIN_SCALE = 0.25  # points; keeps normalised intervals from collapsing to zero width


def conformal_quantile(nonconformity: np.ndarray, alpha: float) -> float:
    """The ceil((n+1)(1-alpha))/n empirical quantile (inf when n is too small)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    s = np.sort(np.asarray(nonconformity, dtype=float))
    n = len(s)
    rank = math.ceil((n + 1) * (1 - alpha))
    if n == 0 or rank > n:
        return math.inf
    return float(s[rank - 1])


@dataclass
class IntervalCalibration:
    """What the model card stores about the intervals."""

    alpha: float
    quantile: float
    normalized: bool
    n_calibration: int
    heldout_coverage: float          # pooled over rows, each language calibrated without itself
    heldout_coverage_mean_group: float
    heldout_coverage_min_group: float
    worst_group: str
    mean_width: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _nonconformity(y: np.ndarray, pred: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
    r = np.abs(np.asarray(y, float) - np.asarray(pred, float))
    return r if scale is None else r / np.maximum(np.asarray(scale, float), MIN_SCALE)


def calibrate(y: np.ndarray, oof_pred: np.ndarray, groups: np.ndarray, *, alpha: float = 0.1,
              scale: np.ndarray | None = None) -> IntervalCalibration:
    """Conformal quantile from out-of-fold residuals, with leave-one-group-out coverage."""
    y = np.asarray(y, float)
    oof_pred = np.asarray(oof_pred, float)
    groups = np.asarray(groups).astype(str)
    if np.isnan(oof_pred).any():
        raise ValueError("out-of-fold predictions contain NaN: every row must be predicted "
                         "by a fold that did not train on it")
    s = _nonconformity(y, oof_pred, scale)
    q = conformal_quantile(s, alpha)
    covered = np.zeros(len(y), dtype=bool)
    per_group: dict[str, float] = {}
    for g in np.unique(groups):
        held = groups == g
        q_g = conformal_quantile(s[~held], alpha)
        covered[held] = s[held] <= q_g
        per_group[g] = float(covered[held].mean())
    worst = min(per_group, key=per_group.get)
    widths = 2 * q * (np.ones_like(y) if scale is None else np.maximum(scale, MIN_SCALE))
    return IntervalCalibration(
        alpha=alpha, quantile=q, normalized=scale is not None, n_calibration=len(y),
        heldout_coverage=float(covered.mean()),
        heldout_coverage_mean_group=float(np.mean(list(per_group.values()))),
        heldout_coverage_min_group=per_group[worst], worst_group=worst,
        mean_width=float(np.mean(widths)))


def intervals(pred: np.ndarray, quantile: float | np.ndarray, scale: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prediction, lower, upper), all clipped to the 0-100 score scale (quantile per row or one)."""
    pred = np.asarray(pred, float)
    half = quantile * (1.0 if scale is None else np.maximum(np.asarray(scale, float), MIN_SCALE))
    lo, hi = pred - half, pred + half
    return (np.clip(pred, SCORE_MIN, SCORE_MAX), np.clip(lo, SCORE_MIN, SCORE_MAX),
            np.clip(hi, SCORE_MIN, SCORE_MAX))


MIN_ROWS_PER_MODEL = 50
MIN_GROUPS_PER_MODEL = 3


def calibrate_by_model(y: np.ndarray, oof_pred: np.ndarray, groups: np.ndarray,
                       keys: np.ndarray, *, alpha: float = 0.1,
                       scale: np.ndarray | None = None) -> dict[str, IntervalCalibration]:
    """One calibration per key (e.g. 'xlmr|finetune') with enough rows and target groups."""
    keys = np.asarray(keys).astype(str)
    groups = np.asarray(groups).astype(str)
    out: dict[str, IntervalCalibration] = {}
    for key in np.unique(keys):
        m = keys == key
        if m.sum() < MIN_ROWS_PER_MODEL or len(np.unique(groups[m])) < MIN_GROUPS_PER_MODEL:
            continue
        out[key] = calibrate(np.asarray(y)[m], np.asarray(oof_pred)[m], groups[m], alpha=alpha,
                             scale=None if scale is None else np.asarray(scale)[m])
    return out
