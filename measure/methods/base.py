"""The method interface: what every method is given, what it must return, how it is scored.

A method is a module with a params class (its config table, validated before any work)
and ``run(cell, ctx) -> CellRecord``; ``measure.methods.registry`` lists them. Everything
every method shares lives here so no method imports another: the metric (``score``),
scoring every target on the same rows (``evaluate_targets``), the record of a finished
cell (``finish``) and the run context.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from measure.cell import CellRecord, CellSpec, TargetResult
from measure.items import ItemPredictions
from measure.knowledge.nli import LABELS as NLI_LABELS
from measure.methods.sampling import target_rows

LABELS = tuple(range(len(NLI_LABELS)))  # label indices, in measure.knowledge.nli.LABELS order


@dataclass(frozen=True)
class RunContext:
    """Where a cell reads from: the NLI data, and (probe) the embedding cache and the key
    of the encoder whose vectors it holds. Training methods read only ``data_dir``."""

    data_dir: str
    cache_path: str = ""
    encoder_key: str = ""


def score(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Macro-F1 and accuracy on the 0–100 scale, plus the 3×3 confusion matrix (rows = gold).

    Computed from the confusion counts with numpy, as scikit-learn's ``f1_score(average=
    "macro", labels=LABELS, zero_division=0)`` defines it (per label 2·tp / (gold + predicted),
    0 when a label is neither gold nor predicted; their plain mean): the same figures, at a
    fraction of the cost of sklearn's input validation, which a grid pays 25 times a cell."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    k = len(LABELS)
    for name, y in (("gold", y_true), ("predicted", y_pred)):
        if len(y) and (y.dtype.kind not in "iub" or y.min() < 0 or y.max() >= k):
            raise ValueError(f"{name} labels must be integers in 0..{k - 1}")
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} gold labels but {len(y_pred)} predictions")
    counts = np.bincount(k * y_true.astype(np.int64) + y_pred.astype(np.int64),
                         minlength=k * k).reshape(k, k)
    tp = np.diag(counts).astype(np.float64)
    denom = counts.sum(axis=1) + counts.sum(axis=0)
    f1 = np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)
    return {
        "macro_f1": 100.0 * float(np.mean(f1)),
        "accuracy": 100.0 * float(np.mean(y_true == y_pred)) if len(y_true) else 0.0,
        "n": int(len(y_true)),
        "confusion": counts.tolist(),
    }


def evaluate_targets(cell: CellSpec, data_dir: str,
                     predict: Callable[[pd.DataFrame], np.ndarray]) -> list[TargetResult]:
    """Score every target of a cell: ``predict`` maps the (capped) target rows to labels.

    Shared by all methods, so every method evaluates on exactly the same rows.
    """
    results = []
    for dataset, lang, split, rows in target_rows(cell, data_dir):
        t0 = time.time()
        gold, predicted = rows["label"].to_numpy(), np.asarray(predict(rows))
        s = score(gold, predicted)
        items = ItemPredictions.of(rows["pair_id"].to_numpy(), gold, predicted)
        results.append(TargetResult(dataset, lang, split, s["macro_f1"], s["accuracy"], s["n"],
                                    s["confusion"], eval_seconds=time.time() - t0, items=items))
    return results


def finish(cell: CellSpec, ctx: RunContext, started: float, train_seconds: float,
           predict: Callable[[pd.DataFrame], np.ndarray],
           eval_started: float | None = None) -> CellRecord:
    """The epilogue every method shares: score the targets with ``predict``, time it, record.

    ``eval_started``: when evaluation began, if preparing ``predict`` (an ONNX export)
    counts as evaluation time; default now."""
    t_eval = eval_started or time.time()
    results = evaluate_targets(cell, ctx.data_dir, predict)
    return CellRecord(config=cell, results=results, started_at=started, finished_at=time.time(),
                      train_seconds=train_seconds, eval_seconds=time.time() - t_eval)
