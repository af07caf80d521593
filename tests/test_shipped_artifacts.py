"""Guards for what ships in the repository and what the sampling promises.

Why: the app and the predictor serve the committed files under ``models/`` and
``measure/resources/`` by default. A hand edit, a stale regeneration or a schema drift
there breaks users silently, so each shipped artefact is checked against the code that
produces or reads it.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _cells import spec

from app.data import MEASUREMENT_COLUMNS
from measure.build_languages import OUT as LANGUAGES_CSV
from measure.build_languages import build as build_languages
from measure.cell import CellSpec
from measure.methods.sampling import eval_indices, sample_training
from predictor.serving import load_predictor

REPO = Path(__file__).resolve().parent.parent
MEASUREMENTS = sorted(p for p in (REPO / "models" / "measurements").glob("*.parquet")
                      if not p.stem.endswith("-path"))  # a design's side table, not cells


@pytest.mark.parametrize("path", MEASUREMENTS, ids=[p.name for p in MEASUREMENTS])
def test_measured_tables_have_what_the_app_reads(path: Path) -> None:
    df = pd.read_parquet(path)
    missing = [c for c in MEASUREMENT_COLUMNS if c not in df.columns]
    assert not missing, f"{path.name} lacks {missing}"
    assert len(df) > 0
    assert df["macro_f1"].between(0, 100).all()
    assert df["cell_hash"].str.fullmatch(r"[0-9a-f]{64}").all()
    # every row's k is the number of languages with examples in its train_config
    k = df["train_config"].map(lambda s: sum(1 for n in json.loads(s).values() if n > 0))
    assert (k == df["k"]).all()
    # one row per (cell, target split): a target scored on parts has a row per part
    assert not df.duplicated(["cell_hash", "target_dataset", "target_language",
                              "target_split"]).any()


def test_shipped_predictor_loads_with_its_checksum() -> None:
    p = load_predictor(REPO / "models" / "predictor")
    out = p.predict_one("me5-small", "probe", {"en": 2490}, "sw")
    assert 0 <= out["lower"] <= out["prediction"] <= out["upper"] <= 100


def test_languages_csv_is_what_build_languages_produces(published_dir: Path) -> None:
    built = build_languages(published_dir.parent)
    buf = io.StringIO()
    built.to_csv(buf, index=False)
    assert buf.getvalue() == LANGUAGES_CSV.read_text(encoding="utf-8"), (
        "measure/resources/languages.csv is stale or hand-edited: regenerate it with "
        "`python -m measure.build_languages --shared ../shared/data`")


def _parallel_pool(root: Path, langs: list[str], n: int) -> None:
    """A synthetic parallel pool: the same pair_ids in every language, as in XNLI."""
    rng = np.random.default_rng(0)
    for lang in langs:
        d = root / "pool" / lang
        d.mkdir(parents=True)
        pd.DataFrame({"premise": [f"{lang} p{i}" for i in range(n)],
                      "hypothesis": [f"{lang} h{i}" for i in range(n)],
                      "label": rng.integers(0, 3, n),
                      "pair_id": np.arange(1000, 1000 + n)}).to_parquet(d / "train.parquet")


def _cell(regime: str, tc: dict[str, int], seed: int = 0) -> CellSpec:
    return spec(train_dataset="pool", train_split="train", regime=regime, train_config=tc,
                seed=seed)


def test_fixed_total_draws_disjoint_meanings(tmp_path: Path) -> None:
    _parallel_pool(tmp_path, ["de", "en", "fr"], 90)
    picks = sample_training(_cell("fixed_total", {"de": 30, "en": 30, "fr": 30}), str(tmp_path))
    assert [lang for lang, _ in picks] == ["de", "en", "fr"]
    ids = [set(idx.tolist()) for _, idx in picks]
    assert all(len(s) == 30 for s in ids)
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    again = sample_training(_cell("fixed_total", {"de": 30, "en": 30, "fr": 30}), str(tmp_path))
    assert all((a[1] == b[1]).all() for a, b in zip(picks, again))  # a seed fixes the sample
    other = sample_training(_cell("fixed_total", {"de": 30, "en": 30, "fr": 30}, seed=1),
                            str(tmp_path))
    assert any((a[1] != b[1]).any() for a, b in zip(picks, other))


def test_per_language_draws_independently_and_whole_pools_ignore_the_seed(tmp_path: Path) -> None:
    _parallel_pool(tmp_path, ["de", "en"], 50)
    picks = sample_training(_cell("per_language", {"de": 20, "en": 20}), str(tmp_path))
    assert all(len(idx) == 20 for _, idx in picks)
    full = [sample_training(_cell("per_language", {"de": 50, "en": 50}, seed=s), str(tmp_path))
            for s in (0, 1)]
    for (_, a), (_, b) in zip(*full):
        assert (a == np.arange(50)).all() and (b == np.arange(50)).all()


def test_eval_subset_is_label_stratified_and_fixed() -> None:
    labels = np.repeat([0, 1, 2], [500, 300, 200])
    frame = pd.DataFrame({"label": labels})
    idx = eval_indices(frame, 100)
    assert np.bincount(labels[idx], minlength=3).tolist() == [50, 30, 20]
    assert (idx == eval_indices(frame, 100)).all()
    assert (eval_indices(frame, 0) == np.arange(1000)).all()
    assert (eval_indices(frame, 5000) == np.arange(1000)).all()
