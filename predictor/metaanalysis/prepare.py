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
  configuration (target shots included), target and score are duplicates (k = 1 cells are
  the same training data in both regimes; per-language seeds change nothing when the budget
  is the whole pool).
* **A probe centred on language means is another method**: rows whose ``config_json`` says
  ``params.centre = "language"`` get the method ``probe-centred`` (:data:`CENTRED_SUFFIX`),
  so the two probes are estimated side by side and never pooled.
* **Target shots belong to the row's own target only**: ``shots`` is the number of labelled
  pairs of the row's target language the cell trained on (the few-shot design); a cell's
  other targets were scored zero-shot after training on the same cell.

Scores are macro-F1 and Cohen's kappa (×100, chance-corrected) from the stored confusion
matrix, plus the predicted-label shares (column sums) so class collapse is visible, and the
*same-label-share null*: the macro-F1 of a classifier that predicts each label as often as
the probe did but independently of the pair (``null_f1``), and the probe's score above it
(``f1_above_null``): what is left of macro-F1 once collapse onto one label is priced in. Target
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
from measure.cell import CENTRED_SUFFIX, method_label, own_shots, stored_options
from measure.store import repeated_scores
from predictor.dataset import read_measurements

#: the target-class rule in one sentence (report, README, the Scaling page)
CLASS_RULE = class_rule(XNLI_15, lambda c: get_language(c).name)
#: the XNLI languages of the low-resource class
LOW_RESOURCE_XNLI = tuple(c for c in XNLI_15 if resource_class(c) == "xnli-low")

#: one experiment: estimates are never pooled across these
STRATA = ["model", "method", "pool", "regime", "design"]
#: the scores every estimate is made for (the mixed model fits these two)
METRICS = ("macro_f1", "kappa")
#: designs whose singles are trained on the full budget of their regime, so a set's member
#: gaps there compare a set with members trained on k times its share (``member_gaps``)
FULL_SINGLE_DESIGNS = ("grid", "add-one", "shapley", "greedy")

#: every measurement design of the meta-analysis: its table's suffix, its config and what it
#: measures (the report says how to measure a design whose table is missing)
DESIGN_TABLES = {
    "dilution": ("design-dilution.toml", "every single source at each share 2,490/k "
                 "(k = 2–15) beside the fixed-total sets, so a set meets its members at equal "
                 "data per member"),
    "few-shot": ("design-few-shot.toml", "n = 0, 25, 100, 400 labelled target pairs added to "
                 "source sets of k = 1, 2, 4, 8 at a fixed total"),
    "add-one": ("design-add-one.toml", "base sets of 1–7 languages and each plus one more "
                "at the same budget"),
}
_SUFFIXES = ("add-one", "shapley", "greedy", "dilution", "few-shot")


def design_of(path: str | Path) -> str:
    """The design a measurement table holds, from its file name.

    ``me5-small-probe.parquet`` → ``grid``; ``me5-small-probe-add-one.parquet`` →
    ``add-one`` (likewise ``-shapley``, ``-greedy``, ``-dilution``, ``-few-shot``); the
    centred re-measure ``...-dilution-centred.parquet`` is the same design (its method says
    centred); any other suffix is its own design.
    """
    stem = Path(path).stem.removesuffix(CENTRED_SUFFIX)
    for suffix in _SUFFIXES:
        if stem.endswith("-" + suffix):
            return suffix
    return "grid"


def measure_command(design: str, centred: bool = False) -> str:
    """The two commands that measure ``design``'s table (the report prints them when the
    table is missing)."""
    config = DESIGN_TABLES[design][0].replace(".toml", CENTRED_SUFFIX + ".toml" if centred
                                              else ".toml")
    name = config.removesuffix(".toml")
    return (f"xlt-measure run measure/configs/{config} --store results/{name}.sqlite "
            f"--workers 2 && xlt-measure export --store results/{name}.sqlite --out "
            f"models/measurements/me5-small-probe-{name.removeprefix('design-')}.parquet")


def kappa_and_shares(confusion: Any) -> tuple[float, float, float, float]:
    """Cohen's kappa ×100 and the predicted-label shares (entailment, neutral, contradiction).

    ``confusion`` is the stored 3×3 matrix (JSON or nested list), rows = gold labels.
    """
    m = _matrix(confusion)
    if m is None:
        return math.nan, math.nan, math.nan, math.nan
    n = m.sum()
    po = np.trace(m) / n
    rows, cols = m.sum(axis=1) / n, m.sum(axis=0) / n
    pe = float(rows @ cols)
    kappa = 100.0 * (po - pe) / (1 - pe) if pe < 1 else 0.0
    return float(kappa), *(float(c) for c in cols)


def null_f1(confusion: Any) -> float:
    """Macro-F1 ×100 of the same-label-share null: a classifier that predicts label j with
    the probe's share q_j, independently of the pair, against the gold shares p_i.

    Why: a probe that collapses onto one label scores above 0 for free; its expected F1 per
    label is 2·p·q / (p + q) (precision p, recall q), so this is the part of macro-F1 that
    label shares alone explain.
    """
    m = _matrix(confusion)
    if m is None:
        return math.nan
    p, q = m.sum(axis=1) / m.sum(), m.sum(axis=0) / m.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(p + q > 0, 2 * p * q / (p + q), 0.0)
    return float(100.0 * f1.mean())


def _matrix(confusion: Any) -> np.ndarray | None:
    if confusion is None or (isinstance(confusion, float) and math.isnan(confusion)):
        return None
    m = np.asarray(json.loads(confusion) if isinstance(confusion, str) else confusion, float)
    return m if m.shape == (3, 3) and m.sum() > 0 else None


def _set_id(config: dict) -> str:
    return "+".join(sorted(k for k, v in config.items() if v and v > 0))


def prepare(raw: pd.DataFrame, design: str = "grid") -> pd.DataFrame:
    """Measurement rows (``xlt-measure export`` columns) → analysis rows.

    Adds: design, pool, set_id (sorted source languages), config (canonical JSON, with the
    cell's target shots), target, target_class, log2k, kappa, share_entailment/neutral/
    contradiction, null_f1, f1_above_null, centre, shots (pairs of the row's own target)
    and n_shots (all the cell's target pairs); a centred probe's method gets
    :data:`CENTRED_SUFFIX`.
    """
    df = raw.copy()
    cfgs = df["train_config"].map(lambda s: json.loads(s) if isinstance(s, str) else dict(s))
    opts = (df["config_json"] if "config_json" in df else pd.Series("", index=df.index)).map(
        stored_options)
    df["centre"] = opts.map(lambda o: o[0])
    shots = opts.map(lambda o: o[1])
    df["config"] = [json.dumps({k: int(v) for k, v in sorted(c.items()) if v},
                               separators=(",", ":"))
                    + (f"|shots={json.dumps(dict(sorted(sh.items())), separators=(',', ':'))}"
                       if sh else "") for c, sh in zip(cfgs, shots)]
    df["set_id"] = cfgs.map(_set_id)
    df["design"] = design
    df["method"] = [method_label(m, c) for m, c in zip(df["method"], df["centre"])]
    df["pool"] = [pool_name(d, s) for d, s in zip(df["train_dataset"], df["train_split"])]
    df["target"] = df["target_language"].astype(str)
    df["shots"] = [own_shots(sh, t) for sh, t in zip(shots, df["target"])]
    df["n_shots"] = shots.map(lambda sh: int(sum(sh.values())))
    classes = {t: resource_class(t) for t in df["target"].unique()}
    df["target_class"] = df["target"].map(classes)
    df["k"] = df["k"].astype(int)
    df["log2k"] = np.log2(df["k"].astype(float))
    df["zero_shot"] = df["zero_shot"].astype(bool)
    confusions = df["confusion"] if "confusion" in df else pd.Series(None, index=df.index)
    ks = [kappa_and_shares(c) for c in confusions]
    arr = np.array(ks, float).reshape(len(df), 4)
    df["kappa"] = arr[:, 0]
    for i, lab in enumerate(LABELS):
        df[f"share_{lab}"] = arr[:, i + 1]
    df["null_f1"] = [null_f1(c) for c in confusions]
    df["f1_above_null"] = df["macro_f1"] - df["null_f1"]
    return df


def load_tables(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Read measurement exports (or stores) and prepare them, each tagged with its design
    and its path (``table``)."""
    parts = [prepare(read_measurements(p), design_of(p)).assign(table=str(p)) for p in paths]
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
