"""URIEL distances between languages, as the features ask for them: a matrix per call,
cached per process.

Why a cache here: every featurisation asks for the same few targets against the same few
source languages, and ``measure.knowledge.uriel`` computes a distance from the language
vectors each time. The cache holds single pairs (so a request with one new language
computes only its pairs) and is bounded, so a long-lived app or batch process that sees
many languages cannot grow it without end.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from measure.knowledge import uriel

_PAIR_CACHE: dict[tuple[str, str, str, str], float] = {}
_PAIR_CACHE_MAX = 500_000  # (typology, kind, a, b) distances; ~60 MB at the bound, then reset


def pair_distances(targets: Sequence[str], sources: Sequence[str], kind: str,
                   typology: str = "knn") -> np.ndarray:
    """|targets| x |sources| URIEL distances (ISO 639-3 codes), NaN when unknown, cached.

    Missing pairs are computed in one vectorised ``uriel.distances_for_pairs`` call for
    every kind at once (the other kinds are asked for next anyway); the cache is reset
    when it reaches its bound.
    """
    if len(_PAIR_CACHE) > _PAIR_CACHE_MAX:
        _PAIR_CACHE.clear()
    missing = sorted({(t, s) for t in targets for s in sources
                      if (typology, kind, t, s) not in _PAIR_CACHE})
    if missing:
        a, b = [m[0] for m in missing], [m[1] for m in missing]
        table = uriel.distances_for_pairs(a, b, uriel.DISTANCE_KINDS, typology=typology)
        for k in uriel.DISTANCE_KINDS:
            for t, s, d in zip(a, b, table[k].to_numpy(dtype=float)):
                _PAIR_CACHE[(typology, k, t, s)] = d
                _PAIR_CACHE[(typology, k, s, t)] = d
    out = np.empty((len(targets), len(sources)))
    for i, t in enumerate(targets):
        for j, s in enumerate(sources):
            out[i, j] = _PAIR_CACHE[(typology, kind, t, s)]
    return out
