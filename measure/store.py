"""The results store: SQLite in WAL mode, one row per cell and one per (cell, target).

Why SQLite/WAL: a measurement batch writes for hours while the app (or
``xlt-measure status``) reads; WAL lets readers see the last committed state without
blocking the writer, and each finished cell is committed in one transaction together
with its per-target rows, so a crash (even ``kill -9``) loses at most the cells in
flight and never leaves a cell with half its targets.

Schema (``SCHEMA_VERSION`` 1)::

    cells(cell_hash TEXT PRIMARY KEY,  -- sha256 of the canonical JSON config
          config_json TEXT,            -- everything that determines the cell
          model, method, train_dataset, train_split, regime TEXT,
          train_config_json TEXT,      -- {language: n_examples}
          k INTEGER,                   -- languages with n > 0
          total_examples INTEGER, seed INTEGER,
          status TEXT,                 -- 'done' or 'failed'
          error TEXT, started_at REAL, finished_at REAL,
          train_seconds REAL, eval_seconds REAL, code_version TEXT)
    results(cell_hash TEXT REFERENCES cells, target_dataset, target_language,
            target_split TEXT, macro_f1 REAL (0-100), accuracy REAL (0-100),
            n INTEGER, confusion_json TEXT (3x3, rows = gold), eval_seconds REAL,
            PRIMARY KEY (cell_hash, target_dataset, target_language, target_split))
    item_sets(set_hash TEXT PRIMARY KEY,  -- measure.items: the scored items of a target
              n INTEGER, pair_ids BLOB (int64 LE), gold BLOB (2-bit packed))
    item_predictions(cell_hash, target_dataset, target_language, target_split TEXT,
                     set_hash TEXT REFERENCES item_sets,
                     predicted BLOB (2-bit packed, in the item set's order),
                     PRIMARY KEY (cell_hash, target_dataset, target_language, target_split))

The two item tables were added within schema 1: a store from before them gets them (empty)
when it is next opened for writing; its earlier cells have no item predictions.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pandas as pd

# CellRecord, TargetResult and cell_hash are defined in measure.cell; they are importable from
# here too, as the records this store files.
from measure.cell import CellRecord, TargetResult, canonical_json, cell_dict, cell_hash  # noqa: F401
from measure.items import PREDICTION_COLUMNS, SET_COLUMNS, pack_labels, write_items
from measure.outputs import OutputError, atomic_path, same_file

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS cells (
    cell_hash TEXT PRIMARY KEY,
    config_json TEXT NOT NULL,
    model TEXT NOT NULL,
    method TEXT NOT NULL,
    train_dataset TEXT NOT NULL,
    train_split TEXT NOT NULL,
    regime TEXT NOT NULL,
    train_config_json TEXT NOT NULL,
    k INTEGER NOT NULL,
    total_examples INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    error TEXT,
    started_at REAL,
    finished_at REAL,
    train_seconds REAL,
    eval_seconds REAL,
    code_version TEXT
);
CREATE TABLE IF NOT EXISTS results (
    cell_hash TEXT NOT NULL REFERENCES cells(cell_hash),
    target_dataset TEXT NOT NULL,
    target_language TEXT NOT NULL,
    target_split TEXT NOT NULL,
    macro_f1 REAL NOT NULL CHECK (macro_f1 BETWEEN 0 AND 100),
    accuracy REAL NOT NULL CHECK (accuracy BETWEEN 0 AND 100),
    n INTEGER NOT NULL,
    confusion_json TEXT NOT NULL,
    eval_seconds REAL,
    PRIMARY KEY (cell_hash, target_dataset, target_language, target_split)
);
CREATE TABLE IF NOT EXISTS item_sets (
    set_hash TEXT PRIMARY KEY,
    n INTEGER NOT NULL,
    pair_ids BLOB NOT NULL,
    gold BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS item_predictions (
    cell_hash TEXT NOT NULL REFERENCES cells(cell_hash),
    target_dataset TEXT NOT NULL,
    target_language TEXT NOT NULL,
    target_split TEXT NOT NULL,
    set_hash TEXT NOT NULL REFERENCES item_sets(set_hash),
    predicted BLOB NOT NULL,
    PRIMARY KEY (cell_hash, target_dataset, target_language, target_split)
);
"""


def code_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return f"xlt {version('xlt')}"
    except PackageNotFoundError:
        return "xlt (not installed)"


class StoreError(RuntimeError):
    pass


XLT_TABLES = {"meta", "cells", "results"}


def _db_errors(method):
    """Turn SQLite errors on a damaged store into StoreError naming the file (no traceback)."""
    import functools

    @functools.wraps(method)
    def wrapper(self: "ResultStore", *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.DatabaseError, pd.errors.DatabaseError) as exc:
            raise StoreError(f"{self.path}: the results store is damaged or unreadable ({exc}); "
                             "restore it from a copy or export what is readable") from None
    return wrapper


class StoreBusyError(StoreError):
    """Another run holds the store's lock file."""


class ResultStore:
    """Thin, explicit wrapper around the SQLite file; safe for one writer and many readers.

    ``readonly``: opened with SQLite's ``mode=ro`` (never written); if the file or its
    directory is read-only and SQLite cannot read the WAL in place, the store (and its WAL)
    is read from a private temporary copy instead, so ``status``/``export`` still work.
    ``lock``: hold an exclusive lock file (``<store>.lock``, ``fcntl.flock``) for the
    object's lifetime, so a second ``xlt-measure run`` on a busy store fails at once
    (:class:`StoreBusyError`) instead of repeating the work; the kernel releases the lock
    when the process dies, even on ``kill -9``.
    A file that is not SQLite, a damaged one, or an SQLite database without xlt's tables
    (a foreign file) is refused with :class:`StoreError` and never written into.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False, lock: bool = False) -> None:
        self.path = Path(path)
        self._lock_file: Any = None
        self._tmpdir: str | None = None
        if self.path.is_dir():
            raise StoreError(f"store {self.path} is a directory; pass a file such as "
                             f"{self.path / 'xlt.sqlite'}")
        if readonly and not self.path.exists():
            raise StoreError(f"store {self.path} does not exist; run `xlt-measure run` first "
                             "or pass --store PATH")
        existing = self.path.is_file() and self.path.stat().st_size > 0
        if existing:
            self._inspect()  # refuse foreign or damaged files before anything writes
        if not readonly:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the store's directory {self.path.parent} "
                                 f"({exc.strerror or exc}); pass another --store") from None
            if lock:
                self._acquire_lock()
        try:
            if readonly:
                self._con = self._connect_readonly()
            else:
                self._con = sqlite3.connect(self.path, timeout=60, isolation_level=None,
                                            check_same_thread=False)
                self._con.execute("PRAGMA busy_timeout = 60000")
                self._con.execute("PRAGMA journal_mode = WAL")
                self._con.execute("PRAGMA synchronous = NORMAL")
                self._con.executescript(_SCHEMA)
                self._con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                                  (str(SCHEMA_VERSION),))
            self._check_schema()
        except sqlite3.DatabaseError as exc:
            self._release()
            raise StoreError(f"{self.path}: not a usable xlt results store ({exc})") from None
        except BaseException:
            self._release()
            raise

    # -- opening -------------------------------------------------------------------
    def _uri(self, path: Path) -> str:
        from urllib.parse import quote
        return f"file:{quote(str(path.resolve()))}?mode=ro"

    def _inspect(self) -> None:
        """Is the existing file an xlt store? (read-only look: foreign files stay untouched)"""
        try:
            con = self._connect_ro(self.path)
        except sqlite3.OperationalError:
            return  # unreadable in place (read-only directory): the readonly open copes
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a usable xlt results store: not SQLite ({exc}); move it "
                             "away or pass another --store") from None
        try:
            tables = {r[0] for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "meta" in tables:
                self._refuse_newer(con)
            if tables and "meta" not in tables:
                raise StoreError(
                    f"{self.path} is an SQLite database but not an xlt results store (its tables: "
                    f"{', '.join(sorted(tables))}); xlt does not write into it: pass another --store")
            bad = con.execute("PRAGMA quick_check").fetchone()
            if bad is None or bad[0] != "ok":
                raise StoreError(f"{self.path}: the results store is damaged ({bad and bad[0]}); "
                                 "restore it from a copy or pass another --store")
        except sqlite3.OperationalError:
            return
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: the results store is damaged ({exc}); restore it "
                             "from a copy or pass another --store") from None
        finally:
            con.close()

    def _refuse_newer(self, con: sqlite3.Connection) -> None:
        """A store written by a newer xlt (a schema version above ours) is refused before
        anything is opened for writing: no table is created, the journal mode is untouched."""
        row = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        try:
            version = int(row[0]) if row is not None else None
        except (TypeError, ValueError):
            version = None
        if version is not None and version > SCHEMA_VERSION:
            raise StoreError(f"{self.path} was written by a newer xlt (store schema {version}; "
                             f"this xlt reads schema {SCHEMA_VERSION}); it was not touched: "
                             "upgrade xlt, or pass another --store")

    def _connect_ro(self, path: Path) -> sqlite3.Connection:
        con = sqlite3.connect(self._uri(path), uri=True, timeout=60, isolation_level=None,
                              check_same_thread=False)
        try:
            con.execute("PRAGMA busy_timeout = 60000")
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except BaseException:
            con.close()
            raise
        return con

    def _connect_readonly(self) -> sqlite3.Connection:
        try:
            con = self._connect_ro(self.path)
        except sqlite3.OperationalError:
            con = self._connect_copy()
        con.execute("PRAGMA query_only = ON")
        return con

    def _connect_copy(self) -> sqlite3.Connection:
        """Read a store whose directory is read-only (SQLite cannot open its WAL index there)
        from a private copy of the database and its WAL."""
        import shutil
        import tempfile
        self._tmpdir = tempfile.mkdtemp(prefix="xlt-store-")
        copy = Path(self._tmpdir) / self.path.name
        try:
            shutil.copy2(self.path, copy)
            for suffix in ("-wal",):
                side = self.path.with_name(self.path.name + suffix)
                if side.is_file():
                    shutil.copy2(side, copy.with_name(copy.name + suffix))
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot read the store ({exc.strerror or exc})") from None
        return sqlite3.connect(copy, timeout=60, isolation_level=None, check_same_thread=False)

    def _acquire_lock(self) -> None:
        import fcntl
        import os
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            fh = open(lock_path, "a+")
        except OSError as exc:
            raise StoreError(f"cannot create the lock file {lock_path} ({exc.strerror or exc}); "
                             "a run needs a writable store directory") from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise StoreBusyError(f"store {self.path} is busy: another `xlt-measure run` holds "
                                 f"{lock_path} ({holder}); wait for it to finish (it stores every "
                                 "cell this run would) or pass another --store") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        fh.flush()
        self._lock_file = fh

    def _release(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing the descriptor releases the flock
            self._lock_file = None
        if self._tmpdir is not None:
            import shutil
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def _check_schema(self) -> None:
        tables = {r[0] for r in self._con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not XLT_TABLES <= tables:
            raise StoreError(f"{self.path}: not an xlt results store (tables: "
                             f"{', '.join(sorted(tables)) or 'none'}); pass another --store")
        self._refuse_newer(self._con)
        row = self._con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None or str(row[0]) != str(SCHEMA_VERSION):
            raise StoreError(f"{self.path}: schema version {row and row[0]} != {SCHEMA_VERSION}")

    def close(self) -> None:
        try:
            self._con.close()
        finally:
            self._release()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------
    @_db_errors
    def has_cell(self, h: str) -> bool:
        return self._con.execute("SELECT 1 FROM cells WHERE cell_hash=? AND status='done'",
                                 (h,)).fetchone() is not None

    @_db_errors
    def done_hashes(self) -> set[str]:
        return {r[0] for r in self._con.execute("SELECT cell_hash FROM cells WHERE status='done'")}

    def put_cell(self, rec: CellRecord) -> bool:
        """Store a cell and its target rows atomically. Returns False if it was already done.

        Idempotent by cell hash: a done cell is never overwritten or duplicated; a
        previously failed cell is replaced by a new attempt.
        """
        try:
            return self._put_cell(rec)
        except sqlite3.OperationalError as exc:  # disk full, read-only file, I/O error
            raise StoreError(f"{self.path}: cannot write a finished cell ({exc}); the cells "
                             "stored so far are intact: free space / fix permissions and rerun "
                             "the same command to continue") from None

    def _put_cell(self, rec: CellRecord) -> bool:
        h = rec.hash
        cfg = cell_dict(rec.config)
        train_config = cfg["train_config"]
        k = sum(1 for n in train_config.values() if n > 0)
        con = self._con
        con.execute("BEGIN IMMEDIATE")
        try:
            if con.execute("SELECT 1 FROM cells WHERE cell_hash=? AND status='done'",
                           (h,)).fetchone():
                con.execute("ROLLBACK")
                return False
            con.execute("DELETE FROM results WHERE cell_hash=?", (h,))
            con.execute("DELETE FROM item_predictions WHERE cell_hash=?", (h,))
            con.execute("DELETE FROM cells WHERE cell_hash=?", (h,))
            con.execute(
                "INSERT INTO cells VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (h, canonical_json(cfg), cfg["model"], cfg["method"], cfg["train_dataset"],
                 cfg["train_split"], cfg.get("regime", "per_language"), canonical_json(train_config),
                 k, int(sum(train_config.values())), int(cfg["seed"]), rec.status, rec.error,
                 rec.started_at, rec.finished_at or time.time(), rec.train_seconds,
                 rec.eval_seconds, code_version()))
            con.executemany(
                "INSERT INTO results VALUES (?,?,?,?,?,?,?,?,?)",
                [(h, r.dataset, r.language, r.split, float(r.macro_f1), float(r.accuracy), int(r.n),
                  json.dumps(r.confusion), r.eval_seconds) for r in rec.results])
            self._put_items(h, rec.results)
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        return True

    def _put_items(self, h: str, results: list[TargetResult]) -> None:
        """The results' per-item predictions (inside :meth:`_put_cell`'s transaction)."""
        with_items = [r for r in results if r.items is not None]
        if not with_items:
            return
        self._con.executemany(
            "INSERT OR IGNORE INTO item_sets VALUES (?,?,?,?)",
            [(r.items.set_hash, len(r.items.pair_ids), r.items.pair_id_bytes,
              pack_labels(r.items.gold)) for r in with_items])
        self._con.executemany(
            "INSERT INTO item_predictions VALUES (?,?,?,?,?,?)",
            [(h, r.dataset, r.language, r.split, r.items.set_hash,
              pack_labels(r.items.predicted)) for r in with_items])

    # -- reading -------------------------------------------------------------------
    def _has_item_tables(self) -> bool:
        """A store last written before the item tables existed (opened read-only) has none."""
        return {"item_sets", "item_predictions"} <= {r[0] for r in self._con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}

    @_db_errors
    def item_frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(per-item predictions of the done cells' results, the item sets they use), as
        stored (packed; :func:`measure.items.row_predictions` unpacks). Empty frames for a
        store without item predictions."""
        pred_cols, set_cols = list(PREDICTION_COLUMNS), list(SET_COLUMNS)
        if not self._has_item_tables():
            return pd.DataFrame(columns=pred_cols), pd.DataFrame(columns=set_cols)
        pred = pd.read_sql_query(
            "SELECT i.cell_hash, i.target_dataset, i.target_language, i.target_split, "
            "i.set_hash, i.predicted FROM item_predictions i JOIN cells c "
            "ON c.cell_hash = i.cell_hash WHERE c.status = 'done' "
            "ORDER BY i.cell_hash, i.target_dataset, i.target_language, i.target_split",
            self._con)
        sets = pd.read_sql_query("SELECT set_hash, n, pair_ids, gold FROM item_sets "
                                 "ORDER BY set_hash", self._con)
        sets = sets[sets["set_hash"].isin(set(pred["set_hash"]))].reset_index(drop=True)
        return pred[pred_cols], sets[set_cols]

    @_db_errors
    def summary(self) -> dict[str, Any]:
        con = self._con
        cells = dict(con.execute("SELECT status, COUNT(*) FROM cells GROUP BY status").fetchall())
        n_rows = con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        by = con.execute("SELECT model, method, regime, COUNT(*), SUM(train_seconds + eval_seconds) "
                         "FROM cells WHERE status='done' GROUP BY model, method, regime").fetchall()
        return {"path": str(self.path), "cells_done": cells.get("done", 0),
                "cells_failed": cells.get("failed", 0), "result_rows": n_rows,
                "by_model": [{"model": m, "method": me, "regime": rg, "cells": c,
                              "compute_seconds": s} for m, me, rg, c, s in by],
                "by_target": self._by_target()}

    def _by_target(self) -> list[dict[str, Any]]:
        """Macro-F1 per target over the finished cells: all of them, and the zero-shot ones
        (the target language is not among the cell's sources), so a running batch can be
        checked for a broken target (near chance everywhere) before it ends."""
        q = """SELECT r.target_dataset, r.target_split, r.target_language, COUNT(*),
                      AVG(r.macro_f1), MIN(r.macro_f1), MAX(r.macro_f1),
                      SUM(zs), AVG(CASE WHEN zs THEN r.macro_f1 END)
               FROM (SELECT r.*, COALESCE(json_extract(c.train_config_json,
                                  '$."' || r.target_language || '"'), 0) = 0 AS zs
                     FROM results r JOIN cells c USING (cell_hash)
                     WHERE c.status = 'done') r
               GROUP BY r.target_dataset, r.target_split, r.target_language
               ORDER BY r.target_dataset, r.target_split, r.target_language"""
        keys = ("dataset", "split", "language", "cells", "mean_f1", "min_f1", "max_f1",
                "zero_shot_cells", "zero_shot_mean_f1")
        return [dict(zip(keys, row)) for row in self._con.execute(q).fetchall()]

    @_db_errors
    def results_frame(self) -> pd.DataFrame:
        """The tidy table: one row per (cell, target), cell columns repeated."""
        q = """SELECT c.cell_hash, c.model, c.method, c.train_dataset, c.train_split, c.regime,
                      c.train_config_json AS train_config, c.k, c.total_examples, c.seed,
                      r.target_dataset, r.target_language, r.target_split,
                      r.macro_f1, r.accuracy, r.n, r.confusion_json AS confusion,
                      c.train_seconds, r.eval_seconds, c.code_version, c.config_json
               FROM results r JOIN cells c USING (cell_hash)
               WHERE c.status = 'done'
               ORDER BY c.cell_hash, r.target_dataset, r.target_language"""
        df = pd.read_sql_query(q, self._con)
        for col in ("macro_f1", "accuracy", "train_seconds", "eval_seconds"):
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
        if len(df):
            langs = df["train_config"].map(json.loads)
            df["zero_shot"] = [t not in {lang for lang, n in tc.items() if n > 0}
                               for t, tc in zip(df["target_language"], langs)]
        else:
            df["zero_shot"] = pd.Series(dtype=bool)
        return df

    @_db_errors
    def failed_cells(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT cell_hash, config_json, error FROM cells "
                                 "WHERE status='failed'", self._con)


#: files SQLite and the run lock keep beside a store: an export must never land on one
STORE_SIDE_FILES = ("", "-wal", "-shm", "-journal", ".lock")


def check_export_target(out: str | Path, store_path: str | Path) -> None:
    """Refuse (:class:`measure.outputs.OutputError`) an export path that is the store or one
    of its side files (links and relative paths resolved): exporting there destroys the
    results. Cheap: call it before opening the store."""
    store_path = Path(store_path)
    for suffix in STORE_SIDE_FILES:
        if same_file(out, store_path.with_name(store_path.name + suffix)):
            raise OutputError(f"--out {out} is the results store itself"
                              f"{f' (its {suffix} file)' if suffix else ''}; exporting there "
                              "would destroy the results: export to another file, e.g. "
                              "results/table.parquet")


def export_results(store: ResultStore, out: str | Path) -> Path:
    """Write the tidy table as Parquet (``.parquet``) or CSV (``.csv``), atomically: a
    killed or failed export leaves the previous file intact. An ``out`` that is the store
    or one of its side files is refused (:class:`measure.outputs.OutputError`)."""
    out = Path(out)
    if out.suffix not in (".parquet", ".csv"):
        raise ValueError(f"unsupported export format {out.suffix!r}: use .parquet or .csv")
    check_export_target(out, store.path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out.parent} ({exc.strerror or exc}); "
                          "export elsewhere") from None
    df = store.results_frame()
    with atomic_path(out) as tmp:
        if out.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)
    return out


def export_items(store: ResultStore, out: str | Path) -> tuple[Path, int]:
    """Write the store's per-item predictions into directory ``out``
    (:func:`measure.items.write_items`): (the directory, the results rows that have them).
    A store without any is refused, naming why (cells measured before item predictions
    were stored keep none: re-measure them into a new store)."""
    pred, sets = store.item_frames()
    if pred.empty:
        raise StoreError(f"{store.path} holds no per-item predictions: its cells were measured "
                         "before xlt stored them; re-run the batch into a new --store to get "
                         "them (the scores can move a little: int8 vectors depend on the texts "
                         "batched with them, docs/measuring.md)")
    return write_items(pred, sets, Path(out)), len(pred)


def read_exported(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        return pd.read_csv(path)
    raise ValueError(f"unsupported results format {path.suffix!r}: use .parquet or .csv")


#: scores equal to this many decimals are the same measurement (macro-F1 on 0-100)
SCORE_DECIMALS = 6


def repeated_scores(frame: pd.DataFrame, keys: list[str], score: str) -> pd.Series:
    """True for each row that repeats an earlier row's ``keys`` and ``score`` (to
    :data:`SCORE_DECIMALS` decimals): the one rule for "the same measurement twice".

    Why: a k = 1 cell is identical in both budget regimes, and the probe's seeds do not move
    a per-language cell, so the tables hold the same score several times; counting it twice
    is not more evidence (in a fit, a mean, a meta-analysis or a page)."""
    rounded = pd.to_numeric(frame[score], errors="coerce").astype(float).round(SCORE_DECIMALS)
    return frame.assign(__score=rounded).duplicated([*keys, "__score"])
