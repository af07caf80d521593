"""Run one measurement cell: sample the training data, fit, evaluate every target.

A cell is a pure function of its config (and the data): the seed fixes which examples
are drawn, so the local and Ray engines produce identical rows for the same config.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from measure.data import load_parquet_split
from measure.probe import score
from measure.store import CellRecord, TargetResult

EVAL_CAP_SEED = 12345  # every cell evaluates on the same capped subset of a target


@lru_cache(maxsize=64)
def load_split(data_dir: str, dataset: str, language: str, split: str) -> pd.DataFrame:
    return load_parquet_split(data_dir, dataset, language, split)


def sample_training(cell: dict[str, Any], data_dir: str) -> list[tuple[str, np.ndarray]]:
    """[(language, row indices)] for the cell's train_config.

    Fixed-total budgets on a parallel pool (XNLI, XNLI-MT: same pair_id = same example
    translated) draw *disjoint* pair_ids across languages, so N examples are N distinct
    meanings; per-language budgets draw independently per language.
    """
    rng = np.random.default_rng(int(cell["seed"]))
    ds, split = cell["train_dataset"], cell["train_split"]
    tc = {lang: n for lang, n in sorted(cell["train_config"].items()) if n > 0}
    frames = {lang: load_split(data_dir, ds, lang, split) for lang in tc}
    out: list[tuple[str, np.ndarray]] = []
    ids = [tuple(f["pair_id"]) for f in frames.values()]
    parallel = len(frames) > 1 and all(i == ids[0] for i in ids)
    if cell["regime"] == "fixed_total" and parallel:
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


_MEMO: dict[tuple[str, str, str], np.ndarray] = {}


def vectors(cache_path: str, encoder_key: str, texts: list[str]) -> np.ndarray:
    """Cached embeddings of ``texts``, memoised per worker process (cells share targets).

    The memo is keyed by the cache file too: dynamic int8 quantisation computes activation
    scales per batch, so the same text encoded in another run's batches can differ in the
    last digits, and each cache must be served exactly as stored.
    """
    from measure.embcache import EmbeddingCache
    cache_path = str(cache_path)
    missing = [t for t in dict.fromkeys(texts) if (cache_path, encoder_key, t) not in _MEMO]
    if missing:
        with EmbeddingCache(cache_path, encoder_key) as cache:
            for t, vec in zip(missing, cache.get(missing)):
                _MEMO[(cache_path, encoder_key, t)] = vec
    return np.stack([_MEMO[(cache_path, encoder_key, t)] for t in texts])


def split_vectors(cache_path: str, encoder_key: str, data_dir: str, dataset: str,
                  language: str, split: str, idx: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(premise, hypothesis) embeddings of a split's rows ``idx`` (all rows when None)."""
    frame = load_split(data_dir, dataset, language, split)
    return pair_vectors(cache_path, encoder_key, frame if idx is None else frame.iloc[idx])


def pair_vectors(cache_path: str, encoder_key: str,
                 frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(premise, hypothesis) embeddings of ``frame``'s rows, from the cache."""
    return (vectors(cache_path, encoder_key, frame["premise"].tolist()),
            vectors(cache_path, encoder_key, frame["hypothesis"].tolist()))


def evaluate_targets(cell: dict[str, Any], data_dir: str,
                     predict: Callable[[pd.DataFrame], np.ndarray]) -> list[TargetResult]:
    """Score every target of a cell: ``predict`` maps the (capped) target rows to labels.

    Shared by all methods, so every method evaluates on exactly the same rows.
    """
    results = []
    for tgt in cell["targets"]:
        for lang in tgt["languages"]:
            t0 = time.time()
            frame = load_split(data_dir, tgt["dataset"], lang, tgt["split"])
            rows = frame.iloc[eval_indices(frame, int(cell.get("eval_cap", 0)))]
            s = score(rows["label"].to_numpy(), predict(rows))
            results.append(TargetResult(tgt["dataset"], lang, tgt["split"], s["macro_f1"],
                                        s["accuracy"], s["n"], s["confusion"],
                                        eval_seconds=time.time() - t0))
    return results


def run_probe_cell(cell: dict[str, Any], data_dir: str, cache_path: str,
                   encoder_key: str) -> CellRecord:
    """Fit the probe on the sampled sources; score every target. Embeddings must be cached."""
    from measure.probe import make_classifier, pair_features

    started = time.time()
    feats, labels = [], []
    for lang, idx in sample_training(cell, data_dir):
        ds, split = cell["train_dataset"], cell["train_split"]
        u, v = split_vectors(cache_path, encoder_key, data_dir, ds, lang, split, idx)
        feats.append(pair_features(u, v))
        labels.append(load_split(data_dir, ds, lang, split)["label"].to_numpy()[idx])
    X, y = np.vstack(feats), np.concatenate(labels)
    clf = make_classifier(cell.get("params", {}), int(cell["seed"]))
    # One BLAS thread, always: lbfgs on these features is sensitive to summation order, so
    # the thread count would otherwise change the scores (local vs Ray vs another machine).
    with threadpool_limits(1):
        clf.fit(X, y)
        train_seconds = time.time() - started

        t_eval = time.time()
        results = evaluate_targets(cell, data_dir, lambda f: clf.predict(pair_features(
            *pair_vectors(cache_path, encoder_key, f))))
    return CellRecord(config=cell, results=results, started_at=started, finished_at=time.time(),
                      train_seconds=train_seconds, eval_seconds=time.time() - t_eval)


def texts_for_batch(cells: list[dict[str, Any]], data_dir: str) -> list[str]:
    """Every premise and hypothesis the batch's cells will read, deduplicated.

    Only the rows a cell actually samples (training) or scores (capped targets) are
    listed, so a small budget drawn from a big pool does not embed the whole pool.
    """
    rows: dict[tuple[str, str, str], set[int]] = {}
    for cell in cells:
        for lang, idx in sample_training(cell, data_dir):
            rows.setdefault((cell["train_dataset"], lang, cell["train_split"]), set()).update(idx.tolist())
        for tgt in cell["targets"]:
            for lang in tgt["languages"]:
                frame = load_split(data_dir, tgt["dataset"], lang, tgt["split"])
                idx = eval_indices(frame, int(cell.get("eval_cap", 0)))
                rows.setdefault((tgt["dataset"], lang, tgt["split"]), set()).update(idx.tolist())
    texts: dict[str, None] = {}
    for (ds, lang, split), idx in sorted(rows.items()):
        f = load_split(data_dir, ds, lang, split).iloc[sorted(idx)]
        texts.update(dict.fromkeys(f["premise"]))
        texts.update(dict.fromkeys(f["hypothesis"]))
    return list(texts)


def default_cache_path() -> Path:
    from measure.encoder import cache_root
    return cache_root() / "embeddings.sqlite"
