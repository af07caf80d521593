"""The Ray engine on a real local Ray instance: same rows as the local engine, and a
worker killed with SIGKILL mid-batch costs a task retry, not a row.

Embeddings come from the user cache (``default_cache_path()``, built at first use in CI)
so the slow part — encoding — is shared with the other engine tests.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")

from measure import cli  # noqa: E402
from measure.encoders.embcache import default_cache_path  # noqa: E402
from measure.running.config import Batch, build_batch  # noqa: E402
from measure.running.engine import RunSummary, run_local  # noqa: E402
from measure.store import ResultStore  # noqa: E402

pytestmark = pytest.mark.slow

# 6 cells: 3 single sources x 2 seeds, 200 examples each, 2 targets of 300 pairs
CONFIG: dict[str, Any] = {
    "name": "ray", "model": "me5-small", "method": "probe", "eval_cap": 300, "seeds": [0, 1],
    "budget": {"per_language": 200},
    "targets": [{"split": "xnli/test", "languages": ["en", "de"]}],
    "sources": [{"pool": "xnli/validation", "languages": ["en", "de", "fr"], "singles": True}],
}
TOML = """
name = "ray"
model = "me5-small"
method = "probe"
eval_cap = 300
[budget]
per_language = 200
[[targets]]
split = "xnli/test"
languages = ["en"]
[[sources]]
pool = "xnli/validation"
sets = [["en"]]
"""

Rows = list[tuple[str, str, str, str, float, str]]


def _rows(store: ResultStore) -> Rows:
    df = store.results_frame()
    cols = ["cell_hash", "target_dataset", "target_language", "target_split", "macro_f1"]
    rows = [tuple(r) for r in df[cols].itertuples(index=False)]
    return sorted(rows)  # type: ignore[return-value]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- CLI errors (run before the module's Ray instance exists) -----------------------

def test_cli_unreachable_address_exits_2(nli_dir: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    if ray.is_initialized():
        pytest.skip("a Ray instance is already running in this process")
    cfg = tmp_path / "ray.toml"
    cfg.write_text(TOML)
    t0 = time.time()
    rc = cli.main(["run", str(cfg), "--engine", "ray", "--address", f"127.0.0.1:{_free_port()}",
                   "--store", str(tmp_path / "s.sqlite"), "--data-dir", str(nli_dir)])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot reach the Ray cluster" in err and "ray start --head" in err
    assert time.time() - t0 < 30 and not ray.is_initialized()


def test_cli_without_ray_exits_2(nli_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "ray.toml"
    cfg.write_text(TOML)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    monkeypatch.delitem(sys.modules, "measure.running.ray_engine", raising=False)
    rc = cli.main(["run", str(cfg), "--engine", "ray", "--store", str(tmp_path / "s.sqlite"),
                   "--data-dir", str(nli_dir)])
    assert rc == 2 and "the Ray engine is not available" in capsys.readouterr().err


# --- a real local Ray instance ---------------------------------------------------

@pytest.fixture(scope="module")
def ray_instance() -> Any:
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def batch(nli_dir: Path) -> Batch:
    b = build_batch(CONFIG, nli_dir)
    assert len(b.cells) == 6
    return b


@pytest.fixture(scope="module")
def reference(batch: Batch, tmp_path_factory: pytest.TempPathFactory) -> Rows:
    """The local engine's rows for the same batch (in-process, one worker)."""
    path = tmp_path_factory.mktemp("ref") / "local.sqlite"
    with ResultStore(path) as store:
        s = run_local(batch, store, workers=1, cache_path=default_cache_path(), progress=False)
        assert (s.done, s.failed) == (6, 0)
        return _rows(store)


def test_ray_matches_local_engine(ray_instance: Any, batch: Batch, reference: Rows,
                                  tmp_path: Path) -> None:
    with ResultStore(tmp_path / "ray.sqlite") as store:
        summary = run_ray_(batch, store)
        assert (summary.planned, summary.skipped, summary.done, summary.failed) == (6, 0, 6, 0)
        rows = _rows(store)
        again = run_ray_(batch, store)                    # everything is skipped on a rerun
        assert (again.skipped, again.done) == (6, 0) and _rows(store) == rows
    assert len(rows) == 12 and rows == reference         # same cells, same macro-F1 per target
    f1 = {(r[0], r[2]): r[4] for r in rows}
    mean = sum(f1.values()) / len(f1)                    # measured: 28.9 .. 58.3, mean 48.9
    assert all(20 < v < 90 for v in f1.values()) and mean > 42, f1  # above chance (33.3)
    assert ray.is_initialized()                          # the caller's instance is left running


def run_ray_(batch: Batch, store: ResultStore) -> RunSummary:
    from measure.running.ray_engine import run_ray
    return run_ray(batch, store, cache_path=default_cache_path(), progress=False)


def _task_workers() -> list[int]:
    """PIDs of Ray worker processes executing a cell right now (Ray sets the title)."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as fh:
                title = fh.read().split(b"\0")[0]
        except OSError:
            continue
        if title.startswith(b"ray::_cell_task"):
            pids.append(int(d))
    return pids


def test_worker_sigkill_is_retried(ray_instance: Any, batch: Batch, reference: Rows,
                                   tmp_path: Path) -> None:
    result: dict[str, Any] = {}
    with ResultStore(tmp_path / "killed.sqlite") as store:
        driver = threading.Thread(target=lambda: result.update(summary=run_ray_(batch, store)))
        driver.start()
        killed = None
        deadline = time.time() + 60
        while killed is None and time.time() < deadline and driver.is_alive():
            pids = _task_workers()
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed = pids[0]
            time.sleep(0.01)
        driver.join(120)
        assert not driver.is_alive()
        rows = _rows(store)
        stored = store.summary()
    assert killed is not None, "no worker was caught running a cell"
    assert not os.path.exists(f"/proc/{killed}")
    s = result["summary"]
    assert (s.done, s.failed) == (6, 0)                  # the killed cell was retried
    assert stored["cells_done"] == 6 and stored["cells_failed"] == 0
    assert len(rows) == len(set(r[:4] for r in rows))    # no duplicate rows
    assert rows == reference                             # nothing lost, same scores
