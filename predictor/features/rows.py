"""Prediction rows in, and the batch index every feature family is computed on.

Why: ``recommend`` featurises tens of thousands of rows that share a few training
configurations, targets and models. ``index_rows`` reduces a batch to its distinct
configurations, targets, source languages and (model, target) pairs once, with the
configuration x language weight matrices the families read, so each family computes a
value once per distinct input and the rows gather it. The reductions below work on those
matrices without warnings for rows that have nothing to reduce.
"""

from __future__ import annotations

import itertools

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from measure.knowledge.languages import Language, resolve_target
from predictor.arrays import configs_of, distinct

#: A training configuration as a key: its (language as written, n) pairs with n > 0, sorted.
ConfigKey = tuple[tuple[str, float], ...]


def as_rows(X: Any) -> pd.DataFrame:
    """A DataFrame (as is), or a list of dicts / one dict -> DataFrame of prediction rows."""
    if isinstance(X, pd.DataFrame):
        return X
    if isinstance(X, Mapping):
        return pd.DataFrame([X])
    if isinstance(X, Iterable):
        return pd.DataFrame(list(X))
    raise TypeError(f"expected a DataFrame or rows (dicts), got {type(X).__name__}")


def config_index(values: Any) -> tuple[np.ndarray, list[ConfigKey]]:
    """(index of each row's distinct configuration, the distinct ``ConfigKey`` tuples in
    order of first appearance)."""
    configs = configs_of(values)
    codes, first = distinct(configs)
    return codes, [configs[i].key for i in first.tolist()]


@dataclass(frozen=True)
class RowIndex:
    """A batch of prediction rows reduced to its distinct parts (``index_rows``).

    ``*_of_row`` arrays map each row to a distinct configuration, target or (model,
    target) pair. Sources are counted two ways: per ISO 639-3 code (``weights``: two
    codes of one language add up, as URIEL sees one language) and as written (``written``:
    the codes a profile keys its per-source values by).
    """

    n: int
    configs: list[ConfigKey]
    config_of_row: np.ndarray
    targets: list[Language]           # distinct targets, in order of first appearance
    target_of_row: np.ndarray
    source_codes: list[str]           # every source code as written, sorted
    sources: list[Language]           # ``source_codes`` resolved
    source_iso: list[str]             # the distinct ISO 639-3 codes of the sources, sorted
    weights: np.ndarray               # configurations x ``source_iso``: n examples
    written: np.ndarray               # configurations x ``source_codes``: membership
    written_weights: np.ndarray       # configurations x ``source_codes``: n examples
    pairs: list[tuple[str, str]]      # distinct (model, target as given), by model, then target
    pair_of_row: np.ndarray
    models: np.ndarray                # each row's model (text; "" without a model column)
    methods: np.ndarray               # each row's method (text; "" without a method column)

    @property
    def target_iso(self) -> list[str]:
        return [t.iso639_3 for t in self.targets]

    @property
    def supervised(self) -> np.ndarray:
        """Configurations x ``source_iso``: the languages with training examples."""
        return self.weights > 0


def index_rows(rows: pd.DataFrame) -> RowIndex:
    """The ``RowIndex`` of ``rows`` (which need ``train_config`` and ``target`` columns)."""
    for col in ("train_config", "target"):
        if col not in rows.columns:
            raise ValueError(f"prediction rows need a {col!r} column")
    n = len(rows)
    c_idx, configs = config_index(rows["train_config"])
    tgt_str = [str(t) for t in rows["target"].tolist()]
    t_idx, tgt_uniq = pd.factorize(np.array(tgt_str, dtype=object))
    t_idx = t_idx.astype(np.int64)
    targets = [resolve_target(t) for t in tgt_uniq.tolist()]
    # every (configuration, language as written, n) once, flat: the matrices below are
    # filled from these arrays instead of per-configuration loops
    pairs = list(itertools.chain.from_iterable(configs))
    flat_lang = [lang for lang, _ in pairs]
    flat_cnt = np.array([cnt for _, cnt in pairs], dtype=float)
    flat_cfg = np.repeat(np.arange(len(configs)),
                         np.fromiter(map(len, configs), dtype=np.int64, count=len(configs)))
    src_codes = sorted(set(flat_lang))
    src_pos = {c: j for j, c in enumerate(src_codes)}
    flat_src = np.fromiter(map(src_pos.__getitem__, flat_lang), dtype=np.int64,
                           count=len(flat_lang))
    sources = [resolve_target(c) for c in src_codes]
    # weights per ISO 639-3 code, added in the configurations' order (as a loop of += would)
    src_iso = sorted({s.iso639_3 for s in sources})
    iso_pos = {c: j for j, c in enumerate(src_iso)}
    src_to_iso = np.array([iso_pos[s.iso639_3] for s in sources], dtype=np.int64)
    weights = np.zeros((len(configs), len(src_iso)))
    np.add.at(weights, (flat_cfg, src_to_iso[flat_src]), flat_cnt)
    written = np.zeros((len(configs), len(src_codes)), bool)
    written[flat_cfg, flat_src] = True
    written_weights = np.zeros((len(configs), len(src_codes)))
    written_weights[flat_cfg, flat_src] = flat_cnt
    # distinct (model, target) pairs: coverage and profiles are properties of these
    model_str = [str(m) for m in rows["model"].tolist()] if "model" in rows else [""] * n
    m_idx = pd.factorize(np.array(model_str, dtype=object))[0].astype(np.int64)
    mt_row = m_idx * max(len(tgt_uniq), 1) + t_idx
    mt_code, mt_first = np.unique(mt_row, return_index=True)
    return RowIndex(
        n=n, configs=configs, config_of_row=c_idx,
        targets=targets, target_of_row=t_idx,
        source_codes=src_codes, sources=sources, source_iso=src_iso, weights=weights,
        written=written, written_weights=written_weights,
        pairs=[(model_str[i], tgt_str[i]) for i in mt_first.tolist()],
        pair_of_row=np.searchsorted(mt_code, mt_row),
        models=np.array(model_str, dtype=object),
        methods=(np.array([str(m) for m in rows["method"].tolist()], dtype=object)
                 if "method" in rows else np.full(n, "", dtype=object)))


def masked_reduce(a: np.ndarray, fn: str, valid: np.ndarray, cnt: np.ndarray) -> np.ndarray:
    """Row-wise min (``fn`` 'min') or mean of ``a`` over its ``valid`` entries (``cnt`` of
    them per row); NaN, without a warning, for a row with none."""
    if fn == "min":
        res = np.where(valid, a, np.inf).min(axis=1)
    else:
        res = np.where(valid, a, 0.0).sum(axis=1) / np.maximum(cnt, 1)
    return np.where(cnt > 0, res, np.nan)


def aggregate_rows(out: dict[str, np.ndarray], idx: np.ndarray, prefix: str,
                   values: np.ndarray, mask: np.ndarray, weight: np.ndarray,
                   extreme: str) -> None:
    """``prefix``_``extreme`` ('min' or 'max'), _mean and _wmean over the masked languages
    of each row into rows ``idx`` of ``out`` (every row has at least one masked language)."""
    if not len(idx):
        return
    v = np.where(mask, values[None, :], 0.0)
    ext = np.where(mask, values[None, :], np.inf if extreme == "min" else -np.inf)
    out[f"{prefix}_{extreme}"][idx] = ext.min(axis=1) if extreme == "min" else ext.max(axis=1)
    out[f"{prefix}_mean"][idx] = v.sum(axis=1) / mask.sum(axis=1)
    w = np.where(mask, weight, 0.0)
    out[f"{prefix}_wmean"][idx] = (v * w).sum(axis=1) / w.sum(axis=1)
