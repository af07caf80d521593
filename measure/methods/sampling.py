"""Which rows a cell reads: its training sample and the capped rows of each target.

A cell is a pure function of its config (and the data): the seed fixes which examples
are drawn, so the local and Ray engines — and every method — read identical rows for the
same config. Evaluation rows are fixed across cells (``EVAL_CAP_SEED``), so all methods
and all source sets are scored on exactly the same target rows; so are the parts of a
split (``PART_SEED``), which the profile builder (``measure.profile_protocols``) reads too,
so a profile can be built from one part and scored against the other. A cell's target
shots (few-shot target pairs) are drawn first, with its seed, and its sources avoid them
where the shot split is a translation of the pool (same pair ids).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from measure.cell import PART_LETTERS, CellSpec, Target, parse_shot_key, part_split_name
from measure.data import load_parquet_split

EVAL_CAP_SEED = 12345  # every cell evaluates on the same capped subset of a target
PART_SEED = 20260      # every cell (and every profile) cuts a split into the same parts
SHOT_STREAM = 11       # the shots' random stream: np.random.default_rng([seed, SHOT_STREAM])


@lru_cache(maxsize=64)
def load_split(data_dir: str, dataset: str, language: str, split: str) -> pd.DataFrame:
    """A split as a frame, memoised per process (cells of a batch share their targets)."""
    return load_parquet_split(data_dir, dataset, language, split)


def sample_training(cell: CellSpec, data_dir: str) -> list[tuple[str, np.ndarray]]:
    """[(language, row indices)] for the cell's train_config.

    Fixed-total budgets on a parallel pool (XNLI, XNLI-MT: same pair_id = same example
    translated) draw *disjoint* pair_ids across languages, so N examples are N distinct
    meanings; per-language budgets draw independently per language. The rows the cell's
    target shots take from a translation of a source's split (the same pair ids) are left
    out first (:func:`shot_rows_in_pool`), so shots and sources are distinct meanings too.
    """
    rng = np.random.default_rng(int(cell.seed))
    ds, split = cell.train_dataset, cell.train_split
    tc = {lang: n for lang, n in sorted(cell.train_config.items()) if n > 0}
    frames = {lang: load_split(data_dir, ds, lang, split) for lang in tc}
    taken = shot_rows_in_pool(cell, data_dir, frames)
    out: list[tuple[str, np.ndarray]] = []
    ids = [tuple(f["pair_id"]) for f in frames.values()]
    parallel = len(frames) > 1 and all(i == ids[0] for i in ids)
    if cell.regime == "fixed_total" and parallel:
        size = len(next(iter(frames.values())))
        free = _free_rows(size, taken[next(iter(tc))])
        perm = rng.permutation(size) if free is None else free[rng.permutation(len(free))]
        start = 0
        for lang, n in tc.items():
            out.append((lang, np.sort(perm[start:start + n])))
            start += n
        return out
    for lang, n in tc.items():
        size = len(frames[lang])
        free = _free_rows(size, taken[lang])
        if free is None:
            idx = np.arange(size) if n >= size else np.sort(rng.choice(size, n, replace=False))
        else:
            idx = free if n >= len(free) else np.sort(rng.choice(free, n, replace=False))
        out.append((lang, idx))
    return out


def _free_rows(size: int, taken: np.ndarray) -> np.ndarray | None:
    """The rows not ``taken``; None when none is (the draw then is exactly as before)."""
    return None if not len(taken) else np.setdiff1d(np.arange(size), taken)


def shot_rows_in_pool(cell: CellSpec, data_dir: str,
                      frames: dict[str, pd.DataFrame]) -> dict[str, np.ndarray]:
    """{source language: the row positions of its pool split that the cell's target shots
    take}: a shot split with the same pair ids as the source's split is a translation of
    it (a target's own XNLI validation split, for the XNLI validation pool)."""
    shots = sample_shots(cell, data_dir)
    out = {}
    for lang, frame in frames.items():
        ids = frame["pair_id"].to_numpy()
        rows = [idx for ds, slang, split, idx in shots if np.array_equal(
            load_split(data_dir, ds, slang, split)["pair_id"].to_numpy(), ids)]
        out[lang] = np.unique(np.concatenate(rows)) if rows else np.zeros(0, dtype=np.int64)
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


def part_indices(frame: pd.DataFrame, part: str, n_parts: int = 2) -> np.ndarray:
    """Row positions of part ``part`` (a letter: A, B, ...) of ``frame`` cut in ``n_parts``.

    Why by item: the pairs that share a premise (an NLI item: one premise, a hypothesis per
    label) go to the same part, so a profile built from one part reads no premise that the
    other part is scored on. Label-stratified: items are grouped by their labels (in
    XNLI and AmericasNLI nearly every premise has one pair per label) and each group's
    items, ordered by their first pair_id and shuffled with ``PART_SEED``, are dealt to the
    parts in turn (one running count over the groups), so the parts differ by at most one
    item per label group. The parts are disjoint and cover the frame; the cut depends on
    the frame only (the same for every cell, every method and the profile builder).
    """
    if not 2 <= n_parts <= len(PART_LETTERS):
        raise ValueError(f"n_parts = {n_parts}: a split is cut in 2..{len(PART_LETTERS)} parts")
    letters = PART_LETTERS[:n_parts]
    if part not in letters:
        raise ValueError(f"part {part!r}: use one of {', '.join(letters)}")
    premises = [" ".join(str(p).split()) for p in frame["premise"]]
    items: dict[str, list[int]] = {}
    for row, premise in enumerate(premises):
        items.setdefault(premise, []).append(row)
    labels, pair_ids = frame["label"].to_numpy(), frame["pair_id"].to_numpy()
    groups: dict[tuple[int, ...], list[list[int]]] = {}
    for rows in items.values():
        groups.setdefault(tuple(sorted(labels[rows].tolist())), []).append(rows)
    rng = np.random.default_rng(PART_SEED)
    mine: list[int] = []
    dealt = 0
    for signature in sorted(groups):
        members = sorted(groups[signature], key=lambda rows: int(pair_ids[rows].min()))
        for j in rng.permutation(len(members)):
            if letters[dealt % n_parts] == part:
                mine.extend(members[j])
            dealt += 1
    return np.sort(np.asarray(mine, dtype=np.int64))


def target_splits(tgt: Target, frame: pd.DataFrame, cap: int) -> list[tuple[str, np.ndarray]]:
    """[(target split name, row positions)] a target language is scored on: the capped
    split, or each part of it (capped within the part) under its part name."""
    if not tgt.parts:
        return [(tgt.split, eval_indices(frame, cap))]
    out = []
    for letter in tgt.part_letters:
        rows = part_indices(frame, letter, tgt.parts)
        out.append((part_split_name(tgt.split, letter, tgt.parts),
                    rows[eval_indices(frame.iloc[rows], cap)]))
    return out


def target_rows(cell: CellSpec, data_dir: str) -> list[tuple[str, str, str, pd.DataFrame]]:
    """[(dataset, language, split, rows)] for every target language (and part) of the
    cell, capped. The same rows for every cell with the same targets and cap, so they are
    cut once per process (a grid's cells share them); treat the frames as read-only."""
    return list(_target_rows(data_dir, tuple(cell.targets), int(cell.eval_cap)))


@lru_cache(maxsize=16)
def _target_rows(data_dir: str, targets: tuple[Target, ...],
                 eval_cap: int) -> tuple[tuple[str, str, str, pd.DataFrame], ...]:
    out = []
    for tgt in targets:
        for lang in tgt.languages:
            frame = load_split(data_dir, tgt.dataset, lang, tgt.split)
            out += [(tgt.dataset, lang, name, frame.iloc[idx])
                    for name, idx in target_splits(tgt, frame, eval_cap)]
    return tuple(out)


def balanced_draw(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` sorted row positions drawn without replacement, balanced over the labels as
    far as the rows allow: 25 shots hold 9/8/8 of the three labels, not whatever a plain
    draw gives."""
    if n > len(labels):
        raise ValueError(f"cannot draw {n} rows from {len(labels)}")
    pools = [np.flatnonzero(labels == lab) for lab in np.unique(labels)]
    take = [0] * len(pools)
    left = n
    while left:             # deal one row at a time to the labels that still have rows
        open_ = [i for i, p in enumerate(pools) if take[i] < len(p)]
        for i in open_[:left]:
            take[i] += 1
        left -= min(left, len(open_))
    picks = [rng.choice(p, t, replace=False) for p, t in zip(pools, take) if t]
    return np.sort(np.concatenate(picks)) if picks else np.zeros(0, dtype=np.int64)


def sample_shots(cell: CellSpec, data_dir: str) -> list[tuple[str, str, str, np.ndarray]]:
    """[(dataset, language, split, row positions)] of the cell's target shots, drawn first:
    balanced over the labels (:func:`balanced_draw`) with the cell's seed (its own stream,
    ``SHOT_STREAM``) from the whole shot split. The sources then avoid these rows where
    their split is a translation of the shot split (:func:`shot_rows_in_pool`).
    AmericasNLI validation translates XNLI validation items without sharing their pair ids,
    so its shots may repeat a source example's meaning in another language.
    """
    rng = np.random.default_rng([int(cell.seed), SHOT_STREAM])
    out = []
    for key, n in sorted(cell.target_shots.items()):
        if n > 0:
            ds, split, lang = parse_shot_key(key)
            labels = load_split(data_dir, ds, lang, split)["label"].to_numpy()
            out.append((ds, lang, split, balanced_draw(labels, n, rng)))
    return out


def training_frames(cell: CellSpec, data_dir: str,
                    drawn: list[tuple[str, np.ndarray]]) -> list[pd.DataFrame]:
    """The sampled training rows of each source language, in ``drawn`` order, then the
    cell's target shots (:func:`sample_shots`)."""
    return ([load_split(data_dir, cell.train_dataset, lang, cell.train_split).iloc[idx]
             for lang, idx in drawn]
            + [load_split(data_dir, ds, lang, split).iloc[idx]
               for ds, lang, split, idx in sample_shots(cell, data_dir)])
