"""Run a batch: embed once, then train/evaluate cells on local processes (or Ray).

Flow: skip cells already in the store → embed every text the remaining cells need
(one ONNX Runtime pass, bucketed, cached on disk) → run cells in worker processes →
the driver writes each finished cell to the store as it arrives. A crash, even
``kill -9``, loses only the cells in flight; rerunning completes the batch.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from measure.cell import CellRecord, CellSpec, cell_hash
from measure.encoders.embcache import default_cache_path
from measure.encoders.encoder import remove_stale_dirs, remove_stale_exports
from measure.methods.base import RunContext
from measure.methods.registry import METHODS, get_method, run_cell
from measure.outputs import check_writable_dir
from measure.running.config import Batch
from measure.store import ResultStore
from measure.timing import PhaseTimer


@dataclass
class RunSummary:
    planned: int
    skipped: int
    done: int
    failed: int
    seconds: float
    phases: PhaseTimer | None = None   # where the time went (None: nothing was run)


def _watch_parent(parent: int, interval: float = 1.0) -> None:
    """Exit this worker as soon as the driver is gone (``kill -9`` included).

    A killed driver cannot shut its pool down, and spawned workers are not killed with it;
    each worker polls its parent pid (portable, unlike prctl's PR_SET_PDEATHSIG, which also
    fires when the spawning *thread* exits) and exits when it changes.
    """

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="xlt-parent-watch", daemon=True).start()


def _worker_init(parent: int | None = None) -> None:
    if parent is not None:
        _watch_parent(parent)
    # one BLAS thread per worker: the workers are the parallelism
    os.environ["OMP_NUM_THREADS"] = "1"
    threadpool_limits(1)


def pending_cells(batch: Batch, store: ResultStore) -> list[CellSpec]:
    done = store.done_hashes()
    return [c for c in batch.cells if cell_hash(c) not in done]


def plan(batch: Batch, store: ResultStore, *, progress: bool = True,
         engine: str = "") -> tuple[list[CellSpec], int]:
    """(cells still to run, cells skipped because the store has them), announced on stderr."""
    todo = pending_cells(batch, store)
    skipped = len(batch.cells) - len(todo)
    if progress:
        print(f"batch {batch.name!r}: {len(batch.cells)} cells, {skipped} already in "
              f"{store.path}, {len(todo)} to run{engine}", file=sys.stderr)
    return todo, skipped


#: a training cell's scratch directory (``measure.methods.trainloop``) untouched this long
#: belongs to a killed run: removed when a run starts
STALE_CELL_DIR_SECONDS = 6 * 3600.0


def check_cache_dir(cache_path: Path) -> None:
    """Fail in a second, before any embedding, when the embedding cache's directory
    (``$XLT_CACHE_DIR``, also home of the model checkpoint and ONNX exports) is a file, is
    read-only or is full (:class:`measure.outputs.OutputError`); then remove the working
    directories of exports and training cells that killed runs left behind."""
    check_writable_dir(cache_path.parent, "cache directory",
                       "set XLT_CACHE_DIR to a writable directory with free space (it holds "
                       "the model, its ONNX exports and the embedding cache)")
    remove_stale_exports(cache_path.parent / "onnx")
    remove_stale_dirs(Path(tempfile.gettempdir()),
                      lambda name: name.startswith(("xlt-finetune-", "xlt-seq2seq-")),
                      STALE_CELL_DIR_SECONDS)


def prepare_cells(batch: Batch, cells: list[CellSpec], cache_path: Path, *,
                  progress: bool = True, timer: PhaseTimer | None = None) -> dict[str, str]:
    """Run each method's preparation for its cells (the probe embeds every text its cells
    read, once); returns {backend: encoder key}. Training methods tokenise their own text."""
    keys: dict[str, str] = {}
    for method in METHODS.values():
        keys.update(method.embed(batch.model, cells, str(batch.data_dir), cache_path,
                                 progress=progress, timer=timer))
    return keys


def run_local(batch: Batch, store: ResultStore, *, workers: int | None = None,
              cache_path: Path | None = None, progress: bool = True) -> RunSummary:
    t0 = time.time()
    timer = PhaseTimer()
    cache_path = Path(cache_path or default_cache_path())
    with timer.phase("plan"):
        todo, skipped = plan(batch, store, progress=progress)
    if not todo:
        return RunSummary(len(batch.cells), skipped, 0, 0, time.time() - t0)
    check_cache_dir(cache_path)
    keys = prepare_cells(batch, todo, cache_path, progress=progress, timer=timer)
    if workers is None and any(get_method(c.method).needs_gpu for c in todo):
        workers = 1  # a training cell takes the GPU or every CPU thread by itself
    workers = max(1, workers or os.cpu_count() or 1)
    todo = cheap_first(todo)
    with timer.phase("cells"), Recorder(store, todo, progress, timer) as record:
        for rec in iter_results(todo, str(batch.data_dir), str(cache_path), keys, workers):
            record(rec)
    return RunSummary(len(batch.cells), skipped, record.done, record.failed, time.time() - t0,
                      timer)


def cheap_first(cells: list[CellSpec]) -> list[CellSpec]:
    """Cheap cells first gives an early, honest ETA; big per-language cells come last."""
    return sorted(cells, key=lambda c: c.total_examples)


#: a cell's fixed cost (scoring its targets, set-up) in training-row equivalents, for the ETA
CELL_OVERHEAD_ROWS = 500


def cell_cost(cell: CellSpec) -> int:
    """A cell's expected run time in training-row units. On the default grid a probe's fit
    takes about 0.5 ms a training row once past a few thousand rows (0.5 s for 2,490 rows,
    19 s for 37,350) and scoring 22 targets about 0.15-0.25 s a cell. Only the ratios
    matter: they make the ETA of a batch whose cells differ 15x in size honest from the
    first cells on."""
    return cell.total_examples + cell.n_shots + CELL_OVERHEAD_ROWS


class Recorder:
    """Writes each finished cell to the store the moment it arrives (so a crash loses only
    cells in flight), counts outcomes, reports failures and drives the progress bar.

    The bar advances by each cell's :func:`cell_cost`, not by one per cell, so its ETA is
    the whole batch's remaining time (cells are run cheapest first; counted by cells, the
    ETA of the first minutes would be several times too short)."""

    def __init__(self, store: ResultStore, cells: list[CellSpec], progress: bool,
                 timer: PhaseTimer | None = None) -> None:
        self.store, self.done, self.failed = store, 0, 0
        self.timer = timer or PhaseTimer()
        self.total_cells = len(cells)
        self.total_cost, self.cost_done = sum(cell_cost(c) for c in cells), 0
        self.bar = tqdm(total=self.total_cost, desc="cells",
                        disable=not progress, smoothing=0.05,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| "
                                   "[{elapsed}<{remaining}{postfix}]")
        self._postfix()

    def postfix(self) -> str:
        return f"{self.done + self.failed}/{self.total_cells} cells"

    def _postfix(self) -> None:
        self.bar.set_postfix_str(self.postfix(), refresh=False)

    def __call__(self, rec: CellRecord) -> None:
        with self.timer.phase("store"):
            self.store.put_cell(rec)
        self.timer.add_cell(rec.train_seconds, rec.eval_seconds)
        if rec.status == "done":
            self.done += 1
        else:
            self.failed += 1
            tqdm.write(f"cell failed: {rec.error}", file=sys.stderr)
        self._postfix()
        self.cost_done += cell_cost(rec.config)
        self.bar.update(cell_cost(rec.config))

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()


#: attempts per cell when its worker process dies (OOM killer, kill -9): like Ray's
#: ``max_retries=3``; an exception *inside* a cell is not retried (it is a failed cell).
MAX_CELL_ATTEMPTS = 4


def iter_results(cells: list[CellSpec], data_dir: str, cache_path: str, keys: dict[str, str],
                 workers: int, run: Callable[[CellSpec, RunContext], CellRecord] = run_cell
                 ) -> Iterator[CellRecord]:
    """Finished cells as they arrive; ``run`` (default :func:`run_cell`) runs one cell."""

    def context(cell: CellSpec) -> RunContext:
        return RunContext(data_dir, cache_path, keys.get(cell.backend, ""))

    if workers == 1:
        for c in cells:
            yield run(c, context(c))
        return

    queue = list(cells)
    suspects: list[CellSpec] = []  # in flight when a worker died: rerun one at a time
    attempts: dict[str, int] = {}
    while queue or suspects:
        # a dead worker breaks the whole pool and every cell in flight with it; those cells
        # are rerun alone on a fresh pool, so a death there is that cell's own doing
        isolated = bool(suspects)
        source = suspects if isolated else queue
        limit = 1 if isolated else 2 * workers  # a short queue: a kill loses little
        lost: list[CellSpec] = []
        with ProcessPoolExecutor(1 if isolated else workers, mp_context=mp.get_context("spawn"),
                                 initializer=_worker_init, initargs=(os.getpid(),)) as pool:
            inflight: dict[Any, CellSpec] = {}

            def submit() -> None:
                c = source.pop(0)
                inflight[pool.submit(run, c, context(c))] = c

            while source and len(inflight) < limit:
                submit()
            broken = False
            while inflight:
                finished, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
                for f in finished:
                    cell = inflight.pop(f)
                    try:
                        rec = f.result()
                    except BrokenProcessPool:
                        broken = True
                        lost.append(cell)
                        continue
                    yield rec
                    if source and not broken:
                        submit()
        if not isolated:
            if lost:
                tqdm.write(f"a worker process died (out of memory? killed?); retrying the "
                           f"{len(lost)} cell(s) it took down, one at a time", file=sys.stderr)
            suspects.extend(lost)
            continue
        for cell in lost:  # died alone: counted against this cell (like Ray's max_retries)
            h = cell_hash(cell)
            attempts[h] = attempts.get(h, 1) + 1
            if attempts[h] >= MAX_CELL_ATTEMPTS:
                yield CellRecord(config=cell, status="failed",
                                 error=f"worker process died {MAX_CELL_ATTEMPTS} times running "
                                       "this cell (out of memory? killed?)")
            else:
                tqdm.write(f"worker process died again; retrying the cell (attempt "
                           f"{attempts[h] + 1} of {MAX_CELL_ATTEMPTS})", file=sys.stderr)
                suspects.insert(0, cell)
