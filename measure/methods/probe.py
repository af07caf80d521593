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
import hashlib
import json
import math
import sys
import time
from collections import OrderedDict
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
from measure.encoders.encoder import encoder_key_for, make_encoder, prepare_model_files
from measure.methods.base import RunContext, finish
from measure.timing import PhaseTimer
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


def vectors(cache_path: str, encoder_key: str, texts: list[str]) -> np.ndarray:
    """Cached embeddings of ``texts``, read from the cache as stored.

    Served exactly as stored: dynamic int8 quantisation computes activation scales per
    batch, so the same text encoded in another run's batches can differ in the last
    digits. Per-process reuse is the job of :func:`pair_vectors` (rows of a split)."""
    with EmbeddingCache(str(cache_path), encoder_key) as cache:
        return cache.get(list(texts))


@dataclass
class _SplitRows:
    """The embedded rows of one split read so far, in row order (``have`` marks them)."""

    premise: np.ndarray
    hypothesis: np.ndarray
    have: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.premise.nbytes + self.hypothesis.nbytes)


#: bytes of row vectors a worker keeps (every split of the default grid: about 0.6 GB)
SPLIT_MEMO_MAX_BYTES = 1_500_000_000
_SPLIT_ROWS: dict[tuple[str, ...], _SplitRows] = {}


def _split_of(frame: pd.DataFrame) -> tuple[str, str, str] | None:
    """(dataset, language, split) when every row of ``frame`` is a row of one loaded split
    at its own position (a ``load_split(...).iloc[idx]`` slice), else None."""
    cols = ("dataset", "language", "split")
    if not len(frame) or any(c not in frame.columns for c in cols):
        return None
    first = tuple(str(frame[c].iloc[0]) for c in cols)
    if any((frame[c] != v).any() for c, v in zip(cols, first)):
        return None
    return first  # type: ignore[return-value]


def pair_vectors(cache_path: str, encoder_key: str, frame: pd.DataFrame,
                 data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(premise, hypothesis) embeddings of ``frame``'s rows.

    Why a per-split memo: a grid's cells read the same target rows (hundreds of cells,
    ~37k rows each) and overlapping training rows. Looking each text up in a dict of
    vectors and stacking 75k of them cost more per cell than fitting a small probe; here a
    split's rows are read from the cache once per worker process, kept as two arrays in
    row order, and a cell's rows are one fancy index. Frames that are not a slice of a
    loaded split (or without ``data_dir``) are read text by text."""
    split = _split_of(frame) if data_dir is not None else None
    if split is not None:
        full = load_split(data_dir, *split)
        pos = frame.index.to_numpy()
        if (pos.dtype.kind in "iu" and 0 <= pos.min() and pos.max() < len(full)
                and _same_rows(data_dir, split, full, pos, frame)):
            entry = _split_rows(cache_path, encoder_key, data_dir, split, full, pos)
            return entry.premise[pos], entry.hypothesis[pos]
    return (vectors(cache_path, encoder_key, frame["premise"].tolist()),
            vectors(cache_path, encoder_key, frame["hypothesis"].tolist()))


_PAIR_IDS: dict[tuple[str, ...], np.ndarray | None] = {}


def _same_rows(data_dir: str, split: tuple[str, str, str], full: pd.DataFrame,
               pos: np.ndarray, frame: pd.DataFrame) -> bool:
    """Whether ``frame``'s rows are rows ``pos`` of ``full``: by pair id where the split's
    ids are unique (every shipped split: an integer compare), else by text (converting
    an Arrow string column costs more than the rest of a target's scoring)."""
    key = (str(data_dir), *split)
    if key not in _PAIR_IDS:
        ids = full["pair_id"].to_numpy() if "pair_id" in full.columns else None
        _PAIR_IDS[key] = ids if ids is not None and len(np.unique(ids)) == len(ids) else None
    ids = _PAIR_IDS[key]
    if ids is not None and "pair_id" in frame.columns:
        return bool((ids[pos] == frame["pair_id"].to_numpy()).all())
    return all((full[c].to_numpy()[pos] == frame[c].to_numpy()).all()
               for c in ("premise", "hypothesis"))


def _split_rows(cache_path: str, encoder_key: str, data_dir: str, split: tuple[str, str, str],
                full: pd.DataFrame, pos: np.ndarray) -> _SplitRows:
    """The memo entry of ``split`` with (at least) rows ``pos`` read from the cache."""
    key = (str(cache_path), encoder_key, str(data_dir), *split)
    entry = _SPLIT_ROWS.get(key)
    need = np.unique(pos if entry is None else pos[~entry.have[pos]])
    if not len(need):
        return entry  # type: ignore[return-value]
    u = vectors(cache_path, encoder_key, full["premise"].iloc[need].tolist())
    v = vectors(cache_path, encoder_key, full["hypothesis"].iloc[need].tolist())
    if entry is None:
        if sum(e.nbytes for e in _SPLIT_ROWS.values()) > SPLIT_MEMO_MAX_BYTES:
            _SPLIT_ROWS.clear()                       # bounded: start afresh
        n, dim = len(full), u.shape[1]
        entry = _SplitRows(np.zeros((n, dim), np.float32), np.zeros((n, dim), np.float32),
                           np.zeros(n, bool))
        _SPLIT_ROWS[key] = entry
    entry.premise[need], entry.hypothesis[need], entry.have[need] = u, v, True
    return entry


def split_vectors(cache_path: str, encoder_key: str, data_dir: str, dataset: str,
                  language: str, split: str, idx: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(premise, hypothesis) embeddings of a split's rows ``idx`` (all rows when None)."""
    frame = load_split(data_dir, dataset, language, split)
    return pair_vectors(cache_path, encoder_key, frame if idx is None else frame.iloc[idx],
                        data_dir)


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
    u, v = pair_vectors(ctx.cache_path, ctx.encoder_key, frame, ctx.data_dir)
    if cell.params.get("centre", "none") == "language" and len(frame):
        ds, lang = str(frame["dataset"].iloc[0]), str(frame["language"].iloc[0])
        mean = language_mean(ctx, ds, lang, centring_split(cell, ds))
        u, v = u - mean, v - mean
    return pair_features(u, v)


#: bytes of scored rows' features a worker keeps (the default grid's 22 targets: 0.23 GB)
SCORING_MEMO_MAX_BYTES = 600_000_000
_SCORING: dict[tuple[Any, ...], np.ndarray] = {}


def scoring_features(cell: CellSpec, ctx: RunContext, frame: pd.DataFrame) -> np.ndarray:
    """:func:`features` of a target's scored rows, memoised per worker.

    Why: every cell of a grid scores the same target rows (about 37k pairs on the default
    grid), and building their [u, v, |u−v|, u·v] matrix cost more per cell than scoring
    it. The key holds everything the features depend on: the cache and encoder, the rows
    (split and positions) and the centring (a centred probe subtracts the language's mean
    of the split :func:`centring_split` names for this cell)."""
    split = _split_of(frame)
    if split is None:
        return features(cell, ctx, frame)
    centre = cell.params.get("centre", "none")
    centring = centring_split(cell, split[0]) if centre == "language" else ""
    rows = hashlib.sha1(np.ascontiguousarray(frame.index.to_numpy(), np.int64)).hexdigest()
    key = (ctx.cache_path, ctx.encoder_key, ctx.data_dir, *split, rows, centre, centring)
    if key not in _SCORING:
        X = features(cell, ctx, frame)
        if sum(x.nbytes for x in _SCORING.values()) + X.nbytes > SCORING_MEMO_MAX_BYTES:
            _SCORING.clear()                          # bounded: start afresh
        X.setflags(write=False)
        _SCORING[key] = X
    return _SCORING[key]


#: fitted probes a worker keeps, by what they were fitted on (:func:`fit_key`)
FIT_MEMO_MAX = 2048
_FITS: OrderedDict[str, Pipeline] = OrderedDict()


def fit_key(cell: CellSpec, ctx: RunContext, frames: list[pd.DataFrame]) -> str:
    """What a probe's fit depends on: the rows it trains on (split and row positions of each
    frame, in order), the features' source (encoder, centring) and the ``[probe]`` table.

    The seed is part of it only where it changes the fit: it draws the rows (already in
    the key) and seeds the MLP; logistic regression's lbfgs solver does not use it. So the
    default grid's single sources, whose every seed and both budget regimes train on the
    whole split, are one fit, not six."""
    h = hashlib.sha256()
    p = {**DEFAULT_PROBE, **cell.params}
    seed = cell.seed if p["classifier"] != "logreg" else None
    h.update(json.dumps([ctx.cache_path, ctx.encoder_key, ctx.data_dir, cell.train_dataset,
                         cell.train_split, sorted(p.items()), seed]).encode())
    for frame in frames:
        h.update(json.dumps(_split_of(frame)).encode())
        h.update(np.ascontiguousarray(frame.index.to_numpy(), dtype=np.int64).tobytes())
    return h.hexdigest()


def fitted_probe(cell: CellSpec, ctx: RunContext, frames: list[pd.DataFrame]) -> Pipeline:
    """The probe fitted on ``frames`` (memoised per worker by :func:`fit_key`)."""
    key = fit_key(cell, ctx, frames)
    if key in _FITS:
        _FITS.move_to_end(key)
        return _FITS[key]
    X = np.vstack([features(cell, ctx, frame) for frame in frames])
    y = np.concatenate([frame["label"].to_numpy() for frame in frames])
    clf = make_classifier(cell.params, int(cell.seed))
    # One BLAS thread, always: lbfgs on these features is sensitive to summation order, so
    # the thread count would otherwise change the scores (local vs Ray vs another machine).
    with threadpool_limits(1):
        clf.fit(X, y)
    _FITS[key] = clf
    while len(_FITS) > FIT_MEMO_MAX:
        _FITS.popitem(last=False)
    return clf


def run(cell: CellSpec, ctx: RunContext) -> CellRecord:
    """Fit the probe on the sampled sources (and target shots); score every target.
    Embeddings must be cached."""
    started = time.time()
    frames = training_frames(cell, ctx.data_dir, sample_training(cell, ctx.data_dir))
    clf = fitted_probe(cell, ctx, frames)
    with threadpool_limits(1):
        return finish(cell, ctx, started, time.time() - started,
                      lambda f: clf.predict(scoring_features(cell, ctx, f)))


def prepare(model: str, cells: list[CellSpec], data_dir: str, cache_path: Path, *,
            progress: bool = True, timer: PhaseTimer | None = None) -> dict[str, str]:
    """Encode every text the cells read that the cache lacks, once; {backend: encoder key}.
    ``timer`` gets the model build/export and the encoding as separate phases."""
    timer = timer or PhaseTimer()
    keys: dict[str, str] = {}
    for backend in sorted({c.backend for c in cells}):
        with timer.phase("model"):          # the key needs the checkpoint: built in a child
            prepare_model_files(model, backend, checkpoint_only=True)
        key = encoder_key_for(model, backend)
        keys[backend] = key
        texts = texts_for_batch([c for c in cells if c.backend == backend], data_dir)
        with EmbeddingCache(cache_path, key) as cache:
            todo = cache.missing(texts)
            if progress:
                print(f"embeddings: {len(texts) - len(todo)} of {len(texts)} texts cached, "
                      f"encoding {len(todo)} with {model} ({backend})", file=sys.stderr)
            if todo:
                with timer.phase("model"):
                    prepare_model_files(model, backend)   # one-time steps, in child processes
                    enc = make_encoder(model, backend)
                timer.texts_encoded += len(todo)
                with timer.phase("encode"):
                    _encode_into(cache, enc, todo, progress)
    return keys


#: texts tokenised, encoded and stored at a time (a crash keeps the chunks already stored)
ENCODE_CHUNK = 4096


def _encode_into(cache: EmbeddingCache, enc: Any, todo: list[str], progress: bool) -> None:
    """Encode ``todo`` and store it, chunk by chunk, in first-seen order.

    The order stays as it was: with dynamic int8 quantisation a text's vector depends
    (in the last digits) on the batch it was encoded in, so reordering would move every
    cell's F1 a little. Sorting the whole batch by length was measured at +3% texts/s
    (docs/benchmarks.md), not worth vectors that differ from every earlier cache's."""
    bar = tqdm(total=len(todo), desc="encode", unit="text", disable=not progress,
               smoothing=0.05)
    for start in range(0, len(todo), ENCODE_CHUNK):
        part = todo[start:start + ENCODE_CHUNK]
        cache.put(part, enc.encode(part))
        bar.update(len(part))
    bar.close()
