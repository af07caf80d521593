"""The Ray engine on a multi-node cluster laid out as a real one: a head node and two worker
nodes, each started by its own ``ray start`` process (on one machine, as CI has one), the
driver connecting by address. Cells run only where the resources are (the head offers no
CPU); the store is written by the driver alone; a worker node killed mid-run (its raylet
and every worker process on it, ``kill -9``) loses no cell: the cells it held are retried
on the surviving node and the rows equal the local engine's. Each worker node has an
embedding cache of its own (``XLT_NODE_CACHE_DIR``), empty at start, as separate machines
would: the driver's vectors reach it through Ray's object store.

The recipe for a real cluster is docs/cluster.md.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")

from measure.encoders.embcache import EmbeddingCache, default_cache_path  # noqa: E402
from measure.encoders.encoder import encoder_key_for  # noqa: E402
from measure.methods.probe import texts_for_batch  # noqa: E402
from measure.running.config import Batch, build_batch  # noqa: E402
from measure.running.engine import run_local  # noqa: E402
from measure.running.ray_engine import NODE_CACHE_ENV  # noqa: E402
from measure.store import ResultStore  # noqa: E402

pytestmark = pytest.mark.slow

# 16 cells: 4 single sources x 2 seeds x 2 budgets, scored on 2 targets of 300 pairs
CONFIG: dict[str, Any] = {
    "name": "ray-cluster", "model": "me5-small", "method": "probe", "eval_cap": 300,
    "seeds": [0, 1], "budget": {"per_language": 300},
    "targets": [{"split": "xnli/test", "languages": ["en", "sw"]}],
    "sources": [{"pool": "xnli/validation", "languages": ["en", "de", "fr", "es"],
                 "singles": True},
                {"pool": "xnli/validation", "languages": ["en", "de", "fr", "es"],
                 "singles": True, "budget": {"per_language": 600}}],
}
RAY_BIN = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray_start(*args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``ray start ... --block`` in a session of its own: killing the session's process group
    kills that node's raylet and every worker it forked, as losing the machine would."""
    return subprocess.Popen([RAY_BIN, "start", "--block", "--disable-usage-stats", *args],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def _kill_node(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL of a group does not hang
        os.killpg(proc.pid, signal.SIGKILL)


def _alive_nodes() -> list[dict[str, Any]]:
    return [n for n in ray.nodes() if n["Alive"]]


def _connect_driver(address: str, timeout: float = 60.0) -> None:
    """``ray.init`` to the head once its GCS answers (it takes seconds to come up)."""
    deadline = time.time() + timeout
    while True:
        try:
            ray.init(address=address, log_to_driver=False)
            return
        except (ConnectionError, RuntimeError):
            if time.time() > deadline:
                raise
            time.sleep(2)


def _wait_for_nodes(n: int, proc: subprocess.Popen[bytes], timeout: float = 90.0,
                    raise_: bool = True) -> bool:
    """True once ``n`` nodes are alive; a ``ray start`` that exited first is a failure
    (raised with its stderr, or False when the caller retries)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if len(_alive_nodes()) >= n:
            return True
        time.sleep(0.5)
    if not raise_:
        return False
    err = ""
    if proc.poll() is not None and proc.stderr is not None:
        err = proc.stderr.read().decode(errors="replace")[-3000:]
    raise AssertionError(f"only {len(_alive_nodes())} of {n} Ray nodes came up "
                         f"(ray start exit code {proc.poll()}): {err}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if ray.is_initialized():
        ray.shutdown()
    if not Path(RAY_BIN).exists():
        pytest.skip("the ray command is not installed beside this Python")
    port = _free_port()
    home = tmp_path_factory.mktemp("ray-home")   # no ~/.ray token of the user's is read
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1", "HOME": str(home),
           "RAY_AUTH_MODE": "disabled",
           # every node must find the data and the embedding cache at the same paths
           "XLT_CACHE_DIR": str(default_cache_path().parent)}
    head = _ray_start("--head", f"--port={port}", "--num-cpus=0", "--num-gpus=0",
                      "--include-dashboard=false", env=env)
    nodes: list[subprocess.Popen[bytes]] = []
    try:
        address = f"127.0.0.1:{port}"
        time.sleep(2)
        assert head.poll() is None, head.stderr.read().decode()[-2000:] if head.stderr else ""
        _connect_driver(address)
        caches = []
        for i in range(2):      # each worker node has a cache of its own, as a machine would
            caches.append(tmp_path_factory.mktemp(f"node{i}-cache"))
            node_env = {**env, NODE_CACHE_ENV: str(caches[-1])}
            for attempt in range(3):    # one at a time: a 2-core machine starts them slowly
                nodes.append(_ray_start(f"--address={address}", "--num-cpus=1",
                                        "--num-gpus=0", env=node_env))
                if _wait_for_nodes(2 + i, nodes[-1], raise_=attempt == 2):
                    break
                _kill_node(nodes.pop())
        yield {"address": address, "head": head, "nodes": nodes, "caches": caches}
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for proc in (*nodes, head):
            _kill_node(proc, signal.SIGTERM)
            _kill_node(proc)
        # `ray start --head` left its address for later ray.init() calls to join; the
        # cluster is gone, so a later local instance must not try to join it
        current = Path("/tmp/ray/ray_current_cluster")
        if current.is_file() and str(port) in current.read_text():
            current.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def batch(nli_dir: Path) -> Batch:
    b = build_batch(CONFIG, nli_dir)
    assert len(b.cells) == 16
    return b


def batch_key(batch: Batch) -> str:
    return encoder_key_for(batch.model, batch.cells[0].backend)


def _rows(store: ResultStore) -> list[tuple[Any, ...]]:
    df = store.results_frame()
    cols = ["cell_hash", "target_dataset", "target_language", "target_split", "macro_f1"]
    return sorted(tuple(r) for r in df[cols].itertuples(index=False))


@pytest.fixture(scope="module")
def reference(batch: Batch, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Any, ...]]:
    path = tmp_path_factory.mktemp("ref") / "local.sqlite"
    with ResultStore(path) as store:
        s = run_local(batch, store, workers=1, cache_path=default_cache_path(), progress=False)
        assert (s.done, s.failed) == (16, 0)
        return _rows(store)


def test_cells_run_only_on_worker_nodes(cluster: dict[str, Any]) -> None:
    """The head offers no CPU, so every cell task lands on a worker node (Ray's scheduler
    places a ``num_cpus=1`` task only where a CPU is free)."""
    nodes = _alive_nodes()
    cpus = sorted(n["Resources"].get("CPU", 0.0) for n in nodes)
    assert cpus == [0.0, 1.0, 1.0]
    assert ray.cluster_resources().get("CPU") == 2.0


def test_worker_node_killed_mid_run_loses_no_cell(cluster: dict[str, Any], batch: Batch,
                                                  reference: list[tuple[Any, ...]],
                                                  tmp_path: Path) -> None:
    from measure.running.ray_engine import run_ray
    result: dict[str, Any] = {}
    store_path = tmp_path / "cluster.sqlite"
    with ResultStore(store_path) as store:
        driver = threading.Thread(target=lambda: result.update(
            summary=run_ray(batch, store, address=cluster["address"],
                            cache_path=default_cache_path(), progress=False)))
        driver.start()
        victim = cluster["nodes"][1]
        killed_at = None
        deadline = time.time() + 180
        while driver.is_alive() and time.time() < deadline:
            with ResultStore(store_path, readonly=True) as peek:
                done = peek.summary()["cells_done"]
            if done >= 2:             # cells are finishing: take a whole node down now
                _kill_node(victim)
                killed_at = done
                break
            time.sleep(0.05)
        driver.join(300)
        assert not driver.is_alive(), "the run did not finish after a node was lost"
        rows = _rows(store)
        stored = store.summary()
    assert killed_at is not None and killed_at < 16, "the node was not killed mid-run"
    assert victim.poll() is not None
    deadline = time.time() + 120                          # the GCS marks it dead after its
    while len(_alive_nodes()) > 2 and time.time() < deadline:   # health checks fail
        time.sleep(1)
    assert len(_alive_nodes()) == 2                       # the head and the surviving node
    s = result["summary"]
    assert (s.planned, s.done, s.failed) == (16, 16, 0)   # every cell, none failed
    assert stored["cells_done"] == 16 and stored["cells_failed"] == 0
    assert len(rows) == len({r[:4] for r in rows}) == 32  # no row lost, none written twice
    assert rows == reference                              # the same scores as the local engine
    # the surviving node started with an empty cache: the driver's vectors reached it
    # through the object store, and only the texts its cells read were there to copy
    survivor = EmbeddingCache(cluster["caches"][0] / default_cache_path().name,
                              batch_key(batch))
    with survivor:
        assert survivor.count() > 1000 and not survivor.missing(
            texts_for_batch(batch.cells, str(batch.data_dir)))
