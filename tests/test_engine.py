"""The local engine end to end on small real subsets: sanity F1, store rows, resume after kill -9."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from measure.running.config import build_batch
from measure.running.engine import run_local
from measure.store import ResultStore

pytestmark = pytest.mark.slow

SANITY = {
    "name": "sanity", "model": "me5-small", "method": "probe", "eval_cap": 2000,
    "budget": {"per_language": 2490},          # same cell as the default grid's en single
    "targets": [{"split": "xnli/test", "languages": ["en", "de"]},
                {"split": "americas_nli/test", "languages": ["aym"]}],
    "sources": [{"pool": "xnli/validation", "sets": [["en"]]}],
}


@pytest.fixture(scope="module")
def cache_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("emb") / "embeddings.sqlite"


def test_sanity_english_probe(nli_dir: Path, cache_path: Path, tmp_path: Path) -> None:
    """2,490 English examples: en in-language >= 65 macro-F1, en->de zero-shot >= 55."""
    batch = build_batch(SANITY, nli_dir)
    with ResultStore(tmp_path / "s.sqlite") as store:
        summary = run_local(batch, store, workers=1, cache_path=cache_path, progress=False)
        df = store.results_frame()
    assert summary.done == 1 and summary.failed == 0
    f1 = dict(zip(df["target_language"], df["macro_f1"]))
    print(f"sanity macro-F1: {f1}")
    assert f1["en"] >= 65 and f1["de"] >= 55
    assert 20 <= f1["aym"] <= 50                 # AmericasNLI near chance (33.3) is expected
    assert df.loc[df["target_language"] == "aym", "n"].item() == 750
    assert set(df.loc[df["target_dataset"] == "xnli", "n"]) == {2001} and not df.loc[df["target_language"] == "en", "zero_shot"].any()


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "resume.toml"
    cfg.write_text("""
name = "resume"
model = "me5-small"
method = "probe"
eval_cap = 300
seeds = [0, 1, 2]
[budget]
per_language = 300
total = 300
[[targets]]
split = "xnli/test"
languages = ["en", "de"]
[[sources]]
pool = "xnli/validation"
languages = ["en", "de", "fr", "es"]
singles = true
pairs_from = ["en", "de", "fr"]
""")
    return cfg


def _run(cfg: Path, store: Path, nli_dir: Path, cache: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "XLT_DATA_DIR": str(nli_dir)}
    code = ("import sys; from pathlib import Path; from measure.running.config import load_batch;"
            "from measure.running.engine import run_local; from measure.store import ResultStore;"
            f"b = load_batch({str(cfg)!r});"
            f"s = ResultStore({str(store)!r});"
            f"r = run_local(b, s, workers=2, cache_path=Path({str(cache)!r}), progress=False);"
            "print(r)")
    return subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True, **kw)


def _rows(store: Path) -> list[tuple]:
    con = sqlite3.connect(store)
    rows = con.execute("SELECT cell_hash, target_language, macro_f1 FROM results "
                       "ORDER BY cell_hash, target_language").fetchall()
    con.close()
    return rows


def test_resume_after_kill_9(nli_dir: Path, cache_path: Path, tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    batch = build_batch(__import__("measure.running.config", fromlist=["load_toml"]).load_toml(cfg), nli_dir)
    n_cells = len(batch.cells)
    assert n_cells == 2 * 3 * (4 + 3)            # regimes x seeds x (singles + pairs)

    # reference: one uninterrupted run
    ref_store = tmp_path / "ref.sqlite"
    assert _run(cfg, ref_store, nli_dir, cache_path).wait(600) == 0
    reference = _rows(ref_store)
    assert len(reference) == 2 * n_cells

    # interrupted run: kill -9 the whole process group once some cells are stored
    store = tmp_path / "killed.sqlite"
    proc = _run(cfg, store, nli_dir, cache_path)
    deadline = time.time() + 300
    while time.time() < deadline:
        if store.exists():
            try:
                if len(_rows(store)) >= 8:
                    break
            except sqlite3.OperationalError:
                pass
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = _rows(store)
    assert 8 <= len(partial) < len(reference), "kill came too late to test anything"

    assert _run(cfg, store, nli_dir, cache_path).wait(600) == 0      # rerun completes it
    final = _rows(store)
    assert len(final) == len(set((h, t) for h, t, _ in final))        # no duplicates
    assert final == reference                                          # nothing lost, same scores
    with ResultStore(store, readonly=True) as s:
        assert s.summary()["cells_done"] == n_cells


def test_run_reports_phases_and_status_scores_per_target(nli_dir: Path, cache_path: Path,
                                                         tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A run says where its time went (encoding with its rate, cells with the workers'
    train/score seconds); ``status`` shows macro-F1 per target for the finished cells."""
    from measure import cli
    fresh = tmp_path / "emb.sqlite"               # an empty cache: the run must encode
    batch = build_batch(SANITY, nli_dir)
    store_path = tmp_path / "s.sqlite"
    with ResultStore(store_path) as store:
        summary = run_local(batch, store, workers=1, cache_path=fresh, progress=False)
        f1 = dict(zip(store.results_frame()["target_language"], store.results_frame()["macro_f1"]))
    ph = summary.phases
    assert ph is not None and ph.cells == 1 and ph.texts_encoded > 4000
    assert ph.wall["encode"] > 0 and ph.texts_per_s is not None and ph.texts_per_s > 20
    assert ph.train_cpu > 0 and ph.score_cpu > 0 and "store" in ph.wall
    report = ph.report()
    assert "encoding" in report and "texts/s" in report and "train" in report
    assert f"{ph.texts_encoded:,} texts" in report and "peak RSS" in report
    figures = ph.as_dict()
    assert figures["cells"] == 1 and figures["texts_per_s"] == round(ph.texts_per_s, 1)

    again = run_local(batch, ResultStore(store_path), workers=1, cache_path=fresh,
                      progress=False)
    assert again.phases is None and again.skipped == 1   # nothing run, nothing to report

    assert cli.main(["status", "--store", str(store_path)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[1]: line.split() for line in out.splitlines()
            if line.strip().startswith(("xnli/test", "americas_nli/test"))}
    assert set(rows) == {"en", "de", "aym"}
    assert float(rows["de"][3]) == pytest.approx(f1["de"], abs=0.05)     # mean over 1 cell
    assert rows["en"][-1] == "-"                    # en is a source: no zero-shot cells
    assert float(rows["aym"][-2]) == pytest.approx(f1["aym"], abs=0.05)
    assert cli.main(["status", "--store", str(store_path), "--json"]) == 0
    by_target = __import__("json").loads(capsys.readouterr().out)["by_target"]
    assert {t["language"]: t["zero_shot_cells"] for t in by_target} == {"aym": 1, "de": 1, "en": 0}
