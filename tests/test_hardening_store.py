"""Issue #13: runs and stores — a busy store, dead workers, a killed driver, and corrupt,
foreign or read-only store files all get a clean answer and are never written into."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from _cells import spec

from measure.cell import CellRecord, CellSpec, TargetResult
from measure.methods.base import RunContext
from measure.store import ResultStore, StoreBusyError, StoreError

REPO = Path(__file__).resolve().parent.parent


def _record(seed: int) -> CellRecord:
    cfg = {"model": "me5-small", "method": "probe", "train_dataset": "xnli",
           "train_split": "validation", "regime": "per_language",
           "train_config": {"en": 100}, "seed": seed}
    return CellRecord(config=cfg, results=[TargetResult("xnli", "sw", "test", 50.0, 51.0, 30,
                                                        [[10, 0, 0], [0, 10, 0], [0, 0, 10]])])


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "measure.cli", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})


# ------------------------------------------------------------------ busy store

def test_second_writer_with_lock_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with ResultStore(path, lock=True):
        with pytest.raises(StoreBusyError, match="busy.*pid"):
            ResultStore(path, lock=True)
        with ResultStore(path, readonly=True) as reader:     # readers are never blocked
            assert reader.summary()["cells_done"] == 0
    with ResultStore(path, lock=True) as store:              # released on close
        store.put_cell(_record(0))


def test_cli_run_on_busy_store_exits_2(tmp_path: Path, nli_dir: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('model = "me5-small"\nmethod = "probe"\n[budget]\nper_language = 10\n'
                   '[[targets]]\nsplit = "xnli/test"\nlanguages = ["en"]\n'
                   '[[sources]]\npool = "xnli/validation"\nsingles = true\nlanguages = ["en"]\n')
    path = tmp_path / "s.sqlite"
    with ResultStore(path, lock=True):
        proc = _cli("run", str(cfg), "--store", str(path), "--data-dir", str(nli_dir))
    assert proc.returncode == 2 and "is busy" in proc.stderr and "Traceback" not in proc.stderr


# ------------------------------------------------------------- bad store files

def test_foreign_sqlite_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE users (id INTEGER, name TEXT)")
    con.execute("INSERT INTO users VALUES (1, 'a')")
    con.commit()
    con.close()
    before = _sha(path)
    for kwargs in ({}, {"readonly": True}, {"lock": True}):
        with pytest.raises(StoreError, match="not an xlt results store.*users"):
            ResultStore(path, **kwargs)
    for args in (["status", "--store", str(path)],
                 ["export", "--store", str(path), "--out", str(tmp_path / "x.csv")]):
        proc = _cli(*args)
        assert proc.returncode == 2 and "not an xlt results store" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert _sha(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]   # no -wal/-shm/lock left


@pytest.mark.parametrize("damage", ["garbage", "pages", "truncated"])
def test_damaged_store_clean_error(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "s.sqlite"
    with ResultStore(path) as store:
        for seed in range(300):
            store.put_cell(_record(seed))
    data = bytearray(path.read_bytes())
    if damage == "garbage":
        data = bytearray(b"this is not sqlite" * 500)
    elif damage == "pages":
        data[4096 * 2: 4096 * 6] = os.urandom(4096 * 4)     # header fine, b-tree pages garbage
    else:
        data = data[: len(data) // 2]
    path.write_bytes(bytes(data))
    for args in (["status", "--store", str(path)],
                 ["export", "--store", str(path), "--out", str(tmp_path / "x.csv")]):
        proc = _cli(*args)
        assert proc.returncode == 2, proc.stderr
        assert str(path) in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("suffix", ["", "-wal", ".lock"])
def test_export_onto_the_store_is_refused(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / "s.sqlite"
    with ResultStore(path) as store:
        store.put_cell(_record(0))
    before = _sha(path)
    proc = _cli("export", "--store", str(path), "--out", str(path) + suffix)
    assert proc.returncode == 2 and "results store itself" in proc.stderr
    assert _sha(path) == before
    with ResultStore(path, readonly=True) as store:
        assert store.summary()["cells_done"] == 1


def test_store_path_is_a_directory(tmp_path: Path) -> None:
    proc = _cli("status", "--store", str(tmp_path))
    assert proc.returncode == 2 and "is a directory" in proc.stderr


def test_readonly_store_read_from_a_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where SQLite cannot open the WAL in place (a read-only directory), status/export read a
    private copy of the store and its WAL; committed cells in the WAL are seen."""
    path = tmp_path / "s.sqlite"
    writer = ResultStore(path)
    for seed in range(5):
        writer.put_cell(_record(seed))                       # still in the WAL: writer open
    real = ResultStore._connect_ro

    def refuse_in_place(self: ResultStore, p: Path) -> sqlite3.Connection:
        if p == self.path:
            raise sqlite3.OperationalError("attempt to write a readonly database")
        return real(self, p)
    monkeypatch.setattr(ResultStore, "_connect_ro", refuse_in_place)
    with ResultStore(path, readonly=True) as reader:
        assert reader.summary()["cells_done"] == 5
        assert reader._tmpdir is not None and Path(reader._tmpdir).is_dir()
        tmp = reader._tmpdir
    assert not Path(tmp).exists()                            # the copy is removed
    writer.close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_readonly_directory_status_and_export(tmp_path: Path) -> None:  # pragma: no cover
    d = tmp_path / "ro"
    d.mkdir()
    with ResultStore(d / "s.sqlite") as store:
        store.put_cell(_record(0))
    d.chmod(0o555)
    try:
        proc = _cli("status", "--store", str(d / "s.sqlite"))
        assert proc.returncode == 0 and "cells done: 1" in proc.stdout
        proc = _cli("export", "--store", str(d / "s.sqlite"), "--out", str(tmp_path / "x.csv"))
        assert proc.returncode == 0 and len(pd.read_csv(tmp_path / "x.csv")) == 1
    finally:
        d.chmod(0o755)


# ------------------------------------------------------------- engine workers

def _dies_once(cell: CellSpec, ctx: RunContext) -> CellRecord:
    """Test cell runner: the first attempt at seed 1 is killed like the OOM killer would."""
    marker = Path(ctx.data_dir) / f"died-{cell.seed}"
    if cell.seed == 1 and not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.05)
    return CellRecord(config=cell, status="done")


def _always_dies(cell: CellSpec, ctx: RunContext) -> CellRecord:
    if cell.seed == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    return CellRecord(config=cell, status="done")


def _cells(n: int) -> list[CellSpec]:
    return [spec(**_record(s).config) for s in range(n)]


def test_dead_worker_cells_are_retried(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from measure.running.engine import iter_results
    recs = list(iter_results(_cells(6), str(tmp_path), "", {}, 2, run=_dies_once))
    assert sorted(r.config.seed for r in recs) == list(range(6))   # each cell exactly once
    assert all(r.status == "done" for r in recs)
    assert (tmp_path / "died-1").exists()
    assert "retrying" in capsys.readouterr().err


def test_cell_that_always_kills_its_worker_fails_after_retries(tmp_path: Path) -> None:
    from measure.running.engine import MAX_CELL_ATTEMPTS, iter_results
    recs = list(iter_results(_cells(3), str(tmp_path), "", {}, 2, run=_always_dies))
    by_seed = {r.config.seed: r for r in recs}
    assert sorted(by_seed) == [0, 1, 2] and len(recs) == 3
    assert by_seed[0].status == "failed" and f"died {MAX_CELL_ATTEMPTS} times" in by_seed[0].error
    assert by_seed[1].status == by_seed[2].status == "done"


def _slow(cell: CellSpec, ctx: RunContext) -> CellRecord:
    (Path(ctx.data_dir) / f"worker-{os.getpid()}").write_text("")
    time.sleep(120)
    return CellRecord(config=cell, status="done")


DRIVER = """
import sys
sys.path.insert(0, {tests!r})
from test_hardening_store import _cells, _slow
from measure.running.engine import iter_results
for rec in iter_results(_cells(4), {d!r}, "", {{}}, 2, run=_slow):
    pass
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead too
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d))
    return out


def test_workers_exit_when_driver_is_killed(tmp_path: Path) -> None:
    code = DRIVER.format(tests=str(Path(__file__).parent), d=str(tmp_path))
    driver = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    deadline = time.time() + 120
    while len(list(tmp_path.glob("worker-*"))) < 2 and time.time() < deadline:
        time.sleep(0.2)
    pids = [int(p.name.split("-")[1]) for p in tmp_path.glob("worker-*")]
    assert len(pids) == 2
    pids += [c for c in _children(driver.pid) if c not in pids]   # the resource tracker too
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    deadline = time.time() + 15
    while any(_alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in pids)


def test_ray_watchdog_stops_orphans_of_a_killed_driver() -> None:
    """The local-Ray watchdog: the 'raylet' dies with the driver (Ray's fate sharing) and its
    children, which ignore SIGTERM, must not live on."""
    pytest.importorskip("ray")
    from measure.running.ray_engine import _REAPER
    child = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)")
    raylet_code = ("import subprocess, sys, time\n"
                   f"ps = [subprocess.Popen([sys.executable, '-c', {child!r}]) for _ in range(2)]\n"
                   "print(' '.join(str(p.pid) for p in ps), flush=True)\n"
                   "time.sleep(300)")
    raylet = subprocess.Popen([sys.executable, "-c", raylet_code], stdout=subprocess.PIPE, text=True)
    kids = [int(x) for x in raylet.stdout.readline().split()]
    driver = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    reaper = subprocess.Popen([sys.executable, "-c", _REAPER, str(driver.pid), str(raylet.pid)])
    try:
        time.sleep(2.5)                               # the watchdog has seen the whole tree
        driver.kill()
        raylet.kill()                                 # fate sharing: the head dies too
        driver.wait()
        raylet.wait()
        reaper.wait(timeout=30)
        deadline = time.time() + 10
        while any(_alive(k) for k in kids) and time.time() < deadline:
            time.sleep(0.2)
        assert not any(_alive(k) for k in kids)
    finally:
        for k in kids:
            try:
                os.kill(k, signal.SIGKILL)
            except OSError:
                pass


def test_write_failure_is_a_store_error_and_keeps_earlier_cells(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with ResultStore(path) as store:
        store.put_cell(_record(0))
        store._con.execute("PRAGMA query_only = ON")     # stands in for a full / read-only disk
        with pytest.raises(StoreError, match="cannot write a finished cell.*rerun"):
            store.put_cell(_record(1))
    with ResultStore(path, readonly=True) as store:
        assert store.summary()["cells_done"] == 1
