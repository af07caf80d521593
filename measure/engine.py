"""Run a batch: embed once, then train/evaluate cells on local processes (or Ray).

Flow: skip cells already in the store → embed every text the remaining cells need
(one ONNX Runtime pass, bucketed, cached on disk) → run cells in worker processes →
the driver writes each finished cell to the store as it arrives. A crash, even
``kill -9``, loses only the cells in flight; rerunning completes the batch.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from measure.config import Batch
from measure.store import CellRecord, ResultStore, cell_hash


@dataclass
class RunSummary:
    planned: int
    skipped: int
    done: int
    failed: int
    seconds: float


def encoder_key_for(model: str, backend: str) -> str:
    from measure.encoder import E5_PREFIX, model_fingerprint, resolve_model
    return f"{model_fingerprint(resolve_model(model))}|{backend}|{E5_PREFIX}|mean-l2|256"


def prepare_embeddings(batch: Batch, cells: list[dict[str, Any]], cache_path: Path,
                       *, progress: bool = True) -> dict[str, str]:
    """Encode every missing text once; returns {backend: encoder_key}."""
    from measure.cells import texts_for_batch
    from measure.embcache import EmbeddingCache
    from measure.encoder import make_encoder

    keys: dict[str, str] = {}
    for backend in sorted({c["backend"] for c in cells}):
        key = encoder_key_for(batch.model, backend)
        keys[backend] = key
        texts = texts_for_batch([c for c in cells if c["backend"] == backend], str(batch.data_dir))
        with EmbeddingCache(cache_path, key) as cache:
            todo = cache.missing(texts)
            if progress:
                print(f"embeddings: {len(texts) - len(todo)} of {len(texts)} texts cached, "
                      f"encoding {len(todo)} with {batch.model} ({backend})", file=sys.stderr)
            if todo:
                enc = make_encoder(batch.model, backend)
                bar = tqdm(total=len(todo), desc="encode", unit="text", disable=not progress,
                           smoothing=0.05)
                for start in range(0, len(todo), 4096):
                    part = todo[start:start + 4096]
                    cache.put(part, enc.encode(part))
                    bar.update(len(part))
                bar.close()
    return keys


def _watch_parent(parent: int, interval: float = 1.0) -> None:
    """Exit this worker as soon as the driver is gone (``kill -9`` included).

    A killed driver cannot shut its pool down, and spawned workers are not killed with it;
    each worker polls its parent pid (portable, unlike prctl's PR_SET_PDEATHSIG, which also
    fires when the spawning *thread* exits) and exits when it changes.
    """
    import threading

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
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except ImportError:  # pragma: no cover
        pass


def _run_cell(cell: dict[str, Any], data_dir: str, cache_path: str, key: str) -> CellRecord:
    if cell["method"] not in ("probe", "seq2seq", "finetune"):
        raise NotImplementedError(f"method {cell['method']!r} is not available in this engine yet")
    try:  # seq2seq and finetune train their own model: no sentence embeddings
        if cell["method"] == "seq2seq":
            from measure.seq2seq import run_seq2seq_cell
            return run_seq2seq_cell(cell, data_dir)
        if cell["method"] == "finetune":
            from measure.finetune import run_finetune_cell
            return run_finetune_cell(cell, data_dir)
        from measure.cells import run_probe_cell
        return run_probe_cell(cell, data_dir, cache_path, key)
    except Exception as exc:  # stored as a failed cell, retried on the next run
        return CellRecord(config=cell, status="failed", error=f"{type(exc).__name__}: {exc}")


def pending_cells(batch: Batch, store: ResultStore) -> list[dict[str, Any]]:
    done = store.done_hashes()
    return [c for c in batch.cells if cell_hash(c) not in done]


def plan(batch: Batch, store: ResultStore, *, progress: bool = True,
         engine: str = "") -> tuple[list[dict[str, Any]], int]:
    """(cells still to run, cells skipped because the store has them), announced on stderr."""
    todo = pending_cells(batch, store)
    skipped = len(batch.cells) - len(todo)
    if progress:
        print(f"batch {batch.name!r}: {len(batch.cells)} cells, {skipped} already in "
              f"{store.path}, {len(todo)} to run{engine}", file=sys.stderr)
    return todo, skipped


def embed_probe_cells(batch: Batch, cells: list[dict[str, Any]], cache_path: Path, *,
                      progress: bool = True) -> dict[str, str]:
    """Embed what the probe cells need ({backend: encoder key}); other methods tokenise
    their own text and need no sentence embeddings."""
    probe = [c for c in cells if c["method"] == "probe"]
    return prepare_embeddings(batch, probe, cache_path, progress=progress) if probe else {}


def run_local(batch: Batch, store: ResultStore, *, workers: int | None = None,
              cache_path: Path | None = None, progress: bool = True) -> RunSummary:
    from measure.cells import default_cache_path
    t0 = time.time()
    cache_path = Path(cache_path or default_cache_path())
    todo, skipped = plan(batch, store, progress=progress)
    if not todo:
        return RunSummary(len(batch.cells), skipped, 0, 0, time.time() - t0)
    keys = embed_probe_cells(batch, todo, cache_path, progress=progress)
    if workers is None and any(c["method"] != "probe" for c in todo):
        workers = 1  # a training cell takes the GPU or every CPU thread by itself
    workers = max(1, workers or os.cpu_count() or 1)
    with Recorder(store, len(todo), progress) as record:
        for rec in _iter_results(cheap_first(todo), str(batch.data_dir), str(cache_path), keys,
                                 workers):
            record(rec)
    return RunSummary(len(batch.cells), skipped, record.done, record.failed, time.time() - t0)


def cheap_first(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cheap cells first gives an early, honest ETA; big per-language cells come last."""
    return sorted(cells, key=lambda c: sum(c["train_config"].values()))


class Recorder:
    """Writes each finished cell to the store the moment it arrives (so a crash loses only
    cells in flight), counts outcomes, reports failures and drives the progress bar."""

    def __init__(self, store: ResultStore, total: int, progress: bool) -> None:
        self.store, self.done, self.failed = store, 0, 0
        self.bar = tqdm(total=total, desc="cells", unit="cell", disable=not progress,
                        smoothing=0.02)

    def __call__(self, rec: CellRecord) -> None:
        self.store.put_cell(rec)
        if rec.status == "done":
            self.done += 1
        else:
            self.failed += 1
            tqdm.write(f"cell failed: {rec.error}", file=sys.stderr)
        self.bar.update(1)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()


#: attempts per cell when its worker process dies (OOM killer, kill -9): like Ray's
#: ``max_retries=3``; an exception *inside* a cell is not retried (it is a failed cell).
MAX_CELL_ATTEMPTS = 4


def _iter_results(cells: list[dict[str, Any]], data_dir: str, cache_path: str,
                  keys: dict[str, str], workers: int, run: Any = None) -> Iterator[CellRecord]:
    """Finished cells as they arrive; ``run`` (default :func:`_run_cell`) runs one cell."""
    run = run or _run_cell
    if workers == 1:
        for c in cells:
            yield run(c, data_dir, cache_path, keys.get(c["backend"], ""))
        return
    import multiprocessing as mp
    from concurrent.futures.process import BrokenProcessPool

    queue = list(cells)
    suspects: list[dict[str, Any]] = []  # in flight when a worker died: rerun one at a time
    attempts: dict[str, int] = {}
    while queue or suspects:
        # a dead worker breaks the whole pool and every cell in flight with it; those cells
        # are rerun alone on a fresh pool, so a death there is that cell's own doing
        isolated = bool(suspects)
        source = suspects if isolated else queue
        limit = 1 if isolated else 2 * workers  # a short queue: a kill loses little
        lost: list[dict[str, Any]] = []
        with ProcessPoolExecutor(1 if isolated else workers, mp_context=mp.get_context("spawn"),
                                 initializer=_worker_init, initargs=(os.getpid(),)) as pool:
            inflight: dict[Any, dict[str, Any]] = {}

            def submit() -> None:
                c = source.pop(0)
                inflight[pool.submit(run, c, data_dir, cache_path,
                                     keys.get(c["backend"], ""))] = c

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
