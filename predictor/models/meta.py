"""The keys every model groups its rows by, made once per frame.

Why one place: the baselines, the learners, the measured-target memory, the nested CV and
the serving layer all group by the same keys -- the system ('model|method'), the target's
pretraining class, the target (ISO 639-3) and the training configuration as {ISO 639-3: n}
-- and a row must get the same key wherever it is grouped. Keys are built per *distinct*
value (a Recommend request repeats each source set once per target, and a frame repeats
each (system, target) over thousands of rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from measure.knowledge.coverage import pretraining_class
from measure.knowledge.languages import resolve_target
from measure.knowledge.train_config import TrainConfig
from predictor.arrays import configs_of, distinct


def row_meta(rows: pd.DataFrame) -> pd.DataFrame:
    """Keys every model groups by: mm ('model|method'), pclass, target (ISO 639-3), config
    ({ISO 639-3: n}) and cfg_id (rows with equal configurations share it: what the
    measured-target memory, the support reasons and the class policy work out once per
    configuration)."""
    configs, cfg_id = iso_configs(rows["train_config"])
    # (model, method, target[, ISO]) is per target, not per row: each distinct one once
    cols = [rows[c].astype(str) for c in ("model", "method", "target", "target_iso3")
            if c in rows] if len(rows) > 256 else []     # a few rows: row by row costs less
    combined = np.zeros(len(rows), dtype=np.int64)
    ok, span = bool(cols), 1
    for col in cols:
        codes, uniq = pd.factorize(col)
        span *= max(len(uniq), 1)
        ok = ok and not (codes < 0).any() and span < 2 ** 62
        combined = combined * max(len(uniq), 1) + codes
    if ok:
        _, first, inverse = np.unique(combined, return_index=True, return_inverse=True)
        sub = row_meta_rows(rows.iloc[first])
        inverse = inverse.reshape(-1)
        return pd.DataFrame({"mm": np.array(sub[0], dtype=object)[inverse],
                             "pclass": np.array(sub[1], dtype=object)[inverse],
                             "target": np.array(sub[2], dtype=object)[inverse],
                             "config": configs, "cfg_id": cfg_id}, index=rows.index)
    mm, pcl, iso = row_meta_rows(rows)
    return pd.DataFrame({"mm": np.array(mm, dtype=object), "pclass": pcl,
                         "target": np.array(iso, dtype=object), "config": configs,
                         "cfg_id": cfg_id}, index=rows.index)


def row_meta_rows(rows: pd.DataFrame) -> tuple[list[str], list[str], list[str]]:
    """(mm, pclass, ISO 639-3 target) of each row, row by row."""
    models = rows["model"].astype(str).tolist()
    mm = [f"{m}|{me}" for m, me in zip(models, rows["method"].astype(str).tolist())]
    targets = rows["target"].astype(str).tolist()
    if "target_iso3" in rows:
        iso = rows["target_iso3"].astype(str).tolist()
    else:
        iso_of: dict[str, str] = {}
        iso = [iso_of[t] if t in iso_of else iso_of.setdefault(t, resolve_target(t).iso639_3)
               for t in targets]
    cache: dict[tuple[str, str], str] = {}
    pcl = []
    for t, m in zip(targets, models):
        if (t, m) not in cache:
            cache[(t, m)] = pretraining_class(t, m)
        pcl.append(cache[(t, m)])
    return mm, pcl, iso


def iso_configs(values: Any) -> tuple[list[dict[str, float]], np.ndarray]:
    """(each row's {ISO 639-3: n}, the index of each row's distinct configuration): each
    distinct configuration converted once (``recommend`` repeats every source set once per
    target); rows with one configuration share its dict (read-only)."""
    configs = configs_of(values)
    cfg_id, first = distinct(configs)
    iso = [configs[i].iso for i in first.tolist()]
    return [iso[j] for j in cfg_id.tolist()], cfg_id


def iso_config(tc: Any) -> dict[str, float]:
    """{ISO 639-3: n} of one configuration ('sw' and 'swh' are one source language)."""
    return TrainConfig.coerce(tc).iso


def group_key(meta: pd.DataFrame, keys: Sequence[str]) -> pd.Series:
    """Each row's key string: the ``keys`` columns joined by '|' ('xlmr|finetune|swh')."""
    k = meta[keys[0]].astype(str).reset_index(drop=True)
    for c in keys[1:]:
        k = k + "|" + meta[c].astype(str).reset_index(drop=True)
    return k


def key_codes(meta: pd.DataFrame, keys: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """(code of each row, the distinct :func:`group_key` strings): each row's key is
    ``names[codes[i]]``, the strings built once per distinct combination. A missing value
    (no key string: ``group_key`` gives NaN) falls back to ``group_key`` itself."""
    n = len(meta)
    if n <= 256:
        # a few rows: plain lists cost less than factorising each column
        cols = [meta[c].tolist() for c in keys]
        if all(isinstance(v, str) for col in cols for v in col):
            index: dict[str, int] = {}
            codes = np.fromiter((index.setdefault("|".join(parts), len(index))
                                 for parts in zip(*cols)), dtype=np.int64, count=n)
            return codes, list(index)
    combined = np.zeros(n, dtype=np.int64)
    uniques = []
    span = 1
    for c in keys:
        col = meta[c].astype(str)
        codes, uniq = pd.factorize(col)
        span *= max(len(uniq), 1)
        if (codes < 0).any() or span >= 2 ** 62:
            k = group_key(meta, keys)
            kc, ku = pd.factorize(k, use_na_sentinel=False)
            return kc.astype(np.int64), [x if isinstance(x, str) else None for x in ku.tolist()]
        combined = combined * len(uniq) + codes
        uniques.append(uniq.tolist())
    ucode, inverse = np.unique(combined, return_inverse=True)
    names = []
    for code in ucode.tolist():
        parts = []
        for uniq in reversed(uniques):
            code, r = divmod(code, len(uniq))
            parts.append(str(uniq[r]))
        names.append("|".join(reversed(parts)))
    return inverse.reshape(-1).astype(np.int64), names
