"""Rank every k-subset of a pool of source languages for a set of target languages.

Why here and vectorised: the app asks for k = 3..6 over the 15 XNLI languages while the user
moves a slider (a 300 ms budget), so all source sets go through the predictor in one batch,
one :class:`TrainConfig` per set shared by its targets (every stage works once per distinct
configuration).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd

from measure.knowledge.train_config import MAX_EXAMPLES, MAX_LANGUAGES, TrainConfig
from predictor.serving.requests import PredictionInputError, Systems, known_language

MAX_COMBINATIONS = 50_000


class Answering(Protocol):
    """What :func:`recommend` needs of a predictor."""

    card: dict[str, Any]
    systems: Systems

    def predict_columns(self, rows: pd.DataFrame) -> dict[str, Any]: ...


def recommend(p: Answering, model: str, targets: Sequence[str], pool: Sequence[str], k: int,
              *, method: str | None = None, objective: str = "mean",
              n_per_language: int | None = None, top: int = 5, include_targets: bool = False,
              max_combinations: int = MAX_COMBINATIONS) -> pd.DataFrame:
    """Rank every k-subset of ``pool`` as source set for ``targets``.

    ``objective`` 'mean' ranks by mean predicted score over the targets, 'worst' by the
    lowest. Each language gets ``n_per_language`` examples (default: the model's typical
    per-language size in the training data). Targets are removed from the pool unless
    ``include_targets`` (zero-shot by default). Returns the ``top`` rows: rank, sources,
    objective, mean, worst, then per target ``{t}``, ``{t}_lower``, ``{t}_upper``;
    ``df.attrs`` holds the settings and the number of combinations.
    """
    method = p.systems.resolve_method(model, method)
    if objective not in ("mean", "worst"):
        raise PredictionInputError(f"objective must be 'mean' or 'worst', got {objective!r}")
    targets, pool, dropped = _targets_and_pool(targets, pool, include_targets)
    if not isinstance(k, int) or k < 1 or k > len(pool):
        raise PredictionInputError(f"k must be between 1 and the pool size {len(pool)} "
                                   f"(after removing targets {dropped}), got {k}")
    if isinstance(max_combinations, bool) or not isinstance(max_combinations, int) \
            or max_combinations < 1:
        raise PredictionInputError(f"max_combinations must be a whole number >= 1, got "
                                   f"{str(max_combinations)[:30]}")
    n_comb = math.comb(len(pool), k)
    if n_comb > max_combinations:
        raise PredictionInputError(
            f"{n_comb:,} source sets (C({len(pool)},{k})) exceed the cap of "
            f"{max_combinations:,}: shrink the pool, lower k or raise max_combinations")
    if n_per_language is None:
        n_per_language = int(p.systems.info(model, method)["typical_n_per_language"])
    if isinstance(n_per_language, bool) or not isinstance(n_per_language, int) \
            or not 1 <= n_per_language <= MAX_EXAMPLES:
        raise PredictionInputError(f"n_per_language must be a whole number in 1..{MAX_EXAMPLES:,}"
                                   f", got {str(n_per_language)[:30]}")
    if not isinstance(top, int) or isinstance(top, bool) or top < 1:
        raise PredictionInputError(f"top must be a whole number >= 1, got {top!r}")
    combos = list(itertools.combinations(pool, k))
    configs = [TrainConfig.of(combo, n_per_language) for combo in combos]
    n_rows = len(combos) * len(targets)
    rows = pd.DataFrame({"model": [model] * n_rows, "method": [method] * n_rows,
                         "train_config": [cfg for cfg in configs for _ in targets],
                         "target": targets * len(combos)})
    sd = float(p.card.get("within_target_residual_sd", {}).get(f"{model}|{method}", 0.0))
    out, margin = _ranking(p.predict_columns(rows), combos, targets, objective, top, sd)
    out.attrs.update({"model": model, "method": method, "objective": objective,
                      "k": k, "n_per_language": n_per_language, "targets": targets,
                      "pool": pool, "dropped_from_pool": dropped,
                      "n_combinations": n_comb, "noise_margin": margin,
                      "n_within_noise_of_best": int(out["within_noise_of_best"].sum())})
    return out


def _targets_and_pool(targets: Sequence[str], pool: Sequence[str], include_targets: bool
                      ) -> tuple[list[str], list[str], list[str]]:
    """(targets, pool, languages dropped from the pool): codes stripped, checked and
    deduplicated by language (``sw`` and ``swh`` are one target; ``en`` and ``eng`` one source:
    a set of both would be one language counted twice); the targets' languages leave the pool
    unless ``include_targets``."""
    targets = _dedupe([str(t) for t in targets])
    pool = _dedupe([str(p) for p in pool])
    if not targets:
        raise PredictionInputError("no targets given")
    for what, codes in (("targets", targets), ("pool", pool)):
        if len(codes) > MAX_LANGUAGES:
            raise PredictionInputError(f"{len(codes):,} {what}; at most {MAX_LANGUAGES}")
    targets, pool = _one_per_language(targets), _one_per_language(pool)
    dropped: list[str] = []
    if not include_targets:
        tiso = {known_language(t) for t in targets}
        dropped = [p for p in pool if known_language(p) in tiso]
        pool = [p for p in pool if p not in dropped]
    return targets, pool, dropped


def _ranking(pred: dict[str, Any], combos: list[tuple[str, ...]], targets: list[str],
             objective: str, top: int, sd: float) -> tuple[pd.DataFrame, float]:
    """(the ``top`` source sets by ``objective``, the ranking noise margin) from the
    predictions of every (set, target) row, set-major, and the within-target residual SD."""
    T = len(targets)
    P = np.asarray(pred["prediction"], dtype=float).reshape(len(combos), T)
    L = np.asarray(pred["lower"], dtype=float).reshape(len(combos), T)
    U = np.asarray(pred["upper"], dtype=float).reshape(len(combos), T)
    B = np.asarray(pred["basis"], dtype=object).reshape(len(combos), T)
    O = np.asarray(pred["out_of_support"], dtype=bool).reshape(len(combos), T)
    mean, worst = P.mean(axis=1), P.min(axis=1)
    obj = mean if objective == "mean" else worst
    order = np.argsort(-obj, kind="stable")[:max(1, top)]
    # ranking noise: two source sets for the same targets differ by more than the
    # predictor can resolve only when the gap exceeds 1.645 * sqrt(2) * the within-target
    # residual SD (held-out targets), divided by sqrt(T) when averaging over T targets
    margin = 1.645 * math.sqrt(2) * sd / math.sqrt(T if objective == "mean" else 1)
    out = pd.DataFrame({"rank": np.arange(1, len(order) + 1),
                        "sources": [list(combos[i]) for i in order],
                        "objective": obj[order], "mean": mean[order], "worst": worst[order],
                        "within_noise_of_best": obj[order[0]] - obj[order] < margin,
                        "basis": [",".join(sorted(set(B[i]))) for i in order],
                        "out_of_support": [bool(O[i].any()) for i in order]})
    for j, t in enumerate(targets):
        out[t] = P[order, j]
        out[f"{t}_lower"] = L[order, j]
        out[f"{t}_upper"] = U[order, j]
    return out, margin


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(i.strip() for i in items if i.strip()))


def _one_per_language(codes: list[str]) -> list[str]:
    """``codes`` checked (the first unknown one raises), the first code of each language kept."""
    seen: dict[str, str] = {}
    for code in codes:
        seen.setdefault(known_language(code), code)
    return list(seen.values())
