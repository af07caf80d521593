"""Designs that separate dilution from selection and measure what target data buys (#22).

* **dilution control** (``design-dilution.toml``): every single source measured at each
  share a member of a k-set gets under the fixed total, 2,490 // k examples for k = 2..15,
  3 seeds, beside the fixed-total sets it is compared with (the shipped grid's sampled
  sets: ``sample = { k = [3, 15], sets_per_k = 10, seed = 2026 }`` and 10 sets of k = 2),
  so a set can be compared with its members at equal data per member, in one backend.
* **few-shot arms** (``design-few-shot.toml``): n in {0, 25, 100, 400} labelled pairs of the
  target (from a split that is never scored: ``americas_nli/validation`` for AmericasNLI
  targets, the target's own ``xnli/validation`` for XNLI targets) trained on together with
  source sets of k = 1, 2, 4, 8 under a fixed total of 2,490 (sources get 2,490 - n), 2
  seeds. Targets: four XNLI targets (sw and ur: low-resource in XNLI; hi; de: high) and the
  four AmericasNLI languages with 743 validation pairs (aym, bzd, hch, tar; cni, nah and
  oto have fewer, oto too few for n = 400). An XNLI target is never one of its own sources.
* **the centred re-measure** (``*-centred.toml``): the dilution, add-one and few-shot designs
  with ``[probe] centre = "language"`` (:mod:`measure.methods.probe`): their own cell hashes.

``python -m measure.designs plan`` prints each config's cells and a CPU-time estimate from
the shipped tables (:func:`estimate_seconds`).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from measure.cell import CellSpec
from measure.design_toml import (CENTRED_PROBE, DESIGN_SEED, FIXED_TOTAL_SEEDS, POOL, PROBE,
                                 XNLI_LANGS, group_lines, settings_lines)

TOTAL = 2490
DILUTION_K = range(2, 16)
FEW_SHOT_N = (0, 25, 100, 400)
FEW_SHOT_K = {1: 3, 2: 3, 4: 2, 8: 2}       # k -> source sets drawn per target group
FEW_SHOT_SEEDS = [0, 1]
FEW_SHOT_XNLI = ("sw", "ur", "hi", "de")
FEW_SHOT_AMERICAS = ("aym", "bzd", "hch", "tar")
SHOTS_SPLIT = {"xnli": "xnli/validation", "americas_nli": "americas_nli/validation"}


def _store(name: str) -> list[str]:
    return [f"  xlt-measure run measure/configs/{name}.toml --store results/{name}.sqlite "
            "--workers 2",
            f"  xlt-measure export --store results/{name}.sqlite "
            f"--out models/measurements/me5-small-probe-{name.removeprefix('design-')}.parquet"]


def _probe(centre: bool) -> dict[str, Any]:
    return CENTRED_PROBE if centre else PROBE


def _suffix(centre: bool) -> str:
    return "-centred" if centre else ""


def dilution_config(centre: bool = False) -> str:
    """Singles at every share 2,490 // k (k = 2..15) and the sets they are compared with."""
    name = f"design-dilution{_suffix(centre)}"
    lines = settings_lines(name, [
        "Meta-analysis v3 design: dilution control. Every single source at each share a member of",
        f"a k-set gets under the fixed total ({TOTAL} // k examples, k = 2..15; floor, so at most",
        "one example fewer than the set's first members), 3 seeds, beside the fixed-total sets",
        "(the shipped grid's sampled sets for k = 3..15 and 10 sampled pairs), so a set and its",
        "members are compared at equal data per member."
        + (" Probe centred on each language's mean." if centre else ""),
        *_store(name)], probe=_probe(centre))
    for k in DILUTION_K:
        lines += group_lines(f"every single source at the k = {k} share: {TOTAL // k} examples",
                             {"pool": POOL, "singles": True, "budget": {"total": TOTAL // k},
                              "regimes": ["fixed_total"], "seeds": FIXED_TOTAL_SEEDS})
    lines += group_lines("10 sampled pairs (k = 2), fixed total",
                         {"pool": POOL, "sample": {"k": [2, 2], "sets_per_k": 10,
                                                   "seed": DESIGN_SEED},
                          "regimes": ["fixed_total"], "seeds": FIXED_TOTAL_SEEDS})
    lines += group_lines("the shipped grid's k-sweep sets (k = 3..15), fixed total",
                         {"pool": POOL, "sample": {"k": [3, 15], "sets_per_k": 10,
                                                   "seed": DESIGN_SEED},
                          "regimes": ["fixed_total"], "seeds": FIXED_TOTAL_SEEDS})
    return "\n".join(lines) + "\n"


def few_shot_sets(rng: random.Random, exclude: Sequence[str] = ()
                  ) -> list[tuple[str, ...]]:
    """``FEW_SHOT_K[k]`` distinct source sets of each k, from the 15 minus ``exclude``."""
    pool = sorted(set(XNLI_LANGS) - set(exclude))
    out: list[tuple[str, ...]] = []
    for k, n in FEW_SHOT_K.items():
        combos = list(itertools.combinations(pool, k))
        out += sorted(rng.sample(combos, min(n, len(combos))))
    return out


def few_shot_groups(seed: int = DESIGN_SEED) -> list[tuple[str, dict[str, Any],
                                                          list[tuple[str, ...]]]]:
    """[(comment, group keys, source sets)] of the few-shot design: one group for the
    AmericasNLI targets (shared sets from all 15), one per XNLI target (sets without it).
    One ``random.Random(seed)`` draws every set, in this order."""
    rng = random.Random(seed)
    groups = []
    targets = [("americas_nli", FEW_SHOT_AMERICAS)] + [("xnli", (t,)) for t in FEW_SHOT_XNLI]
    for dataset, langs in targets:
        exclude = langs if dataset == "xnli" else ()
        sets = few_shot_sets(rng, exclude)
        keys = {"pool": POOL, "regimes": ["fixed_total"], "seeds": FEW_SHOT_SEEDS,
                "shots": {"split": SHOTS_SPLIT[dataset], "languages": list(langs),
                          "n": list(FEW_SHOT_N)}}
        comment = (f"{'+'.join(langs)}: n = {', '.join(map(str, FEW_SHOT_N))} shots from "
                   f"{SHOTS_SPLIT[dataset]}, k = {', '.join(map(str, FEW_SHOT_K))}")
        groups.append((comment, keys, sets))
    return groups


def few_shot_config(centre: bool = False) -> str:
    """The few-shot arms: target shots added to source sets at a fixed total."""
    name = f"design-few-shot{_suffix(centre)}"
    lines = settings_lines(name, [
        "Meta-analysis v3 design: what labelled target pairs buy. n = 0, 25, 100, 400 pairs of the",
        "target (from a split never scored) trained on with source sets of k = 1, 2, 4, 8, fixed",
        f"total {TOTAL} (the sources get {TOTAL} - n), 2 seeds; one cell per (set, target, n);",
        "n = 0 is the plain cell. XNLI targets sw, ur, hi, de (never their own source) and",
        "AmericasNLI aym, bzd, hch, tar; sets drawn with random.Random(2026)."
        + (" Probe centred on each language's mean." if centre else ""),
        *_store(name)], probe=_probe(centre))
    for comment, keys, sets in few_shot_groups():
        lines += group_lines(comment, keys, [(f"k = {k}", [s for s in sets if len(s) == k])
                                             for k in FEW_SHOT_K])
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# what a config costs
# --------------------------------------------------------------------------------------
def cell_seconds(tables: Sequence[Path]) -> pd.Series:
    """Median seconds of a shipped probe cell (training + scoring every target) by its
    number of training examples, from the cell tables ``tables``."""
    frames = [pd.read_parquet(p, columns=["cell_hash", "method", "total_examples",
                                          "train_seconds", "eval_seconds"]) for p in tables]
    df = pd.concat(frames)
    df = df[df["method"] == "probe"]
    cells = df.groupby("cell_hash").agg(n=("total_examples", "first"),
                                        train=("train_seconds", "first"),
                                        score=("eval_seconds", "sum"))
    return (cells["train"] + cells["score"]).groupby(cells["n"]).median()


def estimate_seconds(cells: Sequence[CellSpec], per_n: pd.Series) -> float:
    """CPU seconds of ``cells`` (one worker): each cell at the median time of shipped cells
    with as many training examples (sources + shots), interpolated; cells smaller than the
    smallest shipped ones count at its time (an overestimate). Embedding not included."""
    n = np.array([c.total_examples + c.n_shots for c in cells], dtype=float)
    return float(np.interp(n, per_n.index.to_numpy(float), per_n.to_numpy(float)).sum())


def describe_cost(name: str, cells: Sequence[CellSpec], per_n: pd.Series) -> str:
    """One line: a config's cells, how many are centred or carry shots, its CPU time."""
    secs = estimate_seconds(cells, per_n)
    centred = sum(1 for c in cells if c.params.get("centre", "none") == "language")
    shots = sum(1 for c in cells if c.target_shots)
    extra = ", ".join(x for x in (f"{centred} centred" if centred else "",
                                  f"{shots} with target shots" if shots else "") if x)
    return (f"{name}: {len(cells)} cells{f' ({extra})' if extra else ''}, about "
            f"{secs / 60:.0f} CPU-minutes ({secs / 3600:.2f} h on one worker)")
