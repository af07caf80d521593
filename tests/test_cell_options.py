"""Target parts, target shots and probe centring (#21, #22): the partition, the draws, the
config keys and what they do to cell hashes. Nothing here loads a model: the probe runs on
deterministic fake embeddings."""

from __future__ import annotations

import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from measure.cell import CellSpec, parse_shot_key, part_split_name
from measure.methods import probe
from measure.methods.base import RunContext
from measure.methods.sampling import (balanced_draw, eval_indices, load_split, part_indices,
                                      sample_shots, sample_training, target_rows,
                                      training_frames)
from measure.running.config import ConfigError, build_batch, load_toml

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "measure" / "configs"
AMERICAS = ("aym", "bzd", "cni", "hch", "nah", "oto", "tar")

BASE = {
    "model": "me5-small", "method": "probe", "eval_cap": 2000, "budget": {"total": 2490},
    "targets": [{"split": "xnli/test", "languages": ["en", "sw"]},
                {"split": "americas_nli/test", "languages": ["aym", "nah"], "parts": 2}],
    "sources": [{"pool": "xnli/validation", "sets": [["de", "en"]], "seeds": [0, 1]}],
}


def _with(**changes: object) -> dict:
    return {**BASE, **changes}


# -- parts ---------------------------------------------------------------------------------
@pytest.mark.parametrize("lang", AMERICAS)
def test_parts_are_disjoint_stratified_by_item_and_cover_the_split(nli_dir: Path,
                                                                     lang: str) -> None:
    frame = load_split(str(nli_dir), "americas_nli", lang, "test")
    a, b = part_indices(frame, "A"), part_indices(frame, "B")
    assert not np.intersect1d(a, b).size
    assert np.array_equal(np.union1d(a, b), np.arange(len(frame)))
    assert abs(len(a) - len(b)) <= 3
    for label in (0, 1, 2):                                     # label-stratified
        assert abs((frame["label"].iloc[a] == label).sum()
                   - (frame["label"].iloc[b] == label).sum()) <= 2
    # by item: no premise is in both parts
    assert not set(frame["premise"].iloc[a]) & set(frame["premise"].iloc[b])
    assert np.array_equal(part_indices(frame, "A"), a)          # fixed: the same every time


def test_part_indices_refuses_bad_parts(nli_dir: Path) -> None:
    frame = load_split(str(nli_dir), "americas_nli", "aym", "test")
    with pytest.raises(ValueError, match="use one of A, B"):
        part_indices(frame, "C", 2)
    with pytest.raises(ValueError, match="2..26 parts"):
        part_indices(frame, "A", 1)
    thirds = [part_indices(frame, p, 3) for p in "ABC"]
    assert sum(len(t) for t in thirds) == len(frame)


def test_targets_with_parts_are_scored_per_part_under_their_own_names(nli_dir: Path) -> None:
    batch = build_batch(BASE, nli_dir)
    cell = batch.cells[0]
    rows = target_rows(cell, str(nli_dir))
    names = [(ds, lang, split) for ds, lang, split, _ in rows]
    assert names == [("xnli", "en", "test"), ("xnli", "sw", "test"),
                     ("americas_nli", "aym", "test/A-of-2"), ("americas_nli", "aym", "test/B-of-2"),
                     ("americas_nli", "nah", "test/A-of-2"), ("americas_nli", "nah", "test/B-of-2")]
    assert part_split_name("test", "A", 2) == "test/A-of-2"
    full = load_split(str(nli_dir), "americas_nli", "aym", "test")
    a, b = (r for ds, lang, _, r in rows if lang == "aym")
    assert sorted(a.index.tolist() + b.index.tolist()) == list(range(len(full)))
    # every cell scores the same part rows; XNLI targets keep their capped subset
    other = target_rows(batch.cells[1], str(nli_dir))
    assert [r.index.tolist() for *_, r in other] == [r.index.tolist() for *_, r in rows]
    en = load_split(str(nli_dir), "xnli", "en", "test")
    assert rows[0][3].index.tolist() == en.index[eval_indices(en, 2000)].tolist()
    assert cell.targets[1].to_dict()["parts"] == 2 and "parts" not in cell.targets[0].to_dict()
    assert CellSpec.from_dict(cell.to_dict()) == cell


def test_parts_change_the_hash_and_a_part_name_is_no_split(nli_dir: Path) -> None:
    whole = _with(targets=[{k: v for k, v in t.items() if k != "parts"}
                           for t in BASE["targets"]])
    a = {c.hash for c in build_batch(whole, nli_dir).cells}
    b = {c.hash for c in build_batch(BASE, nli_dir).cells}
    assert a and b and not a & b
    with pytest.raises(ConfigError, match="expected 'dataset/split'"):
        build_batch(_with(targets=[{"split": "americas_nli/test/A-of-2"}]), nli_dir)


@pytest.mark.parametrize("parts", [1, 27, True, "2", 2.0])
def test_bad_parts_fail_with_one_line(nli_dir: Path, parts: object) -> None:
    raw = _with(targets=[{"split": "americas_nli/test", "parts": parts}])
    with pytest.raises(ConfigError, match=r"targets\[0\]\.parts = .*expected an integer 2\.\.26"):
        build_batch(raw, nli_dir)


# -- shots ---------------------------------------------------------------------------------
def _shots(**shots: object) -> dict:
    group = {**BASE["sources"][0], "shots": {"split": "americas_nli/validation",
                                               "languages": ["aym"], "n": [0, 25], **shots}}
    return _with(sources=[group])


def test_shots_expand_one_cell_per_language_and_n_within_the_fixed_total(nli_dir: Path) -> None:
    batch = build_batch(_shots(languages=["aym", "bzd"], n=[0, 25, 100]), nli_dir)
    by = {(tuple(sorted(c.target_shots.items())), c.seed): c for c in batch.cells}
    assert len(batch.cells) == 2 * (1 + 2 * 2)                  # seeds x (plain + langs x n)
    plain = by[((), 0)]
    assert plain.to_dict().get("target_shots") is None
    shot = by[((("americas_nli/validation:aym", 100),), 0)]
    assert sum(shot.train_config.values()) + shot.n_shots == 2490
    assert shot.total_examples == 2390 and shot.hash != plain.hash
    assert CellSpec.from_dict(shot.to_dict()) == shot
    assert parse_shot_key("americas_nli/validation:aym") == ("americas_nli", "validation", "aym")


def test_shots_are_balanced_and_never_translations_of_the_sources(nli_dir: Path) -> None:
    raw = _with(targets=[{"split": "xnli/test", "languages": ["sw"]}],
                sources=[{"pool": "xnli/validation", "sets": [["de", "en"], ["en"]],
                          "shots": {"split": "xnli/validation", "languages": ["sw"],
                                    "n": [25, 400]}}])
    for cell in build_batch(raw, nli_dir).cells:
        drawn = sample_training(cell, str(nli_dir))
        ((ds, lang, split, idx),) = sample_shots(cell, str(nli_dir))
        assert (ds, lang, split) == ("xnli", "sw", "validation")
        counts = np.bincount(load_split(str(nli_dir), ds, lang, split)["label"].to_numpy()[idx])
        assert counts.max() - counts.min() <= 1 and counts.sum() == cell.n_shots
        used = np.concatenate([i for _, i in drawn])            # same pair ids: rows = meanings
        assert not np.intersect1d(used, idx).size
        frames = training_frames(cell, str(nli_dir), drawn)
        assert [f["language"].iloc[0] for f in frames] == [*cell.sources, "sw"]
        assert sum(len(f) for f in frames) == 2490


def test_a_cell_without_shots_draws_exactly_as_before(nli_dir: Path) -> None:
    """The draw of an old cell is pinned: the shipped tables' cells stay reproducible."""
    cell = CellSpec.from_dict({"model": "me5-small", "method": "probe", "backend": "ort-int8",
                               "train_dataset": "xnli", "train_split": "validation",
                               "regime": "fixed_total", "train_config": {"de": 1245, "en": 1245},
                               "seed": 1, "params": {}, "targets": [], "eval_cap": 0})
    rng = np.random.default_rng(1)
    perm = rng.permutation(2490)
    drawn = sample_training(cell, str(nli_dir))
    assert drawn[0][1].tolist() == sorted(perm[:1245].tolist())
    assert drawn[1][1].tolist() == sorted(perm[1245:].tolist())
    assert sample_shots(cell, str(nli_dir)) == []


def test_balanced_draw_deals_the_labels_evenly() -> None:
    labels = np.array([0] * 3 + [1] * 50 + [2] * 50)
    idx = balanced_draw(labels, 30, np.random.default_rng(0))
    assert np.bincount(labels[idx]).tolist() == [3, 14, 13]   # label 0 has only 3 rows
    assert len(set(idx.tolist())) == 30
    with pytest.raises(ValueError):
        balanced_draw(labels, 200, np.random.default_rng(0))


@pytest.mark.parametrize("shots,message", [
    ({"split": "americas_nli/test"}, "which the config scores"),
    ({"n": [0, 800]}, "800 shots of 'aym' exceed the 743 pairs"),
    ({"n": [25, 25]}, "expected distinct integers >= 0"),
    ({"n": [-1]}, "expected distinct integers >= 0"),
    ({"n": [True]}, "expected distinct integers >= 0"),
    ({"languages": ["quy"]}, "has no data in americas_nli/validation"),
    ({"split": "americas_nli"}, "expected 'dataset/split'"),
    ({"sizes": [1]}, "unknown key"),
])
def test_bad_shots_fail_with_one_line(nli_dir: Path, shots: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        build_batch(_shots(**shots), nli_dir)
    assert "\n" not in str(err.value)


def test_shots_must_leave_sources_a_share_of_the_fixed_total(nli_dir: Path) -> None:
    with pytest.raises(ConfigError, match="leaves nothing of the fixed total 300"):
        build_batch({**_shots(n=[300]), "budget": {"total": 300}}, nli_dir)
    with pytest.raises(ConfigError, match="at least 10 examples per source language"):
        build_batch({**_shots(n=[290]), "budget": {"total": 300}}, nli_dir)


def test_shots_from_the_pool_must_fit_beside_the_sources(nli_dir: Path) -> None:
    raw = _with(budget={"per_language": 2400},
                targets=[{"split": "xnli/test", "languages": ["sw"]}],
                sources=[{"pool": "xnli/validation", "sets": [["en"]],
                          "shots": {"split": "xnli/validation", "languages": ["sw"], "n": [100]}}])
    with pytest.raises(ConfigError, match="do not fit in its 2490 rows"):
        build_batch(raw, nli_dir)


def test_cli_run_rejects_bad_shots_with_exit_2(nli_dir: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('model = "me5-small"\nmethod = "probe"\n[budget]\ntotal = 300\n'
                   '[[targets]]\nsplit = "americas_nli/test"\nlanguages = ["aym"]\n'
                   '[[sources]]\npool = "xnli/validation"\nsets = [["en"]]\n'
                   'shots = { split = "americas_nli/test", languages = ["aym"], n = [10] }\n')
    store = tmp_path / "s.sqlite"
    proc = subprocess.run([sys.executable, "-m", "measure.cli", "run", str(cfg), "--store",
                           str(store), "--data-dir", str(nli_dir)], capture_output=True, text=True)
    assert proc.returncode == 2 and "which the config scores" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not store.exists()


# -- centring ------------------------------------------------------------------------------
def test_centre_validates_and_changes_the_hash(nli_dir: Path) -> None:
    assert probe.ProbeParams.from_dict({"centre": "language"}).centre == "language"
    for bad in ("lang", "", 1, True):
        with pytest.raises(ValueError, match=r"\[probe\]\.centre"):
            probe.ProbeParams.from_dict({"centre": bad})
    plain = {c.hash for c in build_batch(BASE, nli_dir).cells}
    centred = build_batch(_with(probe={"centre": "language"}), nli_dir).cells
    assert plain.isdisjoint(c.hash for c in centred)
    assert all(c.params["centre"] == "language" for c in centred)


def test_centring_never_reads_a_scored_row(nli_dir: Path) -> None:
    raw = _with(probe={"centre": "language"}, targets=[
        {"split": "xnli/test", "languages": ["ur", "de"]},
        {"split": "americas_nli/test", "languages": ["aym"], "parts": 2}])
    cell = build_batch(raw, nli_dir).cells[0]
    for ds, lang in sorted(probe.cell_languages(cell)):
        split = probe.centring_split(cell, ds)
        assert split == "validation"                 # the pool's split, a target's validation
        texts = set(probe.centring_texts(str(nli_dir), ds, lang, split))
        test = load_split(str(nli_dir), ds, lang, "test")
        assert not texts & {*test["premise"], *test["hypothesis"]}, (ds, lang)
        assert len(texts) > 500


@pytest.mark.parametrize("change,message", [
    ({"targets": [{"split": "xnli/validation", "languages": ["sw"]}]},
     "with the mean of the text it is scored on"),
])
def test_bad_centring_fails_with_one_line(nli_dir: Path, change: dict, message: str) -> None:
    raw = _with(probe={"centre": "language"},
                sources=[{"pool": "xnli/validation", "sets": [["en"]]}], **change)
    with pytest.raises(ConfigError, match=message):
        build_batch(raw, nli_dir)


def _fake_vectors(cache_path: str, key: str, texts: list[str]) -> np.ndarray:
    """16-d vectors from the text's checksum plus an offset per script-ish feature."""
    out = []
    for t in texts:
        v = np.random.default_rng(zlib.crc32(t.encode())).normal(size=16)
        v[0] += 3.0 * (sum(map(ord, t)) / max(1, len(t)) > 110)   # a "language" offset
        out.append(v / np.linalg.norm(v))
    return np.stack(out)


def test_centring_changes_the_features_and_a_cell_runs_with_parts_and_shots(
        nli_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe, "vectors", _fake_vectors)
    raw = _with(eval_cap=60, budget={"total": 120},
                targets=[{"split": "xnli/test", "languages": ["en"]},
                         {"split": "americas_nli/test", "languages": ["aym"], "parts": 2}],
                sources=[{"pool": "xnli/validation", "sets": [["en"]], "seeds": [0],
                          "shots": {"split": "americas_nli/validation", "languages": ["aym"],
                                    "n": [30]}}])
    plain = build_batch(raw, nli_dir).cells[0]
    centred = build_batch({**raw, "probe": {"centre": "language"}}, nli_dir).cells[0]
    ctx = RunContext(str(nli_dir), "fake.sqlite", "fake")
    frame = load_split(str(nli_dir), "americas_nli", "aym", "test").iloc[:20]
    a, b = probe.features(plain, ctx, frame), probe.features(centred, ctx, frame)
    mean = probe.language_mean(ctx, "americas_nli", "aym", "validation")
    u = _fake_vectors("", "", frame["premise"].tolist())
    assert np.allclose(a[:, :16], u) and np.allclose(b[:, :16], u - mean)
    for cell in (plain, centred):
        rec = probe.run(cell, ctx)
        assert rec.status == "done"
        assert [(r.language, r.split, r.n) for r in rec.results] == [
            ("en", "test", 60), ("aym", "test/A-of-2", 60), ("aym", "test/B-of-2", 60)]
    texts = probe.texts_for_batch([centred], str(nli_dir))
    assert set(probe.centring_texts(str(nli_dir), "americas_nli", "aym", "validation")) \
        <= set(texts)                                            # embedded before the run
    assert set(probe.texts_for_batch([plain], str(nli_dir))) < set(texts)


# -- old configs keep their cells ---------------------------------------------------------
@pytest.mark.parametrize("config,table", [
    ("default", "me5-small-probe"), ("design-add-one", "me5-small-probe-add-one"),
    ("design-shapley", "me5-small-probe-shapley"), ("finetune-singles", "me5-small-finetune")])
def test_committed_configs_expand_to_the_shipped_tables_cells(nli_dir: Path, config: str,
                                                              table: str) -> None:
    cells = build_batch(load_toml(CONFIGS / f"{config}.toml"), nli_dir, check_data=False).cells
    shipped = pd.read_parquet(REPO / "models" / "measurements" / f"{table}.parquet",
                              columns=["cell_hash"])["cell_hash"]
    assert {c.hash for c in cells} == set(shipped)
