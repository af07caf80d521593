"""Item-level uncertainty: resample the scored items jointly across their translations.

Why: the two-way bootstrap resamples targets and source sets, treating each target's score
as an independent draw. But the targets score translations of the same items (XNLI test is
15-way parallel; the AmericasNLI test sets translate the first XNLI test blocks), so a
lucky or unlucky item sample moves every target together and does not average out over
targets. This module reweights items -- each source item (``measure.knowledge.item_keys``)
gets one Poisson(1) weight per replicate, the same in every language and every cell that
scores it -- recomputes every row's confusion matrix, and with it macro-F1, kappa and the
score above the label-share null, from the per-item predictions ``xlt-measure export
--items`` writes.

How it enters the intervals (a variance-components approximation of a three-way
bootstrap): every bootstrap estimate of the analysis is recomputed on each item replicate
(point estimates only: no two-way draws, no mixed models), its SD across replicates is the
item-sampling SD, and each two-way percentile interval is widened on each side to
``sqrt(side**2 + (1.96 * sd)**2)``. The two-way bootstrap already carries each target's own
item noise as between-target variance, so adding the joint part on top errs wide.
Rows without item predictions (tables measured before they were stored) keep their scores
in every replicate; ``summary["item_bootstrap"]`` says how many rows had them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from measure.items import PREDICTION_COLUMNS, read_items, row_predictions
from measure.knowledge.item_keys import item_keys
from measure.outputs import atomic_write_text
from predictor.metaanalysis.defaults import ITEM_REPS
from predictor.metaanalysis.prepare import LABELS, kappa_and_shares, null_f1

#: what names a result row (the item tables' key)
ROW_KEY = list(PREDICTION_COLUMNS[:4])
CHUNK_ROWS = 4000
Z = 1.959963984540054
RULE = ("each two-way bootstrap interval widened on each side to sqrt(side^2 + (1.96 sd)^2), "
        "sd = the estimate's SD over the item replicates")
#: estimates that cannot leave a range (the labelled target pairs one source is worth is a
#: count, >= 0): a widened interval stops at the range's end
BOUNDS: dict[str, tuple[float, float]] = {"exchange_pairs": (0.0, math.inf)}
#: record fields that identify a record (matched between the analysis and its replicates);
#: fields that depend on the scores (the best source, saturation k, convergence) do not
ID_FIELDS = {"design", "method", "metric", "model", "pool", "regime", "target_class", "target",
             "language", "full_set", "new_best", "k", "k_from", "k_to", "base_size"}


def load_items(dirs: Iterable[str | Path]) -> pd.DataFrame:
    """Unpacked per-item predictions of every row in ``dirs`` (``xlt-measure export
    --items``), one row per (cell, target), with each item's translation key."""
    parts = [row_predictions(*read_items(d)) for d in dirs]
    if not parts:
        return pd.DataFrame(columns=ROW_KEY + ["pair_ids", "gold", "predicted", "keys"])
    out = pd.concat(parts, ignore_index=True).drop_duplicates(ROW_KEY)
    out["keys"] = [item_keys(ds, lang, split, ids) for ds, lang, split, ids in
                   zip(out["target_dataset"], out["target_language"], out["target_split"],
                       out["pair_ids"])]
    return out.reset_index(drop=True)


def replicate_confusions(rows: pd.DataFrame, items: pd.DataFrame, reps: int,
                         seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(confusions (reps, n_rows, 3, 3), has_items (n_rows,)): each row's confusion matrix
    under ``reps`` item reweightings; rows without items keep their stored matrix."""
    conf0 = np.stack([_matrix(c) for c in rows["confusion"]])
    out = np.repeat(conf0[None], reps, axis=0)
    merged = rows[ROW_KEY].reset_index(drop=True).merge(
        items, on=ROW_KEY, how="left", validate="many_to_one")
    has = merged["keys"].notna().to_numpy()
    if not has.any():
        return out, has
    all_keys = np.unique(np.concatenate(merged.loc[has, "keys"].tolist()))
    rng = np.random.default_rng([seed, 104729])
    weights = rng.poisson(1.0, size=(len(all_keys), reps)).astype(np.float32)   # key x rep
    for keys, group in merged[has].groupby(merged.loc[has, "keys"].map(_key_id)):
        idx = group.index.to_numpy()
        k = np.searchsorted(all_keys, merged.at[idx[0], "keys"])
        W = weights[k]                                                   # items x reps
        gold = merged.at[idx[0], "gold"].astype(np.int8)
        preds = group["predicted"].tolist()
        for start in range(0, len(idx), CHUNK_ROWS):      # (rows x items) codes, a chunk at once
            part = idx[start:start + CHUNK_ROWS]
            codes = 3 * gold[None, :] + np.stack(preds[start:start + CHUNK_ROWS])
            for c in range(9):
                counts = (codes == c).astype(np.float32) @ W             # rows x reps
                out[:, part, c // 3, c % 3] = counts.T
    return out, has


def _key_id(keys: np.ndarray) -> bytes:
    return np.asarray(keys, np.int64).tobytes()


def _matrix(confusion: Any) -> np.ndarray:
    """A stored confusion matrix as a (3, 3) float array (zeros when there is none)."""
    m = json.loads(confusion) if isinstance(confusion, str) else confusion
    a = np.asarray(m if m is not None else np.zeros((3, 3)), float)
    return a if a.shape == (3, 3) else np.zeros((3, 3))


def scores_from(conf: np.ndarray) -> dict[str, np.ndarray]:
    """macro-F1 and accuracy (0-100) of confusion matrices (n, 3, 3), rows = gold, as
    ``measure.methods.base.score`` defines them (weighted counts allowed)."""
    tp = np.diagonal(conf, axis1=1, axis2=2)
    denom = conf.sum(axis=2) + conf.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)
        acc = tp.sum(axis=1) / conf.sum(axis=(1, 2))
    return {"macro_f1": 100.0 * f1.mean(axis=1), "accuracy": 100.0 * acc}


def replicate_rows(rows: pd.DataFrame, conf: np.ndarray) -> pd.DataFrame:
    """``rows`` (prepared) with every confusion-derived column recomputed from ``conf``."""
    out = rows.copy()
    s = scores_from(conf)
    out["macro_f1"], out["accuracy"] = s["macro_f1"], s["accuracy"]
    ks = np.array([kappa_and_shares(m) for m in conf], float).reshape(len(out), 4)
    out["kappa"] = ks[:, 0]
    for i, lab in enumerate(LABELS):
        out[f"share_{lab}"] = ks[:, i + 1]
    out["null_f1"] = [null_f1(m) for m in conf]
    out["f1_above_null"] = out["macro_f1"] - out["null_f1"]
    out["confusion"] = list(conf.tolist())
    return out


# -- widening the intervals -----------------------------------------------------------------------
def _pairs(rec: dict[str, Any]) -> list[tuple[str, tuple[str, ...]]]:
    """(point field, interval fields) pairs of one record: ``X`` / ``X_ci``; ``gain`` or
    ``phi`` / ``ci``; ``slope_within`` / ``boot_ci_low``+``boot_ci_high``; ``slope``,
    ``mean`` or ``gain_per_doubling`` / ``ci_low``+``ci_high`` (bootstrap intervals only:
    the mixed model's ``slope`` interval sits beside ``boot_ci_*`` and is left alone)."""
    out = []
    for f, v in rec.items():
        if f.endswith("_ci") and isinstance(v, list) and _num(rec.get(f[:-3])):
            out.append((f[:-3], (f,)))
    if isinstance(rec.get("ci"), list):
        point = next((p for p in ("gain", "phi") if _num(rec.get(p))), None)
        if point:
            out.append((point, ("ci",)))
    if "boot_ci_low" in rec and _num(rec.get("slope_within")):
        out.append(("slope_within", ("boot_ci_low", "boot_ci_high")))
    elif "ci_low" in rec:
        point = next((p for p in ("slope", "mean", "gain_per_doubling") if _num(rec.get(p))),
                     None)
        if point:
            out.append((point, ("ci_low", "ci_high")))
    return out


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _ident(rec: dict[str, Any]) -> tuple:
    """What identifies a record across replicates (:data:`ID_FIELDS`)."""
    return tuple(sorted((f, v) for f, v in rec.items() if f in ID_FIELDS
                        and (v is None or isinstance(v, (str, bool, int)))))


def collect_points(obj: Any, path: tuple, out: dict[tuple, float]) -> None:
    """Every (path of record identities, point field) -> value of a result structure."""
    if isinstance(obj, dict):
        here = (*path, _ident(obj))
        for point, _ in _pairs(obj):
            out[(here, point)] = float(obj[point])
        for f, v in obj.items():
            if isinstance(v, (dict, list)):
                collect_points(v, (*here, f), out)
    elif isinstance(obj, list):
        for v in obj:
            collect_points(v, path, out)


def _widen(obj: Any, path: tuple, sd: dict[tuple, float], counter: list[int]) -> None:
    if isinstance(obj, dict):
        here = (*path, _ident(obj))
        for point, fields in _pairs(obj):
            s = sd.get((here, point))
            # no SD, or 0: no row behind the estimate carries item predictions (or the items
            # do not move it): the interval stays as it is and is not counted as widened
            if s is None or not math.isfinite(s) or s <= 0:
                continue
            # one list field [lo, hi], or two fields lo and hi
            lo, hi = obj[fields[0]] if len(fields) == 1 else (obj[fields[0]], obj[fields[1]])
            if not (_num(lo) and _num(hi)):
                continue
            p, extra = float(obj[point]), (Z * s) ** 2
            low, high = BOUNDS.get(point, (-math.inf, math.inf))
            wide = [max(low, p - math.sqrt((p - lo) ** 2 + extra)),
                    min(high, p + math.sqrt((hi - p) ** 2 + extra))]
            if len(fields) == 1:
                obj[fields[0]] = wide
            else:
                obj[fields[0]], obj[fields[1]] = wide
            counter[0] += 1
        for f, v in obj.items():
            if isinstance(v, (dict, list)):
                _widen(v, (*here, f), sd, counter)
    elif isinstance(obj, list):
        for v in obj:
            _widen(v, path, sd, counter)


def item_sds(replicates: Sequence[dict[str, Any]]) -> dict[tuple, float]:
    """Per (path, record, point field): the SD of the point over the item replicates
    (estimates found in fewer than 3 replicates are left out)."""
    values: dict[tuple, list[float]] = {}
    for res in replicates:
        flat: dict[tuple, float] = {}
        collect_points(res, (), flat)
        for k, v in flat.items():
            values.setdefault(k, []).append(v)
    return {k: float(np.std(v, ddof=1)) for k, v in values.items() if len(v) >= 3}


def widen_with_sds(result: dict[str, Any], sds: dict[tuple, float]) -> int:
    """Widen ``result``'s bootstrap intervals in place by ``sds`` (:func:`item_sds`, or
    :func:`read_item_sds`); estimates without an SD keep their interval. Returns how many
    intervals were widened."""
    counter = [0]
    _widen(result, (), sds, counter)
    return counter[0]


# -- item SDs as a file ---------------------------------------------------------------------------
#: what an item-SD file says it is (``xlt-predict report --item-sds-out`` / ``--item-sds``)
SDS_FORMAT = "xlt item-sampling SDs"
SDS_VERSION = 1


def _as_json(x: Any) -> Any:
    return [_as_json(v) for v in x] if isinstance(x, tuple) else x


def _as_key(x: Any) -> Any:
    return tuple(_as_key(v) for v in x) if isinstance(x, list) else x


def write_item_sds(path: str | Path, sds: dict[tuple, float], info: dict[str, Any]) -> Path:
    """Save the item SDs of one report run (and what they were measured on) as JSON.

    Why a file: item predictions are ~8 MB per table, too large to ship beside every table,
    while the SDs they give are a few hundred kB. A report on tables *without* item
    predictions -- the shipped ones, measured before items were stored -- can then be widened
    by the SDs of a re-measure of the same designs (``--item-sds``); the file records which
    tables those were, so the report can say so."""
    path = Path(path)
    doc = {"format": SDS_FORMAT, "version": SDS_VERSION, "info": info,
           "sds": [[_as_json(k[0]), k[1], round(v, 6)] for k, v in sorted(
               sds.items(), key=lambda kv: json.dumps(_as_json(kv[0])))]}
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, json.dumps(doc, separators=(",", ":")) + "\n")


def read_item_sds(path: str | Path) -> tuple[dict[tuple, float], dict[str, Any]]:
    """(SDs, what they were measured on) of a :func:`write_item_sds` file; ValueError naming
    the file and the fix for anything else (a SD that is negative, NaN or not a number is not
    one)."""
    path = Path(path)
    fix = ("write one with xlt-predict report --measurements TABLES --items DIRS "
           "--item-sds-out FILE")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"--item-sds {path}: not a readable item-SD file ({exc}); {fix}") from None
    if not (isinstance(doc, dict) and doc.get("format") == SDS_FORMAT
            and doc.get("version") == SDS_VERSION and isinstance(doc.get("sds"), list)
            and isinstance(doc.get("info"), dict)):
        raise ValueError(f"--item-sds {path}: not an item-SD file of version {SDS_VERSION}; {fix}")
    sds: dict[tuple, float] = {}
    for i, entry in enumerate(doc["sds"]):
        ok = (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], list)
              and isinstance(entry[1], str) and _num(entry[2]) and entry[2] >= 0)
        if not ok:
            raise ValueError(f"--item-sds {path}: entry {i} is not [path, field, SD >= 0]; {fix}")
        sds[(_as_key(entry[0]), entry[1])] = float(entry[2])
    return sds, doc["info"]


def item_bootstrap(rows: pd.DataFrame, items: pd.DataFrame,
                   analyse_point: Callable[[pd.DataFrame], dict[str, Any]], reps: int = ITEM_REPS,
                   seed: int = 0, log: Callable[[str], None] | None = None
                   ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(the analysis's point estimates on each item replicate, what was resampled)."""
    conf, has = replicate_confusions(rows, items, reps, seed)
    results = []
    for r in range(reps):
        results.append(analyse_point(replicate_rows(rows, conf[r])))
        if log:
            log(f"item replicate {r + 1}/{reps}")
    n_keys = len(np.unique(np.concatenate(items["keys"].tolist()))) if len(items) else 0
    info = {"replicates": reps, "seed": seed, "rows": int(len(rows)),
            "rows_with_items": int(has.sum()), "source_items": int(n_keys), "rule": RULE}
    return results, info
