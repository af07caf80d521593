"""The results store: idempotent writes, export round trip, readers during writes."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import time
from pathlib import Path

import pandas as pd
import pytest

from measure.store import (CellRecord, ResultStore, StoreError, TargetResult, cell_hash,
                           export_results, read_exported)


def _record(seed: int, langs: dict[str, int] | None = None) -> CellRecord:
    cfg = {"model": "me5-small", "method": "probe", "train_dataset": "xnli",
           "train_split": "validation", "regime": "per_language",
           "train_config": langs or {"en": 100, "de": 100}, "seed": seed}
    results = [TargetResult("xnli", t, "test", 50.0 + seed % 40, 51.0 + seed % 40, 30,
                             [[10, 0, 0], [0, 10, 0], [0, 0, 10]]) for t in ("en", "sw", "de")]
    return CellRecord(config=cfg, results=results, train_seconds=1.0, eval_seconds=0.5)


def test_hash_is_canonical() -> None:
    a = {"x": 1, "y": {"b": 2, "a": 1}}
    b = {"y": {"a": 1, "b": 2}, "x": 1}
    assert cell_hash(a) == cell_hash(b) and cell_hash(a) != cell_hash({"x": 2, "y": {}})


def test_idempotent_by_hash(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "s.sqlite") as store:
        assert store.put_cell(_record(0)) is True
        assert store.put_cell(_record(0)) is False            # same cell: skipped
        assert store.put_cell(_record(1)) is True
        df = store.results_frame()
        assert len(df) == 6 and df["cell_hash"].nunique() == 2
        assert store.summary()["cells_done"] == 2
        # WAL mode is on, so readers never block the writer
        assert store._con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_failed_cell_is_retried(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "s.sqlite") as store:
        failed = _record(3)
        failed.status, failed.results, failed.error = "failed", [], "boom"
        assert store.put_cell(failed)
        assert not store.has_cell(failed.hash)
        assert store.put_cell(_record(3))
        assert store.has_cell(failed.hash) and len(store.results_frame()) == 3
        assert store.failed_cells().empty


def test_invalid_rows_roll_back_whole_cell(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "s.sqlite") as store:
        bad = _record(4)
        bad.results[1].macro_f1 = 140.0          # violates the 0-100 CHECK
        with pytest.raises(sqlite3.IntegrityError):
            store.put_cell(bad)
        assert store.summary()["cells_done"] == 0 and store.summary()["result_rows"] == 0


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_export_round_trip(tmp_path: Path, suffix: str) -> None:
    with ResultStore(tmp_path / "s.sqlite") as store:
        for seed in range(3):
            store.put_cell(_record(seed, {"en": 10, "sw": 0, "de": 5}))
        original = store.results_frame()
        out = export_results(store, tmp_path / f"r{suffix}")
    back = read_exported(out)
    assert len(back) == len(original) == 9
    pd.testing.assert_frame_equal(back.reset_index(drop=True), original.reset_index(drop=True),
                                  check_dtype=False)
    # train_config with n == 0 does not count towards k, and "sw" is zero-shot
    assert set(back["k"]) == {2}
    assert back.loc[back["target_language"] == "sw", "zero_shot"].all()
    assert not back.loc[back["target_language"] == "en", "zero_shot"].any()


def test_export_rejects_unknown_format(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "s.sqlite") as store:
        with pytest.raises(ValueError, match=r"use \.parquet or \.csv"):
            export_results(store, tmp_path / "r.xlsx")


def test_readonly_missing_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        ResultStore(tmp_path / "missing.sqlite", readonly=True)


def test_not_a_store(tmp_path: Path) -> None:
    p = tmp_path / "junk.sqlite"
    p.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable xlt results store"):
        ResultStore(p)


def _writer(path: str, n: int) -> None:
    with ResultStore(path) as store:
        for seed in range(n):
            store.put_cell(_record(seed))
            time.sleep(0.005)


def test_concurrent_reader_during_writes(tmp_path: Path) -> None:
    """A reader in this process polls while another process writes: it always sees whole cells."""
    path = tmp_path / "s.sqlite"
    ResultStore(path).close()
    n = 150
    proc = mp.get_context("spawn").Process(target=_writer, args=(str(path), n))
    proc.start()
    seen = []
    with ResultStore(path, readonly=True) as reader:
        deadline = time.time() + 60
        while proc.is_alive() and time.time() < deadline:
            df = reader.results_frame()
            # every visible cell has all of its 3 targets: commits are atomic per cell
            assert (df.groupby("cell_hash").size() == 3).all()
            seen.append(df["cell_hash"].nunique())
        proc.join(60)
        assert proc.exitcode == 0
        final = reader.results_frame()
    assert final["cell_hash"].nunique() == n and len(final) == 3 * n
    assert len(seen) > 3 and seen == sorted(seen)            # monotone progress, no stalls
    assert 0 < max(seen[:-1] or [1]) <= n
