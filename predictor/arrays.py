"""Array helpers the predictor's packages share: distinct keys and configurations found by
hashing, and one thread for native libraries during a prediction.

Why shared: a Recommend request featurises thousands of source sets for a few targets, and
every stage (features, the measured-target memory, support reasons, profile imputation,
class policy) must work once per *distinct* configuration or key, not once per row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import ThreadpoolController

from measure.knowledge.train_config import TrainConfig


def first_seen(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(code of each key, numbered in order of first appearance; the position of each code's
    first appearance) of a 1-d array, by hashing (no sort)."""
    codes, _ = pd.factorize(np.asarray(keys))
    codes = codes.astype(np.int64)
    if not len(codes):
        return codes, np.zeros(0, dtype=np.int64)
    # codes are numbered as they first appear: the running maximum steps up exactly there
    steps = np.flatnonzero(np.diff(np.maximum.accumulate(codes), prepend=-1) > 0)
    return codes, steps


def distinct(items: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(index of each item's distinct value, numbered in order of first appearance; the
    position of each distinct value's first appearance), for hashable items.

    Why: a Recommend request holds thousands of source sets, each once per target; a
    :class:`~measure.knowledge.train_config.TrainConfig` hashes once, so every stage finds a
    batch's distinct configurations in one pass."""
    index: dict[Any, int] = {}
    codes = np.fromiter((index.setdefault(x, len(index)) for x in items), dtype=np.int64,
                        count=len(items))
    first = np.full(len(index), len(items), dtype=np.int64)
    np.minimum.at(first, codes, np.arange(len(items)))
    return codes, first


def configs_of(values: Any) -> list[TrainConfig]:
    """The ``train_config`` column of a model's input as :class:`TrainConfig` objects (those
    made where a request entered come back as they are; a plain mapping from an internal
    table is read without a language look-up)."""
    return [TrainConfig.coerce(v) for v in values]


_CONTROLLER: ThreadpoolController | None = None


def one_thread() -> Any:
    """``threadpool_limits(limits=1)`` through one controller made at the first call.

    Why: HistGradientBoosting's OpenMP threads stall on a busy machine while prediction
    batches are small; and a new ``threadpool_limits`` scans every loaded library on each
    call, so the controller is made once (by then the models' native libraries are loaded)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1)
