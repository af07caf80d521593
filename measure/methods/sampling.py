"""Which rows a cell reads: its training sample and the capped rows of each target.

A cell is a pure function of its config (and the data): the seed fixes which examples
are drawn, so the local and Ray engines — and every method — read identical rows for the
same config. Evaluation rows are fixed across cells (``EVAL_CAP_SEED``), so all methods
and all source sets are scored on exactly the same target rows.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from measure.cell import CellSpec
from measure.data import load_parquet_split

EVAL_CAP_SEED = 12345  # every cell evaluates on the same capped subset of a target


@lru_cache(maxsize=64)
def load_split(data_dir: str, dataset: str, language: str, split: str) -> pd.DataFrame:
    """A split as a frame, memoised per process (cells of a batch share their targets)."""
    return load_parquet_split(data_dir, dataset, language, split)


def sample_training(cell: CellSpec, data_dir: str) -> list[tuple[str, np.ndarray]]:
    """[(language, row indices)] for the cell's train_config.

    Fixed-total budgets on a parallel pool (XNLI, XNLI-MT: same pair_id = same example
    translated) draw *disjoint* pair_ids across languages, so N examples are N distinct
    meanings; per-language budgets draw independently per language.
    """
    rng = np.random.default_rng(int(cell.seed))
    ds, split = cell.train_dataset, cell.train_split
    tc = {lang: n for lang, n in sorted(cell.train_config.items()) if n > 0}
    frames = {lang: load_split(data_dir, ds, lang, split) for lang in tc}
    out: list[tuple[str, np.ndarray]] = []
    ids = [tuple(f["pair_id"]) for f in frames.values()]
    parallel = len(frames) > 1 and all(i == ids[0] for i in ids)
    if cell.regime == "fixed_total" and parallel:
        perm = rng.permutation(len(next(iter(frames.values()))))
        start = 0
        for lang, n in tc.items():
            out.append((lang, np.sort(perm[start:start + n])))
            start += n
        return out
    for lang, n in tc.items():
        size = len(frames[lang])
        idx = np.arange(size) if n >= size else np.sort(rng.choice(size, n, replace=False))
        out.append((lang, idx))
    return out


def eval_indices(frame: pd.DataFrame, cap: int) -> np.ndarray:
    """All rows, or a label-stratified subset of ``cap`` rows fixed across cells."""
    if not cap or cap >= len(frame):
        return np.arange(len(frame))
    rng = np.random.default_rng(EVAL_CAP_SEED)
    labels = frame["label"].to_numpy()
    picks = []
    for lab in (0, 1, 2):
        pool = np.flatnonzero(labels == lab)
        take = int(round(cap * len(pool) / len(frame)))
        picks.append(rng.choice(pool, min(take, len(pool)), replace=False))
    return np.sort(np.concatenate(picks))


def target_rows(cell: CellSpec, data_dir: str) -> list[tuple[str, str, str, pd.DataFrame]]:
    """[(dataset, language, split, rows)] for every target language of the cell, capped."""
    out = []
    for tgt in cell.targets:
        for lang in tgt.languages:
            frame = load_split(data_dir, tgt.dataset, lang, tgt.split)
            out.append((tgt.dataset, lang, tgt.split, frame.iloc[eval_indices(frame, cell.eval_cap)]))
    return out


def training_frames(cell: CellSpec, data_dir: str,
                    drawn: list[tuple[str, np.ndarray]]) -> list[pd.DataFrame]:
    """The sampled training rows of each source language, in ``drawn`` order."""
    return [load_split(data_dir, cell.train_dataset, lang, cell.train_split).iloc[idx]
            for lang, idx in drawn]
