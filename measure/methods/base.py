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
from sklearn.metrics import confusion_matrix, f1_score

from measure.cell import CellRecord, CellSpec, TargetResult
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
    """Macro-F1 and accuracy on the 0–100 scale, plus the 3×3 confusion matrix (rows = gold)."""
    return {
        "macro_f1": 100.0 * float(f1_score(y_true, y_pred, average="macro", labels=list(LABELS),
                                           zero_division=0)),
        "accuracy": 100.0 * float(np.mean(y_true == y_pred)),
        "n": int(len(y_true)),
        "confusion": confusion_matrix(y_true, y_pred, labels=list(LABELS)).tolist(),
    }


def evaluate_targets(cell: CellSpec, data_dir: str,
                     predict: Callable[[pd.DataFrame], np.ndarray]) -> list[TargetResult]:
    """Score every target of a cell: ``predict`` maps the (capped) target rows to labels.

    Shared by all methods, so every method evaluates on exactly the same rows.
    """
    results = []
    for dataset, lang, split, rows in target_rows(cell, data_dir):
        t0 = time.time()
        s = score(rows["label"].to_numpy(), predict(rows))
        results.append(TargetResult(dataset, lang, split, s["macro_f1"], s["accuracy"], s["n"],
                                    s["confusion"], eval_seconds=time.time() - t0))
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
