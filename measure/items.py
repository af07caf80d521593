"""Per-item predictions: which label a cell predicted for each scored pair.

Why: a macro-F1 is a statistic of the items it was scored on, and the targets share items
(XNLI test is 15-way parallel; AmericasNLI translates one set of pairs into every
language), so the item-sampling noise of two targets' scores is correlated. Intervals over
targets treat it as independent. Keeping each cell's per-item predictions lets an analysis
resample the *items* jointly across the targets that translate them (a bootstrap that
reweights an item in every language at once), and recompute any confusion-matrix metric
(macro-F1, kappa, the score above a label-share null) on every replicate.

Storage: the scored items of a target (pair ids and gold labels, in scoring order) are
the same for every cell that scores it with the same settings, so they are stored once as
an *item set* keyed by their hash; each (cell, target) row stores only its predicted
labels, 2 bits each (4 per byte): 500 bytes for an XNLI target's 2,000 items.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from measure.outputs import OutputError, atomic_path

PREDICTION_COLUMNS = ("cell_hash", "target_dataset", "target_language", "target_split",
                      "set_hash", "predicted")
SET_COLUMNS = ("set_hash", "n", "pair_ids", "gold")
#: labels are 0..2 (measure.knowledge.nli.LABELS); 2 bits hold one
BITS = 2
PER_BYTE = 8 // BITS


def pack_labels(labels: np.ndarray) -> bytes:
    """Labels 0..3 packed 4 per byte (first label in the lowest bits)."""
    a = np.asarray(labels)
    if a.size and (a.dtype.kind not in "iub" or a.min() < 0 or a.max() > 3):
        raise ValueError("labels to pack must be integers in 0..3")
    pad = (-len(a)) % PER_BYTE
    a = np.concatenate([a.astype(np.uint8), np.zeros(pad, np.uint8)]).reshape(-1, PER_BYTE)
    shifts = np.arange(PER_BYTE, dtype=np.uint8) * BITS
    return (a << shifts).sum(axis=1, dtype=np.uint16).astype(np.uint8).tobytes()


def unpack_labels(blob: bytes, n: int) -> np.ndarray:
    """The first ``n`` labels of a :func:`pack_labels` blob (int8)."""
    b = np.frombuffer(blob, dtype=np.uint8)
    if len(b) * PER_BYTE < n:
        raise ValueError(f"a packed blob of {len(b)} bytes holds fewer than {n} labels")
    shifts = np.arange(PER_BYTE, dtype=np.uint8) * BITS
    return ((b[:, None] >> shifts) & 0b11).reshape(-1)[:n].astype(np.int8)


@dataclass(frozen=True)
class ItemPredictions:
    """One target's scored items (pair ids and gold labels, in scoring order) and the
    labels a cell predicted for them."""

    pair_ids: np.ndarray
    gold: np.ndarray
    predicted: np.ndarray

    @classmethod
    def of(cls, pair_ids: np.ndarray, gold: np.ndarray, predicted: np.ndarray
           ) -> ItemPredictions:
        p, g, y = (np.asarray(x) for x in (pair_ids, gold, predicted))
        if not (len(p) == len(g) == len(y)):
            raise ValueError(f"{len(p)} pair ids, {len(g)} gold labels, {len(y)} predictions")
        return cls(p.astype(np.int64), g.astype(np.int8), y.astype(np.int8))

    @property
    def pair_id_bytes(self) -> bytes:
        """The pair ids as stored (int64, little-endian)."""
        return self.pair_ids.astype("<i8").tobytes()

    @property
    def set_hash(self) -> str:
        """The item set's key: sha256 of the pair ids and gold labels."""
        h = hashlib.sha256(self.pair_id_bytes)
        h.update(self.gold.astype(np.int8).tobytes())
        return h.hexdigest()

    def confusion(self) -> list[list[int]]:
        """The 3x3 confusion matrix (rows = gold) these predictions give."""
        counts = np.bincount(3 * self.gold.astype(np.int64) + self.predicted, minlength=9)
        return counts[:9].reshape(3, 3).tolist()


def check_items_dir(out: Path) -> None:
    """Refuse an ``--items`` path that is a file (it names a directory of two tables)."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"--items {out} is a file; it names a directory (predictions.parquet "
                          "and item_sets.parquet are written into it)")


def write_items(predictions: pd.DataFrame, item_sets: pd.DataFrame, out: Path) -> Path:
    """Write the two item tables into directory ``out``, each atomically."""
    check_items_dir(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out} ({exc.strerror or exc}); pass another --items")
    for name, frame in (("predictions.parquet", predictions), ("item_sets.parquet", item_sets)):
        with atomic_path(out / name) as tmp:
            frame.to_parquet(tmp, index=False)
    return out


def read_items(directory: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(predictions, item sets) as :func:`write_items` wrote them."""
    d = Path(directory)
    missing = [n for n in ("predictions.parquet", "item_sets.parquet") if not (d / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{d}: no {' or '.join(missing)}; write it with xlt-measure "
                                "export --store STORE --out TABLE --items DIR")
    return pd.read_parquet(d / "predictions.parquet"), pd.read_parquet(d / "item_sets.parquet")


def row_predictions(predictions: pd.DataFrame, item_sets: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, target) with unpacked ``pair_ids``, ``gold`` and ``predicted``
    arrays (for analyses; the stored form is packed)."""
    for frame, cols, what in ((predictions, PREDICTION_COLUMNS, "predictions"),
                              (item_sets, SET_COLUMNS, "item_sets")):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise ValueError(f"{what}.parquet lacks {', '.join(missing)}: not written by "
                             "xlt-measure export --items; export it again")
    sets = {}
    for r in item_sets.itertuples():
        ids = np.frombuffer(r.pair_ids, dtype="<i8")
        if len(ids) != int(r.n):
            raise ValueError(f"item set {r.set_hash[:12]}: {len(ids)} pair ids for n = {r.n}: "
                             "the file is damaged; export it again")
        sets[r.set_hash] = (ids, unpack_labels(r.gold, int(r.n)))
    unknown = sorted(set(predictions["set_hash"]) - set(sets))
    if unknown:
        raise ValueError(f"{len(unknown)} item set(s) named by predictions.parquet are not in "
                         f"item_sets.parquet (first {unknown[0][:12]}): the two files come from "
                         "different exports; export both again")
    out = predictions.drop(columns=["predicted"]).copy()
    out["pair_ids"] = [sets[h][0] for h in predictions["set_hash"]]
    out["gold"] = [sets[h][1] for h in predictions["set_hash"]]
    out["predicted"] = [unpack_labels(b, len(sets[h][0]))
                        for b, h in zip(predictions["predicted"], predictions["set_hash"])]
    return out
