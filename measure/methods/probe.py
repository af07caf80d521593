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

``[probe] centre = "language"`` subtracts from every embedding the mean embedding of its
language (:func:`centring_split` says from which text): it removes the language-specific
offset of a multilingual encoder's space (Libovický et al., 2020, "On the language
neutrality of pre-trained multilingual representations"), so a classifier trained on
source languages sees target sentences where it saw source sentences. The means read
unlabelled text only, and never a scored row.
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

from measure.cell import CellRecord, CellSpec, parse_shot_key
from measure.encoders.embcache import EmbeddingCache
from measure.encoders.encoder import encoder_key_for, make_encoder
from measure.methods.base import RunContext, finish
from measure.methods.sampling import (load_split, sample_shots, sample_training, target_splits,
                                      training_frames)

CLASSIFIERS = ("logreg", "mlp")
CENTRES = ("none", "language")
#: the split whose text centres the rows of a dataset that is not the training pool
CENTRE_SPLIT = "validation"
#: rows of a centring split read at most (a fixed, seeded subset beyond): 2,490 is the
#: whole XNLI validation split; the 9,000-row XNLI-MT pool is subsampled
CENTRE_MAX_ROWS = 2490
CENTRE_SEED = 4242
#: the split the grids score targets on: its texts never enter a language's mean
SCORED_SPLIT = "test"


@dataclass(frozen=True)
class ProbeParams:
    """The ``[probe]`` table, validated when the config is loaded (before any work).

    classifier: ``logreg`` or ``mlp``; C: inverse regularisation strength of the logistic
    regression (> 0); max_iter: solver iterations (>= 1); hidden: MLP hidden units (>= 1);
    scale: standardise the pair features first; centre: ``none`` or ``language`` (subtract
    each language's mean embedding first, see the module docstring). Types are strict (a
    bool is not a number). A key is part of a cell's hash only when the config writes it.
    """

    classifier: str = "logreg"
    C: float = 1.0
    max_iter: int = 2000
    hidden: int = 256
    scale: bool = False
    centre: str = "none"

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
        if p.centre not in CENTRES:
            raise ValueError(f"[probe].centre = {p.centre!r}: use one of {CENTRES} "
                             "(default 'none')")
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


def centring_split(cell: CellSpec, dataset: str) -> str:
    """The split whose text gives a language's mean in ``dataset``: the training pool's own
    split for the pool's dataset (the sources' training text), ``CENTRE_SPLIT`` for any
    other (a target's validation text, never scored; the config refuses a target scored on
    its own centring split)."""
    return cell.train_split if dataset == cell.train_dataset else CENTRE_SPLIT


def centring_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of a centring split read for a mean: all, or a seeded ``CENTRE_MAX_ROWS``."""
    if len(frame) <= CENTRE_MAX_ROWS:
        return frame
    rng = np.random.default_rng(CENTRE_SEED)
    return frame.iloc[np.sort(rng.choice(len(frame), CENTRE_MAX_ROWS, replace=False))]


def centring_texts(data_dir: str, dataset: str, language: str, split: str) -> list[str]:
    """The distinct premises and hypotheses a language's mean is taken over (no labels):
    :func:`centring_rows` of ``split``, less any text that also occurs in the language's
    ``SCORED_SPLIT`` (a few verbatim repeats: up to 15 in XNLI Urdu), so no scored text
    enters a mean."""
    rows = centring_rows(load_split(data_dir, dataset, language, split))
    texts = dict.fromkeys(rows["premise"].tolist() + rows["hypothesis"].tolist())
    scored = Path(data_dir) / dataset / language / f"{SCORED_SPLIT}.parquet"
    if split != SCORED_SPLIT and scored.is_file():
        test = load_split(data_dir, dataset, language, SCORED_SPLIT)
        for t in (*test["premise"], *test["hypothesis"]):
            texts.pop(t, None)
    return list(texts)


def cell_languages(cell: CellSpec) -> set[tuple[str, str]]:
    """Every (dataset, language) whose rows a cell embeds: sources, shots and targets."""
    langs = {(cell.train_dataset, lang) for lang in cell.sources}
    for key, n in cell.target_shots.items():
        ds, _, lang = parse_shot_key(key)
        if n > 0:
            langs.add((ds, lang))
    return langs | {(t.dataset, lang) for t in cell.targets for lang in t.languages}


def texts_for_batch(cells: list[CellSpec], data_dir: str) -> list[str]:
    """Every premise and hypothesis the batch's cells will read, deduplicated.

    Only the rows a cell actually samples (training, shots) or scores (capped targets) are
    listed, so a small budget drawn from a big pool does not embed the whole pool; with
    ``centre = "language"``, the centring text of every language a cell reads as well.
    """
    rows: dict[tuple[str, str, str], set[int]] = {}
    centred: set[tuple[str, str, str]] = set()
    for cell in cells:
        drawn = sample_training(cell, data_dir)
        for lang, idx in drawn:
            rows.setdefault((cell.train_dataset, lang, cell.train_split),
                            set()).update(idx.tolist())
        for ds, lang, split, idx in sample_shots(cell, data_dir):
            rows.setdefault((ds, lang, split), set()).update(idx.tolist())
        for tgt in cell.targets:
            for lang in tgt.languages:
                frame = load_split(data_dir, tgt.dataset, lang, tgt.split)
                for _, idx in target_splits(tgt, frame, cell.eval_cap):
                    rows.setdefault((tgt.dataset, lang, tgt.split), set()).update(idx.tolist())
        if cell.params.get("centre", "none") == "language":
            centred |= {(ds, lang, centring_split(cell, ds)) for ds, lang in cell_languages(cell)}
    texts: dict[str, None] = {}
    for (ds, lang, split), idx in sorted(rows.items()):
        f = load_split(data_dir, ds, lang, split).iloc[sorted(idx)]
        texts.update(dict.fromkeys(f["premise"]))
        texts.update(dict.fromkeys(f["hypothesis"]))
    for ds, lang, split in sorted(centred):
        texts.update(dict.fromkeys(centring_texts(data_dir, ds, lang, split)))
    return list(texts)


_MEANS: dict[tuple[str, ...], np.ndarray] = {}


def language_mean(ctx: RunContext, dataset: str, language: str, split: str) -> np.ndarray:
    """Mean embedding of a language's centring text (:func:`centring_texts`), memoised."""
    key = (ctx.data_dir, ctx.cache_path, ctx.encoder_key, dataset, language, split)
    if key not in _MEANS:
        texts = centring_texts(ctx.data_dir, dataset, language, split)
        _MEANS[key] = vectors(ctx.cache_path, ctx.encoder_key, texts).mean(axis=0)
    return _MEANS[key]


def features(cell: CellSpec, ctx: RunContext, frame: pd.DataFrame) -> np.ndarray:
    """Pair features of ``frame``'s rows (one dataset and language, as every frame a cell
    reads is), centred on the language's mean when the cell's probe says so."""
    u, v = pair_vectors(ctx.cache_path, ctx.encoder_key, frame)
    if cell.params.get("centre", "none") == "language" and len(frame):
        ds, lang = str(frame["dataset"].iloc[0]), str(frame["language"].iloc[0])
        mean = language_mean(ctx, ds, lang, centring_split(cell, ds))
        u, v = u - mean, v - mean
    return pair_features(u, v)


def run(cell: CellSpec, ctx: RunContext) -> CellRecord:
    """Fit the probe on the sampled sources (and target shots); score every target.
    Embeddings must be cached."""
    started = time.time()
    frames = training_frames(cell, ctx.data_dir, sample_training(cell, ctx.data_dir))
    X = np.vstack([features(cell, ctx, frame) for frame in frames])
    y = np.concatenate([frame["label"].to_numpy() for frame in frames])
    clf = make_classifier(cell.params, int(cell.seed))
    # One BLAS thread, always: lbfgs on these features is sensitive to summation order, so
    # the thread count would otherwise change the scores (local vs Ray vs another machine).
    with threadpool_limits(1):
        clf.fit(X, y)
        return finish(cell, ctx, started, time.time() - started,
                      lambda f: clf.predict(features(cell, ctx, f)))


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
