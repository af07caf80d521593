"""The NLI data layer on the real shared data and on malformed files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from measure.data import (COLUMNS, DataError, available_splits, languages_with_split,
                          load_multinli_tsv, load_parquet_split, load_xnli_tsv, resolve_data_dir)

XNLI = "ar bg de el en es fr hi ru sw th tr ur vi zh".split()
MT9K = "de en es fr sw tr vi zh".split()
ANLI = "aym bzd cni hch nah oto tar".split()

# (dataset, split) -> (rows, per-label count) from shared/data/README.md
EXACT = {("xnli", "validation"): (2490, 830), ("xnli", "test"): (5010, 1670),
         ("xnli_mt9k", "train"): (9000, 3000)}
# AmericasNLI: validation 222-743 and test 738-750 rows per language.
ANLI_RANGES = {"validation": (222, 743), "test": (738, 750)}


def test_shipped_inventory(nli_dir: Path) -> None:
    avail = available_splits(nli_dir)
    assert sorted(avail["xnli"]) == sorted(XNLI)
    assert sorted(avail["xnli_mt9k"]) == sorted(MT9K)
    assert sorted(avail["americas_nli"]) == sorted(ANLI)
    assert languages_with_split(nli_dir, "xnli_mt9k", "train") == sorted(MT9K)


@pytest.mark.parametrize("dataset,split,langs", [
    ("xnli", "validation", XNLI), ("xnli", "test", XNLI), ("xnli_mt9k", "train", MT9K)])
def test_exact_counts(nli_dir: Path, dataset: str, split: str, langs: list[str]) -> None:
    rows, per_label = EXACT[(dataset, split)]
    for lang in langs:
        df = load_parquet_split(nli_dir, dataset, lang, split)
        assert list(df.columns) == list(COLUMNS)
        assert len(df) == rows, (dataset, lang, split)
        assert df["label"].value_counts().sort_index().tolist() == [per_label] * 3
        assert df["label"].dtype == np.int8
        assert (df["dataset"] == dataset).all() and (df["language"] == lang).all()
        assert (df["split"] == split).all()
        assert df["premise"].str.len().min() > 0


@pytest.mark.parametrize("split", ["validation", "test"])
def test_americas_nli_counts(nli_dir: Path, split: str) -> None:
    lo, hi = ANLI_RANGES[split]
    sizes = {}
    for lang in ANLI:
        df = load_parquet_split(nli_dir, "americas_nli", lang, split)
        sizes[lang] = len(df)
        assert set(df["label"].unique()) == {0, 1, 2}
    assert min(sizes.values()) == lo and max(sizes.values()) == hi


@pytest.mark.parametrize("dataset,split,langs", [
    ("xnli", "validation", XNLI), ("xnli", "test", XNLI), ("xnli_mt9k", "train", MT9K)])
def test_parallel_labels_agree(nli_dir: Path, dataset: str, split: str, langs: list[str]) -> None:
    """XNLI is 15-way parallel: the same pair_id carries the same label in every language."""
    ref = load_parquet_split(nli_dir, dataset, "en", split)[["pair_id", "label"]]
    for lang in langs:
        other = load_parquet_split(nli_dir, dataset, lang, split)[["pair_id", "label"]]
        assert (other["pair_id"].to_numpy() == ref["pair_id"].to_numpy()).all()
        assert (other["label"].to_numpy() == ref["label"].to_numpy()).all(), lang


def _write(tmp_path: Path, df: pd.DataFrame, lang: str = "en") -> Path:
    d = tmp_path / "ds" / lang
    d.mkdir(parents=True, exist_ok=True)
    df.to_parquet(d / "test.parquet")
    return tmp_path


GOOD = pd.DataFrame({"premise": ["a", "b"], "hypothesis": ["c", "d"], "label": [0, 2]})


def test_missing_column_named(tmp_path: Path) -> None:
    root = _write(tmp_path, GOOD.drop(columns=["hypothesis"]))
    with pytest.raises(DataError, match=r"test\.parquet: missing column\(s\) \['hypothesis'\]"):
        load_parquet_split(root, "ds", "en", "test")


def test_label_out_of_range(tmp_path: Path) -> None:
    root = _write(tmp_path, GOOD.assign(label=[0, 3]))
    with pytest.raises(DataError, match=r"label values \[3\] outside 0–2"):
        load_parquet_split(root, "ds", "en", "test")


def test_unknown_label_word(tmp_path: Path) -> None:
    root = _write(tmp_path, GOOD.assign(label=["entailment", "maybe"]))
    with pytest.raises(DataError, match=r"unknown label word\(s\) \['maybe'\]"):
        load_parquet_split(root, "ds", "en", "test")


def test_label_words_accepted(tmp_path: Path) -> None:
    root = _write(tmp_path, GOOD.assign(label=["Entailment", "contradiction"]))
    df = load_parquet_split(root, "ds", "en", "test")
    assert df["label"].tolist() == [0, 2]


def test_empty_file(tmp_path: Path) -> None:
    root = _write(tmp_path, GOOD.iloc[:0])
    with pytest.raises(DataError, match="file has no rows"):
        load_parquet_split(root, "ds", "en", "test")


def test_corrupt_parquet(tmp_path: Path) -> None:
    d = tmp_path / "ds" / "en"
    d.mkdir(parents=True)
    (d / "test.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="not a readable parquet file"):
        load_parquet_split(tmp_path, "ds", "en", "test")


def test_missing_file_lists_available(nli_dir: Path) -> None:
    with pytest.raises(DataError, match=r"no such file; available: .*aym:test\+validation"):
        load_parquet_split(nli_dir, "americas_nli", "aym", "train")


def test_missing_data_dir(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        resolve_data_dir(tmp_path / "nope")


def test_official_xnli_tsv(tmp_path: Path) -> None:
    path = tmp_path / "xnli.dev.tsv"
    path.write_text(
        "language\tgold_label\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1\tsentence2\n"
        "en\tneutral\t(x)\t(y)\tA man sleeps.\tA man rests.\n"
        "de\tcontradiction\t(x)\t(y)\tEin Mann schläft.\tEin Mann rennt.\n"
        "en\tcontradiction\t(x)\t(y)\tA dog barks.\tA cat meows.\n", encoding="utf-8")
    df = load_xnli_tsv(path, "en")
    assert df["split"].iloc[0] == "validation"
    assert df["label"].tolist() == [1, 2] and df["premise"].tolist()[1] == "A dog barks."
    with pytest.raises(DataError, match=r"no rows for language 'fr'"):
        load_xnli_tsv(path, "fr")


def test_official_xnli_tsv_wrong_columns(tmp_path: Path) -> None:
    path = tmp_path / "xnli.test.tsv"
    path.write_text("a\tb\n1\t2\n", encoding="utf-8")
    with pytest.raises(DataError, match="does not look like an official XNLI-1.0 file"):
        load_xnli_tsv(path, "en")


def test_multinli_tsv(tmp_path: Path) -> None:
    path = tmp_path / "multinli.train.de.tsv"
    path.write_text("premise\thypo\tlabel\nEs regnet .\tEs ist nass .\tentailment\n"
                    "Es regnet .\tEs ist trocken .\tcontradictory\n", encoding="utf-8")
    df = load_multinli_tsv(path, "de")
    assert df["label"].tolist() == [0, 2] and df["split"].iloc[0] == "train"
    empty = tmp_path / "multinli.train.fr.tsv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="file is empty"):
        load_multinli_tsv(empty, "fr")
