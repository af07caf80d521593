"""NLI data layer: every source of NLI examples becomes one typed frame.

Why one frame: the grid, the probe and the store only ever see
``premise, hypothesis, label, pair_id, dataset, language, split``, so adding a data
source never touches measurement code. Bad files fail here, with the file and the
problem named, instead of as a pandas traceback three modules later.

Sources:
* the parquet layout ``{root}/{dataset}/{lang}/{split}.parquet`` (``../shared/data/nli``);
* the official XNLI-1.0 / XNLI-MT downloads (``xnli.{dev,test}.tsv`` with a ``language``
  column; ``multinli.train.{lang}.tsv``);
* Hugging Face ``datasets`` (optional extra ``xlt[hf]``, needs a network).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from measure.knowledge.nli import LABELS

from measure.knowledge.paths import DATA, DefaultPathNotFound, resolve_default

COLUMNS = ("premise", "hypothesis", "label", "pair_id", "dataset", "language", "split")
LABEL_WORDS = {word: i for i, word in enumerate(LABELS)}
# XNLI-MT/MultiNLI spell contradiction "contradictory" in some releases.
LABEL_WORDS["contradictory"] = 2

class DataError(ValueError):
    """A data file or directory is unusable; the message names the file and the fix."""


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """Turn a user value (or None for the default) into an existing directory, or fail clearly."""
    if data_dir is None:
        try:
            data_dir = resolve_default(DATA)
        except DefaultPathNotFound as exc:
            raise DataError(f"{exc} (expected layout DIR/{{dataset}}/{{language}}/{{split}}.parquet, "
                            "e.g. ../shared/data/nli)") from None
    path = Path(data_dir)
    if path.exists() and not path.is_dir():
        raise DataError(f"data directory {path} is a file, not a directory: pass --data-dir DIR "
                        "(laid out as DIR/{dataset}/{language}/{split}.parquet)")
    if not path.is_dir():
        raise DataError(f"data directory {path} does not exist: pass --data-dir or set XLT_DATA_DIR")
    return path


@dataclass(frozen=True)
class SplitRef:
    """One (dataset, language, split) triple: the unit the grid trains and evaluates on."""

    dataset: str
    language: str
    split: str

    def __str__(self) -> str:
        return f"{self.dataset}/{self.language}/{self.split}"


def _coerce_labels(labels: pd.Series, source: str) -> np.ndarray:
    """Integers 0–2 or label words; anything else is an error naming the file and the values."""
    if labels.isna().any():
        raise DataError(f"{source}: {int(labels.isna().sum())} rows have no label")
    if pd.api.types.is_bool_dtype(labels) or any(isinstance(v, (bool, np.bool_)) for v in labels[:100]):
        raise DataError(f"{source}: labels are booleans; NLI labels are 0, 1, 2 "
                        "(0 entailment, 1 neutral, 2 contradiction) or label words")
    if pd.api.types.is_numeric_dtype(labels):
        values = labels.to_numpy()
        if not np.all(np.equal(np.mod(values, 1), 0)):
            raise DataError(f"{source}: labels must be integers 0, 1, 2")
        bad = sorted(set(values.astype(int).tolist()) - {0, 1, 2})
        if bad:
            raise DataError(f"{source}: label values {bad[:5]} outside 0–2 "
                            "(0 entailment, 1 neutral, 2 contradiction)")
        return values.astype(np.int8)
    words = labels.astype(str).str.strip().str.lower()
    unknown = sorted(set(words) - set(LABEL_WORDS) - {"0", "1", "2"})
    if unknown:
        raise DataError(f"{source}: unknown label word(s) {unknown[:5]}; expected one of "
                        f"{sorted(LABEL_WORDS)} or 0/1/2")
    return words.map(lambda w: LABEL_WORDS.get(w, int(w) if w in {"0", "1", "2"} else -1)).to_numpy(np.int8)


def _check_pair_ids(ids: pd.Series, source: str) -> np.ndarray:
    """``pair_id`` must be unique integers (it lines a pair up across languages)."""
    fix = "pair_id must be unique integers (or drop the column to number the rows)"
    if ids.isna().any():
        raise DataError(f"{source}: {int(ids.isna().sum())} rows have no pair_id; {fix}")
    if pd.api.types.is_bool_dtype(ids) or not pd.api.types.is_numeric_dtype(ids):
        raise DataError(f"{source}: pair_id has {ids.dtype} values (e.g. {ids.iloc[0]!r}); {fix}")
    values = ids.to_numpy()
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or not np.all(np.equal(np.mod(values, 1), 0)) \
                or np.any(np.abs(values) >= 2**63):
            raise DataError(f"{source}: pair_id has non-integer values; {fix}")
    elif values.dtype.kind == "u" and values.size and values.max() >= 2**63:
        raise DataError(f"{source}: pair_id values exceed the int64 range; {fix}")
    out = values.astype(np.int64)
    dup = pd.Series(out).duplicated()
    if dup.any():
        raise DataError(f"{source}: {int(dup.sum())} duplicate pair_id value(s) "
                        f"(e.g. {int(out[dup.to_numpy()][0])}); {fix}")
    return out


def normalise_frame(df: pd.DataFrame, *, dataset: str, language: str, split: str,
                    source: str) -> pd.DataFrame:
    """Validate a raw frame and return it in the project's typed layout."""
    if len(df) == 0:
        raise DataError(f"{source}: file has no rows")
    if len(set(map(str, df.columns))) != len(df.columns):
        raise DataError(f"{source}: duplicate column names {list(df.columns)}")
    missing = [c for c in ("premise", "hypothesis", "label") if c not in df.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing}; found {list(df.columns)}; "
                        "an NLI file needs premise, hypothesis and label")
    for col in ("premise", "hypothesis"):
        if df[col].isna().any():
            raise DataError(f"{source}: {int(df[col].isna().sum())} rows have an empty {col}")
    out = pd.DataFrame({
        "premise": df["premise"].astype(str).to_numpy(),
        "hypothesis": df["hypothesis"].astype(str).to_numpy(),
        "label": _coerce_labels(df["label"], source),
        "pair_id": (_check_pair_ids(df["pair_id"], source) if "pair_id" in df.columns
                    else np.arange(len(df), dtype=np.int64)),
    })
    out["dataset"] = dataset
    out["language"] = language
    out["split"] = split
    return out


def parquet_path(root: Path, ref: SplitRef) -> Path:
    return root / ref.dataset / ref.language / f"{ref.split}.parquet"


def load_parquet_split(root: str | os.PathLike, dataset: str, language: str, split: str) -> pd.DataFrame:
    """Load ``{root}/{dataset}/{language}/{split}.parquet`` as the typed frame."""
    root = Path(root)
    ref = SplitRef(dataset, language, split)
    path = parquet_path(root, ref)
    if not path.is_file():
        raise DataError(f"{path}: no such file; available: {describe_available(root, dataset)}")
    try:
        raw = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types for corrupt files
        raise DataError(f"{path}: not a readable parquet file ({type(exc).__name__}: {exc})") from None
    return normalise_frame(raw, dataset=dataset, language=language, split=split, source=str(path))


def load_xnli_tsv(path: str | os.PathLike, language: str, *, split: str | None = None,
                  dataset: str = "xnli") -> pd.DataFrame:
    """Load one language from the official XNLI-1.0 ``xnli.dev.tsv``/``xnli.test.tsv``.

    The official files hold all 15 languages with columns ``language, gold_label,
    sentence1, sentence2`` (plus binary-parse columns we ignore); ``pair_id`` is the
    row's ``pairID`` order within the language so it lines up across languages.
    """
    path = Path(path)
    if split is None:
        split = "validation" if "dev" in path.name else "test"
    raw = _read_tsv(path)
    need = ["language", "gold_label", "sentence1", "sentence2"]
    missing = [c for c in need if c not in raw.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; this does not look like an "
                        "official XNLI-1.0 file (xnli.dev.tsv / xnli.test.tsv)")
    sub = raw[raw["language"] == language]
    if len(sub) == 0:
        raise DataError(f"{path}: no rows for language {language!r}; "
                        f"languages in file: {sorted(raw['language'].unique())}")
    frame = sub.rename(columns={"sentence1": "premise", "sentence2": "hypothesis",
                                "gold_label": "label"}).reset_index(drop=True)
    frame = frame.drop(columns=[c for c in ("pair_id",) if c in frame.columns])
    return normalise_frame(frame, dataset=dataset, language=language, split=split, source=str(path))


def load_multinli_tsv(path: str | os.PathLike, language: str, *,
                      dataset: str = "xnli_mt") -> pd.DataFrame:
    """Load XNLI-MT's ``multinli.train.{lang}.tsv`` (columns premise, hypo, label)."""
    path = Path(path)
    raw = _read_tsv(path)
    raw = raw.rename(columns={"hypo": "hypothesis"})
    return normalise_frame(raw, dataset=dataset, language=language, split="train", source=str(path))


def _read_tsv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        return pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, dtype=str,
                           keep_default_na=False, on_bad_lines="error")
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: malformed TSV ({exc})") from None


def load_hf_split(hub_id: str, language: str, split: str, dataset: str | None = None) -> pd.DataFrame:
    """Load from the Hugging Face hub (e.g. ``facebook/xnli``), for users who are online."""
    try:
        import datasets  # noqa: PLC0415 - optional extra
    except ImportError:
        raise DataError("Hugging Face datasets is not installed: pip install 'xlt[hf]'") from None
    ds = datasets.load_dataset(hub_id, language, split=split)
    return normalise_frame(ds.to_pandas(), dataset=dataset or hub_id.split("/")[-1],
                           language=language, split=split, source=f"hf:{hub_id}/{language}/{split}")


def available_splits(root: str | os.PathLike) -> dict[str, dict[str, list[str]]]:
    """``{dataset: {language: [splits]}}`` found under a parquet-layout root."""
    root = Path(root)
    out: dict[str, dict[str, list[str]]] = {}
    for ds_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        langs: dict[str, list[str]] = {}
        for lang_dir in sorted(p for p in ds_dir.iterdir() if p.is_dir()):
            splits = sorted(f.stem for f in lang_dir.glob("*.parquet"))
            if splits:
                langs[lang_dir.name] = splits
        if langs:
            out[ds_dir.name] = langs
    return out


def describe_available(root: Path, dataset: str | None = None) -> str:
    if not root.is_dir():
        return "(data directory missing)"
    avail = available_splits(root)
    if dataset is not None:
        if dataset not in avail:
            return f"datasets {sorted(avail)}"
        return ", ".join(f"{lang}:{'+'.join(s)}" for lang, s in avail[dataset].items())
    return ", ".join(sorted(avail))


def languages_with_split(root: str | os.PathLike, dataset: str, split: str,
                         avail: dict[str, dict[str, list[str]]] | None = None) -> list[str]:
    """Languages of ``dataset`` that have ``split`` (what ``*`` means in a batch config).

    ``avail``: :func:`available_splits` of ``root``, when the caller has it already.
    """
    avail = available_splits(root) if avail is None else avail
    if dataset not in avail:
        raise DataError(f"unknown dataset {dataset!r}; available in {root}: {sorted(avail)}")
    langs = [lang for lang, splits in avail[dataset].items() if split in splits]
    if not langs:
        raise DataError(f"dataset {dataset!r} has no {split!r} split; splits: "
                        f"{sorted({s for v in avail[dataset].values() for s in v})}")
    return langs


def validate_splits(root: str | os.PathLike, refs: "list[SplitRef] | set[SplitRef]") -> dict[SplitRef, int]:
    """Load and check every split exactly as ``xlt-measure data`` does; {ref: rows}.

    ``xlt-measure run`` calls this before any embedding or store write, so a bad file
    (label 3, a missing column, a NaN premise, a non-parquet file, bad pair_ids) fails the
    run up front with the file named instead of as a failed cell hours later.
    """
    return {ref: len(load_parquet_split(root, ref.dataset, ref.language, ref.split))
            for ref in sorted(refs, key=str)}
