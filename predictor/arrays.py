"""Array helpers the predictor's packages share: distinct keys found by hashing, and one
thread for native libraries during a prediction.

Why shared: a Recommend request featurises thousands of source sets for a few targets, and
every stage (features, the measured-target memory, support reasons, profile imputation,
class policy) must work once per *distinct* configuration or key, not once per row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import ThreadpoolController


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


def distinct_objects(items: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(index of each item's distinct object, the first position of each distinct object),
    by identity: ``items`` holds every object while this runs, so ids are stable.

    Why identity: ``recommend`` shares one configuration object between a source set's
    targets, so an object seen before needs no hashing of its contents."""
    codes, uniq = pd.factorize(np.fromiter(map(id, items), dtype=np.uint64, count=len(items)))
    first = np.full(len(uniq), len(items), dtype=np.int64)
    np.minimum.at(first, codes, np.arange(len(items)))
    return codes.astype(np.int64), first


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
