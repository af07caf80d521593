"""One tidy training table for the predictor: own measurements plus published results.

Why one table: the predictor, its cross-validation and the app all need the same rows
with the same meaning (one row = one (model, method, training configuration, seed,
target) score on a 0-100 scale), whichever source they came from. Own measurements
come from the results store (SQLite) or its tidy export (Parquet/CSV); published
results are the SumEval 2022 XNLI files (XLM-R large and T-ULRv6 large, fractions of
accuracy, converted to 0-100 here).

Columns of :func:`build_dataset`'s frame (``COLUMNS``)::

    origin         'own' or 'sumeval2022'
    model          model id ('me5-small', 'xlmr', 'tulrv6', ...)
    method         'probe', 'finetune', ...
    task           'xnli' (the 3-way NLI task; AmericasNLI targets are the same task)
    metric         'macro_f1' (own) or 'accuracy' (SumEval)
    regime         'per_language', 'fixed_total' or 'published'
    train_config   dict {language code: n examples}, languages with n > 0 only
    k              number of supervised languages (n > 0)
    total_examples sum of n
    target         the target's dataset code ('sw', 'aym', ...)
    target_iso3    its ISO 639-3 code (group identity for "unseen target" CV)
    target_dataset dataset the score was measured on ('xnli', 'americas_nli')
    score          0-100
    zero_shot      True when the target is not among the supervised languages
    seed           training seed (-1 when unknown, as for SumEval)
    config_id      model + method + canonical train_config (group id for "unseen config" CV)
    pool           where the training examples came from: own rows 'train_dataset/train_split'
                   of the export (e.g. 'xnli/validation', 'xnli_mt9k/train'), SumEval
                   'published'. Different pools are different designs: :func:`single_pool`
                   keeps one per (model, method) for the predictor.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from measure.cell import is_part_split, method_label, stored_options
from measure.knowledge.languages import UnknownLanguageError, resolve_target
from measure.knowledge.nli import is_zero_shot
from measure.knowledge.paths import PUBLISHED, DefaultPathNotFound, resolve_default
from measure.knowledge.train_config import TrainConfig, TrainConfigError

COLUMNS = ["origin", "model", "method", "task", "metric", "regime", "train_config", "k",
           "total_examples", "target", "target_iso3", "target_dataset", "score", "zero_shot",
           "seed", "config_id", "pool", "target_split"]
PUBLISHED_POOL = "published"
UNKNOWN_POOL = "unknown"

# SumEval 2022 XNLI files -> (model id, file name). Both are large models, fully fine-tuned.
SUMEVAL_XNLI = {"xlmr": "XNLI_XLMR.json", "tulrv6": "XNLI_TULRv6Large.json"}
SUMEVAL_DIR = Path("sumeval2022") / "train"

# Own measurements: which score column the predictor learns from.
OWN_METRIC = "macro_f1"
OWN_REQUIRED = ["model", "method", "regime", "train_config", "seed", "target_dataset",
                "target_language", OWN_METRIC]


class DataValidationError(ValueError):
    """Input results that cannot be turned into training rows (the message says where)."""


def default_published_dir() -> Path:
    """``$XLT_PUBLISHED_DIR``, else ``shared/data/published`` beside the working directory or a
    parent of it (the rule every command shares, :mod:`measure.knowledge.paths`); fails naming the paths
    tried."""
    try:
        return resolve_default(PUBLISHED)
    except DefaultPathNotFound as exc:
        raise DataValidationError(str(exc)) from None


def train_config(value: Any, where: str) -> TrainConfig:
    """A training row's configuration, validated once (:class:`TrainConfig`); a bad one is a
    data problem naming ``where``. Zeros are dropped: SumEval lists every language with 0
    for "not used", and ``{'en': 0, 'de': 5}`` is the configuration ``{'de': 5}``."""
    try:
        return TrainConfig.parse(value, where=where)
    except TrainConfigError as exc:
        raise DataValidationError(str(exc)) from None


def config_id(model: str, method: str, train_config: Mapping[str, int]) -> str:
    """Stable group id of a (model, method, training configuration)."""
    return f"{model}|{method}|{TrainConfig.coerce(train_config).json}"


def _row(origin: str, model: str, method: str, metric: str, regime: str,
         train_config: TrainConfig, target: str, target_dataset: str, score: float,
         seed: int, where: str, pool: str = PUBLISHED_POOL,
         target_split: str = "test") -> dict[str, Any]:
    try:
        lang = resolve_target(target)
    except UnknownLanguageError as exc:
        raise DataValidationError(f"{where}: target: {exc}") from None
    if not (isinstance(score, (int, float)) and math.isfinite(score) and 0 <= score <= 100):
        raise DataValidationError(f"{where}: score {score!r} for target {target!r} is not in "
                                  "0-100")
    return {"origin": origin, "model": model, "method": method, "task": "xnli", "metric": metric,
            "regime": regime, "train_config": train_config, "k": train_config.k,
            "total_examples": train_config.total, "target": target,
            "target_iso3": lang.iso639_3, "target_dataset": target_dataset,
            "score": float(score), "zero_shot": is_zero_shot(train_config, target),
            "seed": int(seed),
            "config_id": config_id(model, method, train_config), "pool": pool,
            "target_split": target_split}


def load_sumeval(published_dir: str | Path) -> pd.DataFrame:
    """The SumEval 2022 XNLI results (XLM-R large, T-ULRv6 large) as tidy rows, 0-100."""
    base = Path(published_dir) / SUMEVAL_DIR
    if not base.is_dir():
        raise FileNotFoundError(f"{base} not found: pass the directory holding sumeval2022/ "
                                "(e.g. ../shared/data/published) or use --no-include-published")
    rows: list[dict[str, Any]] = []
    for model, name in SUMEVAL_XNLI.items():
        path = base / name
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path} not found (SumEval 2022 XNLI results for {model})") \
                from None
        except json.JSONDecodeError as exc:
            raise DataValidationError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(records, list):
            raise DataValidationError(f"{path}: expected a list of records")
        for i, rec in enumerate(records):
            where = f"{path} record {i}"
            if not isinstance(rec, dict) or "train_config" not in rec or "eval_results" not in rec:
                raise DataValidationError(f"{where}: expected keys 'train_config' and "
                                          "'eval_results'")
            tc = train_config(rec["train_config"], where)
            if not isinstance(rec["eval_results"], Mapping):
                raise DataValidationError(f"{where}: eval_results must be a mapping")
            for target, frac in rec["eval_results"].items():
                if not isinstance(frac, (int, float)) or not 0 <= frac <= 1:
                    raise DataValidationError(f"{where}: score {frac!r} for {target!r} is not a "
                                              "fraction in 0-1")
                rows.append(_row("sumeval2022", model, "finetune", "accuracy", "published", tc,
                                 target, "xnli", 100.0 * float(frac), -1, where))
    return pd.DataFrame(rows, columns=COLUMNS)


def read_measurements(path: str | Path) -> pd.DataFrame:
    """The store's tidy table from an SQLite store or an exported ``.parquet``/``.csv``."""
    from measure.store import ResultStore, read_exported

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"measurements {path} not found: pass a results store "
                                "(.sqlite) or an export from `xlt-measure export` (.parquet/.csv)")
    if path.suffix in {".sqlite", ".db", ".sqlite3"}:
        with ResultStore(path, readonly=True) as store:
            return store.results_frame()
    try:
        return read_exported(path)
    except ValueError as exc:
        raise DataValidationError(f"{path}: {exc}") from None


def tidy_own(frame: pd.DataFrame, source: str = "measurements") -> pd.DataFrame:
    """Own results (the store's tidy table) -> predictor rows, validating each row."""
    missing = [c for c in OWN_REQUIRED if c not in frame.columns]
    if missing:
        raise DataValidationError(f"{source}: missing columns {missing}; expected the tidy "
                                  "table of `xlt-measure export`")
    rows: list[dict[str, Any]] = []
    has_pool = {"train_dataset", "train_split"} <= set(frame.columns)
    for i, rec in enumerate(frame.to_dict("records")):
        where = f"{source} row {i}"
        centre, shots = stored_options(rec.get("config_json"))
        if shots:   # trained on labelled target pairs: no feature says so, never a row here
            continue
        pool = f"{rec['train_dataset']}/{rec['train_split']}" if has_pool else UNKNOWN_POOL
        tc_raw = rec["train_config"]
        if isinstance(tc_raw, str):
            try:
                tc_raw = json.loads(tc_raw)
            except json.JSONDecodeError as exc:
                raise DataValidationError(f"{where}: train_config is not valid JSON ({exc}): "
                                          f"{tc_raw[:80]!r}") from None
        tc = train_config(tc_raw, where)
        seed = rec["seed"]
        rows.append(_row("own", str(rec["model"]), method_label(str(rec["method"]), centre),
                         OWN_METRIC,
                         str(rec["regime"]), tc, str(rec["target_language"]),
                         str(rec["target_dataset"]), float(rec[OWN_METRIC]),
                         -1 if pd.isna(seed) else int(seed), where, pool,
                         str(rec.get("target_split", "test"))))
    return pd.DataFrame(rows, columns=COLUMNS)


def one_split(frame: pd.DataFrame, splits: Mapping[str, str] | None = None
              ) -> tuple[pd.DataFrame, dict[str, str]]:
    """Keep the rows of one target split per target dataset: ``splits`` maps a dataset to its
    split (e.g. {'americas_nli': 'test/B-of-2'}), else the whole split (never a part of one).

    Why: a target scored on half its test items and on all of them is one measurement twice;
    the split-half profile protocol trains on the half its profiles were not built from."""
    splits = dict(splits or {})
    ts = frame["target_split"].astype(str) if "target_split" in frame else pd.Series(
        "test", index=frame.index)
    keep = ~ts.map(is_part_split).to_numpy()
    chosen: dict[str, str] = {}
    for ds in sorted(frame["target_dataset"].astype(str).unique()):
        sel = (frame["target_dataset"].astype(str) == ds).to_numpy()
        want = splits.pop(ds, None)
        if want is None:
            continue
        if not (sel & (ts == want).to_numpy()).any():
            raise DataValidationError(f"no {ds} rows scored on split {want!r}; splits there: "
                                      f"{', '.join(sorted(ts[sel].unique()))}")
        keep = np.where(sel, (ts == want).to_numpy(), keep)
        chosen[ds] = want
    if splits:
        raise DataValidationError(f"no target dataset {sorted(splits)} in the rows")
    return frame[keep].reset_index(drop=True), chosen


def single_pool(frame: pd.DataFrame, pools: Mapping[str, str] | None = None
                ) -> tuple[pd.DataFrame, dict[str, str], int]:
    """Keep one training pool per (model, method): ``pools`` maps 'model|method' to a pool,
    else the pool with the most rows. Returns (rows, the pool kept per design, rows dropped).

    Why: the same ``{en: 2490}`` trained on human-translated XNLI validation and on
    machine-translated XNLI-MT is two designs with different scores; pooled, the
    predictor would average them and call it one configuration (the same ``config_id``).
    """
    keep = np.zeros(len(frame), bool)
    chosen: dict[str, str] = {}
    mm = (frame["model"].astype(str) + "|" + frame["method"].astype(str)).to_numpy()
    pool = frame["pool"].astype(str).to_numpy()
    for design in sorted(set(mm)):
        sel = mm == design
        counts = pd.Series(pool[sel]).value_counts()
        want = (pools or {}).get(design)
        if want is None:
            want = str(sorted(counts.index, key=lambda p: (-counts[p], p))[0])
        elif want not in counts.index:
            raise DataValidationError(f"pool {want!r} has no rows for {design}; pools there: "
                                      f"{', '.join(sorted(counts.index))}")
        chosen[design] = want
        keep |= sel & (pool == want)
    out = frame[keep].reset_index(drop=True)
    return out, chosen, int((~keep).sum())


def build_dataset(measurements: Sequence[str | Path] = (), *, include_published: bool = True,
                  published_dir: str | Path | None = None) -> pd.DataFrame:
    """The predictor's training table from any mix of stores/exports and SumEval."""
    parts: list[pd.DataFrame] = []
    for path in measurements:
        parts.append(tidy_own(read_measurements(path), source=str(path)))
    if include_published:
        parts.append(load_sumeval(published_dir or default_published_dir()))
    if not parts:
        raise DataValidationError("no training data: pass --measurements PATH and/or "
                                  "--include-published")
    df = pd.concat(parts, ignore_index=True)
    if df.empty:
        raise DataValidationError("the training data has no rows")
    return df


def fingerprint(frame: pd.DataFrame) -> str:
    """sha256 of the training rows in canonical order (recorded in the model card)."""
    cols = ["origin", "model", "method", "regime", "target", "target_dataset", "seed", "score"]
    lines = sorted(json.dumps([*(str(r[c]) if c != "score" else round(float(r[c]), 6)
                                 for c in cols), dict(r["train_config"])], sort_keys=True)
                   for r in frame.to_dict("records"))
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode("utf-8") + b"\n")
    return h.hexdigest()


def model_catalogue(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """One entry per (model, method): origin, metric, targets seen and the most common n per language."""
    out: list[dict[str, Any]] = []
    for (model, method), g in frame.groupby(["model", "method"], sort=True):
        ns = [n for tc in g["train_config"] for n in tc.values()]
        out.append({"model": model, "method": method, "origin": g["origin"].iloc[0],
                    "task": "xnli", "metric": g["metric"].iloc[0], "rows": int(len(g)),
                    "targets": sorted(g["target"].unique().tolist()),
                    # the most common per-language size (ties: the larger), the default
                    # size for `recommend`
                    "typical_n_per_language": int(max(pd.Series(ns).mode())),
                    "max_k": int(g["k"].max())})
    return out
