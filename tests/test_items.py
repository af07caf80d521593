"""Per-item predictions (#22): packed and unpacked losslessly, stored with their cell in
one transaction, exported beside the table, and equal to the stored confusion matrices."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from measure.cli import main as measure_main
from measure.items import (ItemPredictions, pack_labels, read_items, row_predictions,
                           unpack_labels)
from measure.store import CellRecord, ResultStore, StoreError, TargetResult, export_items

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 2000, 2001])
def test_labels_pack_four_to_a_byte_and_back(n: int) -> None:
    labels = np.random.default_rng(n).integers(0, 3, n)
    blob = pack_labels(labels)
    assert len(blob) == -(-n // 4)
    assert unpack_labels(blob, n).tolist() == labels.tolist()
    with pytest.raises(ValueError, match="0..3"):
        pack_labels(np.array([0, 4]))
    with pytest.raises(ValueError, match="fewer than"):
        unpack_labels(blob, n + 5)


def _record(seed: int, items: bool = True) -> CellRecord:
    cfg = {"model": "me5-small", "method": "probe", "train_dataset": "xnli",
           "train_split": "validation", "regime": "per_language",
           "train_config": {"en": 100}, "seed": seed}
    rng = np.random.default_rng(seed)
    results = []
    for lang in ("en", "de"):
        gold = np.repeat([0, 1, 2], 10)
        pred = rng.integers(0, 3, 30)
        it = ItemPredictions.of(np.arange(100, 130), gold, pred)
        results.append(TargetResult("xnli", lang, "test", 50.0, 50.0, 30, it.confusion(),
                                    items=it if items else None))
    return CellRecord(config=cfg, results=results)


def test_the_store_keeps_one_item_set_and_each_rows_predictions(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "s.sqlite") as store:
        assert store.put_cell(_record(0)) and store.put_cell(_record(1))
        assert store.put_cell(_record(2, items=False))            # a record built by hand
        pred, sets = store.item_frames()
    # en and de score the same pair ids with the same gold labels: one item set
    assert len(sets) == 1 and len(pred) == 4
    rows = row_predictions(pred, sets)
    with ResultStore(tmp_path / "s.sqlite", readonly=True) as ro:
        store_frame = ro.results_frame()
    merged = rows.merge(store_frame, on=["cell_hash", "target_dataset", "target_language",
                                         "target_split"])
    for r in merged.itertuples():
        counts = np.bincount(3 * r.gold.astype(int) + r.predicted, minlength=9).reshape(3, 3)
        assert counts.tolist() == json.loads(r.confusion)
        assert r.pair_ids.tolist() == list(range(100, 130))
    assert len(store_frame) == 6


def test_a_failed_write_leaves_no_item_rows(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "s.sqlite") as store:
        bad = _record(5)
        bad.results[1].macro_f1 = 140.0                            # violates the CHECK
        with pytest.raises(sqlite3.IntegrityError):
            store.put_cell(bad)
        pred, sets = store.item_frames()
        assert pred.empty and sets.empty


def test_a_store_from_before_the_item_tables_reads_and_exports(tmp_path: Path, capsys) -> None:
    path = tmp_path / "old.sqlite"
    with ResultStore(path) as store:
        store.put_cell(_record(0, items=False))
    con = sqlite3.connect(path)
    con.execute("DROP TABLE item_predictions")
    con.execute("DROP TABLE item_sets")
    con.commit()
    con.close()
    with ResultStore(path, readonly=True) as store:                # read-only: no new tables
        pred, sets = store.item_frames()
        assert pred.empty and len(store.results_frame()) == 2
        with pytest.raises(StoreError, match="new --store"):
            export_items(store, tmp_path / "items")
    out = tmp_path / "t.parquet"
    assert measure_main(["export", "--store", str(path), "--out", str(out)]) == 0
    assert measure_main(["export", "--store", str(path), "--out", str(out),
                         "--items", str(tmp_path / "items")]) == 2
    assert "holds no per-item predictions" in capsys.readouterr().err
    with ResultStore(path) as store:                               # writable: tables added
        store.put_cell(_record(1))
        assert len(store.item_frames()[0]) == 2


def test_export_items_cli(tmp_path: Path, capsys) -> None:
    path = tmp_path / "s.sqlite"
    with ResultStore(path) as store:
        store.put_cell(_record(0))
    (tmp_path / "afile").write_text("x")
    assert measure_main(["export", "--store", str(path), "--out", str(tmp_path / "t.parquet"),
                         "--items", str(tmp_path / "afile")]) == 2
    assert "names a directory" in capsys.readouterr().err
    assert measure_main(["export", "--store", str(path), "--out", str(tmp_path / "t.parquet"),
                         "--items", str(tmp_path / "items")]) == 0
    assert "per-item predictions of 2 result rows" in capsys.readouterr().out
    pred, sets = read_items(tmp_path / "items")
    assert len(pred) == 2 and len(sets) == 1
    with pytest.raises(FileNotFoundError, match="xlt-measure export"):
        read_items(tmp_path)


@pytest.mark.slow
def test_a_real_batch_stores_items_that_give_its_scores(tmp_path: Path, nli_dir: Path) -> None:
    """The smoke grid: every result row has its items, and they reproduce its confusion
    matrix; the XNLI targets (parallel) share one item set."""
    store = tmp_path / "s.sqlite"
    assert measure_main(["run", str(REPO / "measure" / "configs" / "smoke.toml"), "--store",
                         str(store), "--workers", "1", "--data-dir", str(nli_dir)]) == 0
    assert measure_main(["export", "--store", str(store), "--out", str(tmp_path / "t.parquet"),
                         "--items", str(tmp_path / "items")]) == 0
    rows = row_predictions(*read_items(tmp_path / "items"))
    table = pd.read_parquet(tmp_path / "t.parquet")
    merged = rows.merge(table, on=["cell_hash", "target_dataset", "target_language",
                                   "target_split"])
    assert len(merged) == len(table) == len(rows)
    for r in merged.itertuples():
        counts = np.bincount(3 * r.gold.astype(int) + r.predicted, minlength=9).reshape(3, 3)
        assert counts.tolist() == json.loads(r.confusion) and len(r.gold) == r.n
    xnli = rows[rows["target_dataset"] == "xnli"]
    assert xnli["set_hash"].nunique() == 1


def test_damaged_item_files_are_named(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with ResultStore(path) as store:
        store.put_cell(_record(0))
        export_items(store, tmp_path / "items")
    pred, sets = read_items(tmp_path / "items")
    with pytest.raises(ValueError, match="lacks set_hash"):
        row_predictions(pred.drop(columns=["set_hash"]), sets)
    with pytest.raises(ValueError, match="different exports"):
        row_predictions(pred, sets.iloc[:0])
    short = sets.assign(pair_ids=[b[:16] for b in sets["pair_ids"]])
    with pytest.raises(ValueError, match="damaged"):
        row_predictions(pred, short)
    cut = pred.assign(predicted=[b[:2] for b in pred["predicted"]])
    with pytest.raises(ValueError, match="fewer than"):
        row_predictions(cut, sets)
