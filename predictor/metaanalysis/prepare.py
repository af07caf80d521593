"""Measurement rows -> the meta-analysis's rows: the stratum each row belongs to, its target
class, its scores from the confusion matrix, and each repeated measurement once.

Why a step of its own: every estimate downstream reads the same columns and obeys the same
two rules, so they are applied here, once.

* **Never pool** different models, methods, training pools (``train_dataset/train_split``),
  budget regimes or measurement designs: every estimate is for one :data:`STRATA` value;
  the *design* is the table a row came from (``grid`` = the random-set grid
  ``me5-small-probe.parquet``; ``add-one``, ``shapley``, ``greedy`` = the tables of those
  designs).
* **Identical rows count once**: within one stratum, rows with the same training
  configuration, target and score are duplicates (k = 1 cells are the same training data in
  both regimes; per-language seeds change nothing when the budget is the whole pool).

Scores are macro-F1 and Cohen's kappa (×100, chance-corrected) from the stored confusion
matrix, plus the predicted-label shares (column sums) so class collapse is visible. Target
classes are defined from outside the results (``measure.knowledge.coverage.resource_class``):
*absent* = not in the model's pretraining corpus (CC-100 for multilingual-e5-small / XLM-R:
the AmericasNLI languages); *xnli-low* = in CC-100 with less than ``CC100_LOW_GIB`` GiB of
text; *high* = the rest.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from measure.knowledge.coverage import class_rule, resource_class
from measure.knowledge.languages import get_language
from measure.knowledge.nli import LABELS, XNLI_15, pool_name
from measure.store import repeated_scores
from predictor.dataset import read_measurements

#: the target-class rule in one sentence (report, README, the Scaling page)
CLASS_RULE = class_rule(XNLI_15, lambda c: get_language(c).name)
#: the XNLI languages of the low-resource class
LOW_RESOURCE_XNLI = tuple(c for c in XNLI_15 if resource_class(c) == "xnli-low")

#: one experiment: estimates are never pooled across these
STRATA = ["model", "method", "pool", "regime", "design"]
#: the scores every estimate is made for
METRICS = ("macro_f1", "kappa")


def design_of(path: str | Path) -> str:
    """The design a measurement table holds, from its file name.

    ``me5-small-probe.parquet`` → ``grid``; ``me5-small-probe-add-one.parquet`` →
    ``add-one`` (likewise ``-shapley``, ``-greedy``); any other suffix is its own design.
    """
    stem = Path(path).stem
    for suffix in ("add-one", "shapley", "greedy"):
        if stem.endswith("-" + suffix):
            return suffix
    return "grid"


def kappa_and_shares(confusion: Any) -> tuple[float, float, float, float]:
    """Cohen's kappa ×100 and the predicted-label shares (entailment, neutral, contradiction).

    ``confusion`` is the stored 3×3 matrix (JSON or nested list), rows = gold labels.
    """
    m = np.asarray(json.loads(confusion) if isinstance(confusion, str) else confusion, float)
    n = m.sum()
    if m.shape != (3, 3) or n <= 0:
        return math.nan, math.nan, math.nan, math.nan
    po = np.trace(m) / n
    rows, cols = m.sum(axis=1) / n, m.sum(axis=0) / n
    pe = float(rows @ cols)
    kappa = 100.0 * (po - pe) / (1 - pe) if pe < 1 else 0.0
    return float(kappa), *(float(c) for c in cols)


def _set_id(config: dict) -> str:
    return "+".join(sorted(k for k, v in config.items() if v and v > 0))


def prepare(raw: pd.DataFrame, design: str = "grid") -> pd.DataFrame:
    """Measurement rows (``xlt-measure export`` columns) → analysis rows.

    Adds: design, pool, set_id (sorted source languages), config (canonical JSON), target,
    target_class, log2k, kappa, share_entailment/neutral/contradiction.
    """
    df = raw.copy()
    cfgs = df["train_config"].map(lambda s: json.loads(s) if isinstance(s, str) else dict(s))
    df["config"] = cfgs.map(lambda c: json.dumps({k: int(v) for k, v in sorted(c.items()) if v},
                                                 separators=(",", ":")))
    df["set_id"] = cfgs.map(_set_id)
    df["design"] = design
    df["pool"] = [pool_name(d, s) for d, s in zip(df["train_dataset"], df["train_split"])]
    df["target"] = df["target_language"].astype(str)
    classes = {t: resource_class(t) for t in df["target"].unique()}
    df["target_class"] = df["target"].map(classes)
    df["k"] = df["k"].astype(int)
    df["log2k"] = np.log2(df["k"].astype(float))
    df["zero_shot"] = df["zero_shot"].astype(bool)
    ks = [kappa_and_shares(c) for c in df["confusion"]] if "confusion" in df else \
        [(math.nan,) * 4] * len(df)
    arr = np.array(ks, float).reshape(len(df), 4)
    df["kappa"] = arr[:, 0]
    for i, lab in enumerate(LABELS):
        df[f"share_{lab}"] = arr[:, i + 1]
    return df


def load_tables(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Read measurement exports (or stores) and prepare them, each tagged with its design."""
    parts = [prepare(read_measurements(p), design_of(p)) for p in paths]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def deduplicate(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Drop identical rows within a stratum: same config, target and score (any seed)."""
    dup = repeated_scores(df, STRATA + ["config", "target"], "macro_f1")
    return df[~dup], int(dup.sum())


def select(df: pd.DataFrame, keys: Sequence[str], values: Sequence[Any]) -> pd.DataFrame:
    """The rows of ``df`` whose ``keys`` columns equal ``values`` (one stratum or one part)."""
    for key, value in zip(keys, values):
        df = df[df[key] == value]
    return df


def cell_means(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per (set, target): mean score over seeds, number of seeds, log2 k."""
    return df.groupby(["set_id", "target"], as_index=False).agg(
        y=(metric, "mean"), m=(metric, "size"), log2k=("log2k", "first"), k=("k", "first"))
