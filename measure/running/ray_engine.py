"""Run a batch on a Ray cluster (or a local Ray instance): one Ray task per cell.

Same contract as :func:`measure.running.engine.run_local`: cells already in the store are
skipped, every text the remaining cells need is embedded once in the driver (reusing
:func:`measure.running.engine.prepare_cells`), and the driver writes each finished cell to
the store as it arrives (``put_cell`` is idempotent by cell hash). A cell is a pure
function of its config, so the rows are identical to the local engine's.

Why Ray: the same batch scales from a laptop to a cluster without code changes, and a
worker that dies mid-cell (OOM kill, preempted node) costs only a retry of that cell
(``max_retries=3``), not the batch. Exceptions *inside* a cell are not retried: they are
stored as a failed cell and rerun on the next ``xlt-measure run``, like the local engine.

Multi-node clusters — what every node needs:

* the NLI data directory (``--data-dir`` / ``$XLT_DATA_DIR``) at the same path, read by
  every task;
* the ``xlt`` package, installed in every node's Python environment (or shipped with
  ``ray.init(runtime_env={"working_dir": ...})`` by starting Ray yourself first).

The embedding cache needs no sharing: the driver embeds every text once into its cache and
puts the vectors the cells read into Ray's object store; the first cell on each node
copies the ones that node's cache (the driver's path, or ``$XLT_NODE_CACHE_DIR``) lacks
(:mod:`measure.running.node_cache`). A node on the driver's machine or on shared storage
finds them there and copies nothing. docs/cluster.md has the recipe for a real cluster.

The results store is written by the driver only, so it never needs to be shared.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import ray  # an ImportError here is reported by the CLI with the install command

from measure.cell import CellRecord, CellSpec
from measure.encoders.embcache import default_cache_path
from measure.methods.base import RunContext
from measure.methods.registry import get_method, run_cell
from measure.running.config import Batch
from measure.running.engine import (Recorder, RunSummary, check_cache_dir, cheap_first, plan,
                                    prepare_cells)
from measure.running.node_cache import build_packs, ensure_vectors
from measure.store import ResultStore
from measure.timing import PhaseTimer


class RayEngineError(RuntimeError):
    """Ray could not be started or reached; the message says what to check."""


#: a node's own embedding-cache directory when it must not use the driver's path (set in
#: the node's environment before ``ray start``; the test cluster uses it to give each node
#: of one machine a cache of its own, as separate machines have)
NODE_CACHE_ENV = "XLT_NODE_CACHE_DIR"


def node_cache_path(driver_cache: str) -> str:
    """The embedding cache a cell reads on this node: ``$XLT_NODE_CACHE_DIR`` if set, else
    the driver's path (a local file of the same name on another machine, or the driver's
    own file on the same machine or shared storage)."""
    node_dir = os.environ.get(NODE_CACHE_ENV)
    return str(Path(node_dir) / Path(driver_cache).name) if node_dir else driver_cache


@ray.remote(num_cpus=1, max_retries=3, retry_exceptions=False)
def _cell_task(cell: CellSpec, ctx: RunContext, packs: dict[str, ray.ObjectRef]) -> CellRecord:
    """One cell on a Ray worker (Ray sets OMP_NUM_THREADS to the task's num_cpus). The
    node's cache first gets the batch's vectors it lacks (:mod:`measure.running.node_cache`;
    ``packs`` is a dict, so Ray passes the references unresolved)."""
    if packs:
        local = node_cache_path(ctx.cache_path)
        try:
            ensure_vectors(local, packs, ray.get)
        except Exception as exc:  # noqa: BLE001 - stored as a failed cell, rerun next time
            return CellRecord(config=cell, status="failed",
                              error=f"could not copy the batch's vectors into this node's "
                                    f"embedding cache {local}: {type(exc).__name__}: {exc}")
        ctx = dataclasses.replace(ctx, cache_path=local)
    return run_cell(cell, ctx)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not after Ray's long connect timeout, when host:port is closed."""
    if address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        raise RayEngineError(
            f"cannot reach the Ray cluster at {address!r} ({exc}); start it with "
            f"`ray start --head` and pass its GCS address (host:6379), or omit --address "
            f"to run a local Ray instance") from None


def _connect(address: str | None, num_cpus: int | None) -> bool:
    """Connect or start Ray; True when this call started the instance (so we shut it down)."""
    if ray.is_initialized():
        return False  # the caller's instance: use it, leave it running
    if address:
        _check_reachable(address)
        try:
            ray.init(address=address, log_to_driver=False)
        except Exception as exc:  # ConnectionError, RuntimeError, ValueError by version
            raise RayEngineError(f"cannot connect to the Ray cluster at {address!r}: "
                                 f"{type(exc).__name__}: {exc}") from None
        return True
    try:
        ray.init(num_cpus=num_cpus or 2, include_dashboard=False, ignore_reinit_error=True,
                 log_to_driver=False)
    except Exception as exc:
        raise RayEngineError(f"cannot start a local Ray instance: {type(exc).__name__}: {exc}"
                             ) from None
    _reap_on_driver_death()
    return True


_REAPER = """
import os, signal, sys, time
driver, pids = int(sys.argv[1]), [int(p) for p in sys.argv[2:]]
def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
def children():
    out = {}
    for d in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            out.setdefault(ppid, []).append(int(d))
    return out
def tree(roots):
    kids, seen, todo = children(), set(), list(roots)
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.add(p)
            todo += kids.get(p, [])
    return seen
# Ray's head processes share the driver's fate, but the agents the raylet starts (dashboard,
# runtime env) would be orphaned: remember every descendant while the driver lives
known = set(pids)
while alive(driver) and any(alive(p) for p in known):
    known |= tree([p for p in known if alive(p)])
    time.sleep(1)
for sig in (signal.SIGTERM, signal.SIGKILL):
    for p in sorted(known):
        if alive(p):
            try:
                os.kill(p, sig)
            except OSError:
                pass
    time.sleep(3)
"""


def _reap_on_driver_death() -> None:
    """A local Ray instance (started by this driver) must not outlive it.

    ``ray.shutdown()`` stops it on a normal exit or an exception, but a driver killed with
    ``kill -9`` runs no cleanup and Ray's GCS/raylet would live on. A small watchdog
    process polls the driver's pid and stops the instance's processes (its workers exit
    with their raylet) once the driver is gone; it exits by itself when Ray stops first.
    A cluster given with ``--address`` is never touched.
    """
    try:
        node = ray._private.worker._global_node
        pids = [info.process.pid for infos in node.all_processes.values() for info in infos
                if getattr(info, "process", None) is not None]
    except Exception:  # noqa: BLE001 - a Ray version without this internal: no watchdog
        return
    if pids:
        subprocess.Popen([sys.executable, "-c", _REAPER, str(os.getpid()), *map(str, pids)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)


def _failed(cell: CellSpec, exc: BaseException) -> CellRecord:
    """A task lost beyond its retries (or a Ray error) becomes a failed, rerunnable cell."""
    msg = str(exc).strip().splitlines()
    return CellRecord(config=cell, status="failed",
                      error=f"{type(exc).__name__}: {msg[-1] if msg else ''}"[:2000])


def run_ray(batch: Batch, store: ResultStore, *, address: str | None = None,
            cache_path: Path | None = None, progress: bool = True,
            num_cpus: int | None = None) -> RunSummary:
    """Run the batch's pending cells as Ray tasks; returns the same summary as ``run_local``.

    ``address``: a running cluster (``host:port`` or ``auto``); None starts a local
    instance with ``num_cpus`` CPUs (default 2). If Ray is already initialised in this
    process, that instance is used. Only an instance started here is shut down.
    """
    t0 = time.time()
    timer = PhaseTimer()
    if address and not ray.is_initialized():
        _check_reachable(address)  # before minutes of embedding, not after
    cache_path = Path(cache_path or default_cache_path())
    with timer.phase("plan"):
        todo, skipped = plan(batch, store, progress=progress, engine=" (Ray)")
    if not todo:
        return RunSummary(len(batch.cells), skipped, 0, 0, time.time() - t0)
    check_cache_dir(cache_path)   # a bad XLT_CACHE_DIR fails now, not after the embedding
    # embed in the driver before starting Ray: the encoder gets every core
    keys = prepare_cells(batch, todo, cache_path, progress=progress, timer=timer)
    started = _connect(address, num_cpus)
    try:
        with timer.phase("cells"):
            # the vectors go to the object store once; each node copies what it lacks. A
            # local instance started here is this machine alone: its cache is the driver's
            packs = {} if started and not address else {
                p.digest: ray.put(p)
                for p in build_packs(todo, str(batch.data_dir), cache_path, keys)}
            done, failed = _drive(todo, batch, store, str(cache_path), keys, progress, timer,
                                  packs)
    finally:
        if started:
            ray.shutdown()
    return RunSummary(len(batch.cells), skipped, done, failed, time.time() - t0, timer)


def _drive(todo: list[CellSpec], batch: Batch, store: ResultStore, cache_path: str,
           keys: dict[str, str], progress: bool, timer: PhaseTimer | None = None,
           packs: dict[str, ray.ObjectRef] | None = None) -> tuple[int, int]:
    """Submit a bounded window of tasks, store each result as it arrives."""
    resources = ray.cluster_resources()
    has_gpu = resources.get("GPU", 0) > 0
    window = max(4, 2 * int(resources.get("CPU", 1)))  # short queue: a lost driver loses little
    todo = cheap_first(todo)
    data_dir = str(batch.data_dir)

    def submit(cell: CellSpec) -> ray.ObjectRef:
        fn = _cell_task
        if has_gpu and get_method(cell.method).needs_gpu:
            fn = _cell_task.options(num_gpus=1)
        return fn.remote(cell, RunContext(data_dir, cache_path, keys.get(cell.backend, "")),
                         packs or {})

    queue = iter(todo)
    inflight: dict[ray.ObjectRef, CellSpec] = {}
    for cell in queue:
        inflight[submit(cell)] = cell
        if len(inflight) >= window:
            break
    with Recorder(store, todo, progress, timer) as record:
        while inflight:
            ready, _ = ray.wait(list(inflight), num_returns=1)
            for ref in ready:
                cell = inflight.pop(ref)
                try:
                    rec = ray.get(ref)
                except Exception as exc:  # WorkerCrashedError after the retries, RayTaskError
                    rec = _failed(cell, exc)
                record(rec)
                nxt = next(queue, None)
                if nxt is not None:
                    inflight[submit(nxt)] = nxt
    return record.done, record.failed
