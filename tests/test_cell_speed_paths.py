"""The cell phase's fast paths give what the straightforward computation gives.

A probe cell reads its rows' vectors from a per-worker memo of each split (filled lazily,
row by row, from the embedding cache) and scores its targets from numpy confusion counts.
These tests check both against the plain computation: every text looked up in the cache,
and scikit-learn's metrics. Speed is measured by ``xlt-measure run``'s phase summary and
written up in docs/benchmarks.md, not here.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix, f1_score

from measure.encoders.embcache import EmbeddingCache
from measure.methods import probe
from measure.methods.base import score
from measure.methods.sampling import load_split


@pytest.fixture(autouse=True)
def _fresh_memos() -> None:
    """Each test starts with empty per-process memos (their fake vectors share no keys
    with other tests', but a clean start keeps each test's counts its own)."""
    for memo in (probe._SPLIT_ROWS, probe._FITS, probe._SCORING, probe._PAIR_IDS):
        memo.clear()


def test_score_equals_sklearn_to_the_last_bit() -> None:
    rng = np.random.default_rng(7)
    for i in range(2000):
        n = int(rng.integers(1, 80))
        gold = rng.integers(0, 3, n)
        pred = rng.integers(0, int(rng.integers(1, 4)), n)     # some classifiers predict 1-2 labels
        if i % 9 == 0:
            gold[:] = 1                                        # a label never gold
        s = score(gold, pred)
        assert s["macro_f1"] == 100.0 * f1_score(gold, pred, average="macro", labels=[0, 1, 2],
                                                 zero_division=0)
        assert s["confusion"] == confusion_matrix(gold, pred, labels=[0, 1, 2]).tolist()
        assert s["accuracy"] == 100.0 * float(np.mean(gold == pred)) and s["n"] == n


@pytest.mark.parametrize("gold,pred,message", [
    ([0, 1, 3], [0, 1, 2], "gold labels must be integers in 0..2"),
    ([0, 1, 2], [0, -1, 2], "predicted labels must be integers in 0..2"),
    ([0, 1], [0, 1, 2], "2 gold labels but 3 predictions"),
])
def test_score_refuses_labels_it_cannot_count(gold: list[int], pred: list[int],
                                              message: str) -> None:
    with pytest.raises(ValueError, match=message):
        score(np.array(gold), np.array(pred))


def _vec(text: str) -> np.ndarray:
    v = np.random.default_rng(zlib.crc32(text.encode())).normal(size=8).astype(np.float32)
    return v / np.linalg.norm(v)


def test_split_memo_equals_text_lookup(nli_dir: Path, tmp_path: Path) -> None:
    """Rows read through the per-split memo (in any order, overlapping, filled in several
    steps) equal the vectors looked up text by text; a frame that is not a slice of a
    loaded split is read text by text."""
    data_dir = str(nli_dir)
    full = load_split(data_dir, "xnli", "de", "validation")
    cache_path = str(tmp_path / "emb.sqlite")
    texts = list(dict.fromkeys([*full["premise"], *full["hypothesis"]]))
    with EmbeddingCache(cache_path, "fake") as cache:
        cache.put(texts, np.stack([_vec(t) for t in texts]))
    probe._SPLIT_ROWS.clear()
    rng = np.random.default_rng(0)
    for idx in (np.arange(10), rng.choice(len(full), 300, replace=False),
                np.sort(rng.choice(len(full), 500, replace=False)), np.array([5, 5, 3])):
        frame = full.iloc[idx]
        u, v = probe.pair_vectors(cache_path, "fake", frame, data_dir)
        np.testing.assert_array_equal(u, np.stack([_vec(t) for t in frame["premise"]]))
        np.testing.assert_array_equal(v, np.stack([_vec(t) for t in frame["hypothesis"]]))
    entry = next(iter(probe._SPLIT_ROWS.values()))
    assert 500 < entry.have.sum() < len(full)            # only the rows read were fetched
    moved = full.iloc[[0, 9, 30]].set_index(pd.Index([0, 1, 2]))   # index labels are not rows
    u, _ = probe.pair_vectors(cache_path, "fake", moved, data_dir)
    np.testing.assert_array_equal(u, np.stack([_vec(t) for t in moved["premise"]]))
    assert len(probe._SPLIT_ROWS) == 1


def _fake_vectors(cache_path: str, key: str, texts: list[str]) -> np.ndarray:
    return np.stack([_vec(t) for t in texts]) if texts else np.zeros((0, 8), np.float32)


def test_twin_cells_share_one_fit_and_get_the_cold_results(nli_dir: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Cells that train on the same rows with the same probe are one fit (logistic
    regression's lbfgs ignores the seed); the memoised cell's results equal a cold run's.
    Cells whose seed draws other rows, or seeds an MLP, are fitted apart."""
    from measure.methods.base import RunContext
    from measure.methods.sampling import sample_training, training_frames
    from measure.running.config import build_batch
    monkeypatch.setattr(probe, "vectors", _fake_vectors)
    raw = {"name": "twins", "model": "me5-small", "method": "probe", "eval_cap": 60,
           "seeds": [0, 1], "budget": {"per_language": 2490, "total": 2490},
           "targets": [{"split": "xnli/test", "languages": ["en", "sw"]}],
           "sources": [{"pool": "xnli/validation", "sets": [["en"]]},
                       {"pool": "xnli/validation", "sets": [["de"]],
                        "budget": {"per_language": 300}}]}
    ctx = RunContext(str(nli_dir), "fake8.sqlite", "fake8")

    def keys(cells):
        return [probe.fit_key(c, ctx, training_frames(c, ctx.data_dir,
                                                      sample_training(c, ctx.data_dir)))
                for c in cells]
    cells = build_batch(raw, nli_dir).cells
    en = [c for c in cells if list(c.sources) == ["en"]]
    de = [c for c in cells if list(c.sources) == ["de"]]
    assert len(en) == 4 and len(set(keys(en))) == 1          # 2 seeds x 2 regimes: one fit
    assert len(de) == 2 and len(set(keys(de))) == 2          # the seed draws other rows
    mlp = build_batch({**raw, "probe": {"classifier": "mlp", "max_iter": 5}}, nli_dir).cells
    assert len(set(keys([c for c in mlp if list(c.sources) == ["en"]]))) == 2   # seeded MLP

    probe._FITS.clear()
    memo = [probe.run(c, ctx) for c in en]
    assert len(probe._FITS) == 1
    for cell, rec in zip(en, memo):
        probe._FITS.clear()
        cold = probe.run(cell, ctx)
        assert [(r.language, r.macro_f1, r.confusion) for r in rec.results] == \
            [(r.language, r.macro_f1, r.confusion) for r in cold.results]


def test_scored_rows_features_are_memoised_per_centring(nli_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A target's scored-row features are built once per worker and equal :func:`features`;
    a centred probe gets its own (centred) matrix, never the plain one."""
    from measure.methods.base import RunContext
    from measure.methods.sampling import target_rows
    from measure.running.config import build_batch
    monkeypatch.setattr(probe, "vectors", _fake_vectors)
    raw = {"name": "memo", "model": "me5-small", "method": "probe", "eval_cap": 90,
           "budget": {"total": 300},
           "targets": [{"split": "xnli/test", "languages": ["en", "sw"]},
                       {"split": "americas_nli/test", "languages": ["aym"]}],
           "sources": [{"pool": "xnli/validation", "sets": [["en"], ["de"]]}]}
    plain = build_batch(raw, nli_dir).cells
    centred = build_batch({**raw, "probe": {"centre": "language"}}, nli_dir).cells
    ctx = RunContext(str(nli_dir), "fake8.sqlite", "fake8")
    probe._SCORING.clear()
    assert target_rows(plain[0], str(nli_dir)) == target_rows(plain[1], str(nli_dir))
    for cell in (*plain, *centred):
        for _, _, _, rows in target_rows(cell, str(nli_dir)):
            np.testing.assert_array_equal(probe.scoring_features(cell, ctx, rows),
                                          probe.features(cell, ctx, rows))
    assert len(probe._SCORING) == 2 * 3                  # (plain, centred) x 3 targets
    rows = target_rows(plain[0], str(nli_dir))[0][3]
    assert probe.scoring_features(plain[0], ctx, rows) is \
        probe.scoring_features(plain[1], ctx, rows)       # one matrix shared by the cells
    assert not np.array_equal(probe.scoring_features(plain[0], ctx, rows),
                              probe.scoring_features(centred[0], ctx, rows))
