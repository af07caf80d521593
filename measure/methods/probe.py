"""The probe method: frozen encoder features + a scikit-learn classifier.

Premise and hypothesis are embedded separately (mean pooling, e5 ``query: `` prefix) and
combined as [u, v, |u−v|, u·v] (Conneau et al., 2017). The classifier's hyperparameters
are fixed in the config, never tuned on a target language. The defaults were chosen by
5-fold cross-validation on the English XNLI validation split (the training pool itself,
source language only): logistic regression on the raw features (the embeddings are
L2-normalised, so their scale is already comparable), C in {0.3, 1, 3, 30} gave macro-F1
59.6 / 61.2 / 60.4 / 55.8, while standardised features did worse (50.4–54.0 for C in
{0.01, 0.05, 0.5, 5}) and an MLP reached 51.6. Reproduce: ``python -m measure.probe``
(:mod:`measure.benchmarks.probe_select`).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from measure.cell import CellRecord, CellSpec
from measure.encoders.embcache import EmbeddingCache
from measure.encoders.encoder import encoder_key_for, make_encoder
from measure.methods.base import RunContext, finish
from measure.methods.sampling import eval_indices, load_split, sample_training

CLASSIFIERS = ("logreg", "mlp")


@dataclass(frozen=True)
class ProbeParams:
    """The ``[probe]`` table, validated when the config is loaded (before any work).

    classifier: ``logreg`` or ``mlp``; C: inverse regularisation strength of the logistic
    regression (> 0); max_iter: solver iterations (>= 1); hidden: MLP hidden units (>= 1);
    scale: standardise the pair features first. Types are strict (a bool is not a number).
    """

    classifier: str = "logreg"
    C: float = 1.0
    max_iter: int = 2000
    hidden: int = 256
    scale: bool = False

    @classmethod
    def from_dict(cls, raw: Any) -> "ProbeParams":
        """Validate a ``[probe]`` table; ValueError names the key and the fix."""
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ValueError(f"[probe] must be a table (e.g. [probe] C = 1.0), got {raw!r}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(raw) - set(fields)
        if unknown:
            hints = []
            for key in sorted(unknown):
                close = [f for f in fields if f.lower() == str(key).lower()]
                hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ValueError(f"[probe]: unknown key(s) {', '.join(hints)}; allowed: {sorted(fields)}")
        for name, value in raw.items():
            want = type(fields[name].default)
            if want is float:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            elif want is int:
                ok = isinstance(value, int) and not isinstance(value, bool)
            else:
                ok = isinstance(value, want)
            if not ok:
                raise ValueError(f"[probe].{name} = {value!r}: expected {want.__name__} "
                                 f"(default {fields[name].default!r})")
        p = cls(**{k: (float(v) if type(fields[k].default) is float else v) for k, v in raw.items()})
        if p.classifier not in CLASSIFIERS:
            raise ValueError(f"[probe].classifier = {p.classifier!r}: use one of {CLASSIFIERS}")
        if not (math.isfinite(p.C) and p.C > 0):
            raise ValueError(f"[probe].C = {raw.get('C')!r}: must be a finite number > 0 (default 1.0)")
        if not 1 <= p.max_iter <= 1_000_000:
            raise ValueError(f"[probe].max_iter = {p.max_iter}: must be in 1..1000000 (default 2000)")
        if not 1 <= p.hidden <= 100_000:
            raise ValueError(f"[probe].hidden = {p.hidden}: must be in 1..100000 (default 256)")
        return p


DEFAULT_PROBE = dataclasses.asdict(ProbeParams())  # the [probe] defaults as a plain table


def pair_features(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """[u, v, |u−v|, u·v]: symmetric and asymmetric cues a linear model can use."""
    return np.hstack([u, v, np.abs(u - v), u * v]).astype(np.float32, copy=False)


def make_classifier(params: Mapping[str, Any], seed: int) -> Pipeline:
    """The probe's scikit-learn pipeline for a ``[probe]`` table (defaults filled in)."""
    p = {**DEFAULT_PROBE, **params}
    if p["classifier"] == "logreg":
        clf = LogisticRegression(C=float(p["C"]), max_iter=int(p["max_iter"]), random_state=seed)
    elif p["classifier"] == "mlp":
        clf = MLPClassifier(hidden_layer_sizes=(int(p["hidden"]),), alpha=1e-3,
                            early_stopping=True, validation_fraction=0.1,
                            max_iter=int(p["max_iter"]), random_state=seed)
    else:
        raise ValueError(f"unknown probe classifier {p['classifier']!r}: use 'logreg' or 'mlp'")
    return make_pipeline(StandardScaler(), clf) if p["scale"] else make_pipeline(clf)


#: texts held in the per-process memo before it is emptied (about 0.6 GB of 384-d vectors)
MEMO_MAX = 400_000
_MEMO: dict[tuple[str, str, str], np.ndarray] = {}


def vectors(cache_path: str, encoder_key: str, texts: list[str]) -> np.ndarray:
    """Cached embeddings of ``texts``, memoised per worker process (cells share targets).

    The memo is bounded (``MEMO_MAX`` texts). It is keyed by the cache file too: dynamic int8 quantisation computes activation
    scales per batch, so the same text encoded in another run's batches can differ in the
    last digits, and each cache must be served exactly as stored.
    """
    cache_path = str(cache_path)
    missing = [t for t in dict.fromkeys(texts) if (cache_path, encoder_key, t) not in _MEMO]
    if missing and len(_MEMO) + len(missing) > MEMO_MAX:  # bounded: start afresh
        _MEMO.clear()
        missing = list(dict.fromkeys(texts))
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


def texts_for_batch(cells: list[CellSpec], data_dir: str) -> list[str]:
    """Every premise and hypothesis the batch's cells will read, deduplicated.

    Only the rows a cell actually samples (training) or scores (capped targets) are
    listed, so a small budget drawn from a big pool does not embed the whole pool.
    """
    rows: dict[tuple[str, str, str], set[int]] = {}
    for cell in cells:
        for lang, idx in sample_training(cell, data_dir):
            rows.setdefault((cell.train_dataset, lang, cell.train_split), set()).update(idx.tolist())
        for tgt in cell.targets:
            for lang in tgt.languages:
                frame = load_split(data_dir, tgt.dataset, lang, tgt.split)
                idx = eval_indices(frame, cell.eval_cap)
                rows.setdefault((tgt.dataset, lang, tgt.split), set()).update(idx.tolist())
    texts: dict[str, None] = {}
    for (ds, lang, split), idx in sorted(rows.items()):
        f = load_split(data_dir, ds, lang, split).iloc[sorted(idx)]
        texts.update(dict.fromkeys(f["premise"]))
        texts.update(dict.fromkeys(f["hypothesis"]))
    return list(texts)




def run(cell: CellSpec, ctx: RunContext) -> CellRecord:
    """Fit the probe on the sampled sources; score every target. Embeddings must be cached."""
    started = time.time()
    feats, labels = [], []
    ds, split = cell.train_dataset, cell.train_split
    for lang, idx in sample_training(cell, ctx.data_dir):
        u, v = split_vectors(ctx.cache_path, ctx.encoder_key, ctx.data_dir, ds, lang, split, idx)
        feats.append(pair_features(u, v))
        labels.append(load_split(ctx.data_dir, ds, lang, split)["label"].to_numpy()[idx])
    X, y = np.vstack(feats), np.concatenate(labels)
    clf = make_classifier(cell.params, int(cell.seed))
    # One BLAS thread, always: lbfgs on these features is sensitive to summation order, so
    # the thread count would otherwise change the scores (local vs Ray vs another machine).
    with threadpool_limits(1):
        clf.fit(X, y)
        return finish(cell, ctx, started, time.time() - started,
                      lambda f: clf.predict(pair_features(
                          *pair_vectors(ctx.cache_path, ctx.encoder_key, f))))


def prepare(model: str, cells: list[CellSpec], data_dir: str, cache_path: Path, *,
            progress: bool = True) -> dict[str, str]:
    """Encode every text the cells read that the cache lacks, once; {backend: encoder key}."""
    keys: dict[str, str] = {}
    for backend in sorted({c.backend for c in cells}):
        key = encoder_key_for(model, backend)
        keys[backend] = key
        texts = texts_for_batch([c for c in cells if c.backend == backend], data_dir)
        with EmbeddingCache(cache_path, key) as cache:
            todo = cache.missing(texts)
            if progress:
                print(f"embeddings: {len(texts) - len(todo)} of {len(texts)} texts cached, "
                      f"encoding {len(todo)} with {model} ({backend})", file=sys.stderr)
            if todo:
                enc = make_encoder(model, backend)
                bar = tqdm(total=len(todo), desc="encode", unit="text", disable=not progress,
                           smoothing=0.05)
                for start in range(0, len(todo), 4096):
                    part = todo[start:start + 4096]
                    cache.put(part, enc.encode(part))
                    bar.update(len(part))
                bar.close()
    return keys
