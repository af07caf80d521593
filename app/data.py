"""Read-only loaders for the app: measured tables, language names, families, report tables.

Why a separate module: every page needs the same tables with the same derived columns
(source-set label, target name, resource group, family), and Streamlit reruns a page
script on every interaction, so each table is built once per process and cached:
``st.cache_resource`` for the measured table (shared, never copied -- pages treat it as
read-only; a new export changes the cache key) and ``functools.lru_cache`` for the
static language tables, which ``format_func`` calls thousands of times. Nothing here
trains or writes anything; a missing input yields an empty result plus the command that
produces it, never an exception on a page.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from measure.cell import is_part_split, method_label, stored_options
from measure.knowledge.coverage import RESOURCE_CLASSES, resource_class
from measure.knowledge.languages import (UnknownLanguageError, lang2vec_data_dir,
                                         lang2vec_languages, registry_table, resolve_target)
from measure.knowledge.nli import pool_name
from measure.knowledge.paths import MODELS, resolve_default
from measure.knowledge.train_config import TrainConfig
from predictor.metaanalysis.prepare import CLASS_RULE

# Commands that produce each input (shown when the input is missing).
CMD_MEASURE = ("xlt-measure run measure/configs/default.toml --store results/default.sqlite\n"
               "xlt-measure export --store results/default.sqlite "
               "--out models/measurements/me5-small-probe.parquet")
CMD_PREDICTOR = ("xlt-predict fit --measurements models/measurements/me5-small-probe.parquet "
                 "--out models/predictor")
CMD_REPORT = ("xlt-predict report --measurements models/measurements/me5-small-probe.parquet "
              "--predictor models/predictor --out models/report")

MEASUREMENTS_SUBDIR = "measurements"
PREDICTOR_SUBDIR = "predictor"
REPORT_SUBDIR = "report"

#: the target classes pages group targets by: the meta-analysis's, one definition
#: (:func:`measure.knowledge.coverage.resource_class`)
TARGET_CLASSES = RESOURCE_CLASSES

# The columns of measure.store.ResultStore.results_frame() the pages rely on.
MEASUREMENT_COLUMNS = ["cell_hash", "model", "method", "train_dataset", "train_split", "regime",
                       "train_config", "k", "total_examples", "seed", "target_dataset",
                       "target_language", "target_split", "macro_f1", "accuracy", "n",
                       "zero_shot"]


def models_dir() -> Path:
    """The served models directory: ``$XLT_MODELS_DIR`` (set by ``xlt-app``), else models/
    found the way every command finds it (:func:`measure.knowledge.paths.resolve_default`)."""
    env = os.environ.get("XLT_MODELS_DIR")
    if env:
        return Path(env)
    return resolve_default(MODELS)


# -- measurements ---------------------------------------------------------------------------
@dataclass
class Measurements:
    """The measured table plus where it came from (for status and error messages)."""

    frame: pd.DataFrame
    files: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: (directory, file names/sizes/mtimes) when loaded by :func:`measurements`: names this
    #: table in ``st.cache_data`` keys without hashing the frame
    stamp: tuple = ()

    @property
    def empty(self) -> bool:
        return self.frame.empty


def config_key(tc: Any) -> str:
    """A stable string for an exact training configuration (matches measured to predicted).

    The configuration is read with :meth:`TrainConfig.read` (the app reads tables and must
    not fail on one bad row); an unreadable one gives ``null``.
    """
    config = TrainConfig.read(tc)
    return "null" if config is None else config.json


def read_measurement_files(directory: Path) -> Measurements:
    """Concatenate every ``*.parquet`` / ``*.csv`` export in ``directory`` and derive columns.

    ``*-path.parquet`` files are a design's side tables (the greedy search's path, written by
    ``xlt-measure greedy --path-out``), not measurements: they are left to the report.
    """
    files = sorted(p for p in [*directory.glob("*.parquet"), *directory.glob("*.csv")]
                   if not p.stem.endswith("-path")) if directory.is_dir() else []
    parts: list[pd.DataFrame] = []
    problems: list[str] = []
    for path in files:
        try:
            df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        except Exception as exc:  # a corrupt file must not take the app down
            problems.append(f"{path.name}: unreadable ({exc})")
            continue
        missing = [c for c in MEASUREMENT_COLUMNS if c not in df.columns]
        if missing:
            problems.append(f"{path.name}: missing columns {missing} (not an `xlt-measure export` "
                            "table)")
            continue
        parts.append(df)
    if not parts:
        return Measurements(pd.DataFrame(columns=MEASUREMENT_COLUMNS + _DERIVED),
                            [p.name for p in files], problems)
    df = pd.concat(parts, ignore_index=True)
    # the same result row in two files (a table exported twice, or copied beside a newer
    # export): a file-level duplicate, dropped here. Not measure.store.repeated_scores (two
    # different cells that happen to score the same), which the analyses apply themselves.
    df = df.drop_duplicates(["cell_hash", "target_dataset", "target_language", "target_split"])
    # scores on parts of a split (the predictor's split-half profile protocol) are not
    # measurements of the target on its split: the pages show whole splits only
    df = df[~df["target_split"].map(is_part_split)]
    return Measurements(enrich(df), [p.name for p in files], problems)


_DERIVED = ["config_key", "sources", "target_name", "target_group", "source_language", "pool"]


def enrich(df: pd.DataFrame) -> pd.DataFrame:
    """Derived columns every page uses: exact-config key, source label, target name/group."""
    df = df.copy()
    df["macro_f1"] = pd.to_numeric(df["macro_f1"], errors="coerce").astype(float)
    df["k"] = df["k"].astype(int)
    df["seed"] = df["seed"].astype(int)
    df["zero_shot"] = df["zero_shot"].astype(bool)
    # a centred probe is another method (never pooled with the plain one), and a cell that
    # trained on labelled target pairs (the few-shot design) is not a source-set measurement
    # of its train_config: the report shows it; the pages, which key runs by train_config,
    # do not (the measure layer's one reading of both)
    opts = [stored_options(c) for c in (df["config_json"] if "config_json" in df
                                        else [None] * len(df))]
    df["method"] = [method_label(m, o[0]) for m, o in zip(df["method"], opts)]
    df = df[[not o[1] for o in opts]].copy()
    # one implementation of "the same configuration" (the predictor's), tolerant here: a row
    # whose train_config cannot be read keeps its raw text as its key and matches nothing
    configs = [TrainConfig.read(tc) for tc in df["train_config"]]
    df["config_key"] = [c.json if c is not None else str(tc)
                        for c, tc in zip(configs, df["train_config"])]
    df["sources"] = ["+".join(c) if c else "" for c in configs]
    df["source_language"] = [next(iter(c)) if c and len(c) == 1 else None for c in configs]
    names = language_names()
    df["target_name"] = df["target_language"].map(lambda c: names.get(c, c))
    groups = resource_groups()
    df["target_group"] = df["target_language"].map(lambda c: groups.get(c) or resource_class(c))
    df["pool"] = [pool_name(d, s) for d, s in zip(df["train_dataset"], df["train_split"])]
    return df


def measurements(models: Path | None = None) -> Measurements:
    """The measured table of the served models directory (cached; reloads when files change)."""
    directory = (models or models_dir()) / MEASUREMENTS_SUBDIR
    return _load_with_stamp(str(directory), _stamp(directory))


@st.cache_resource(show_spinner="Loading measurements…", max_entries=4)
def _load_with_stamp(directory: str, stamp: tuple) -> Measurements:
    m = read_measurement_files(Path(directory))
    m.stamp = (directory, stamp)
    return m


def _stamp(directory: Path) -> tuple:
    """File names, sizes and mtimes: a new export invalidates the cache without a restart."""
    if not directory.is_dir():
        return ()
    return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                        for p in directory.iterdir() if p.suffix in {".parquet", ".csv"}))


def store_status(m: Measurements) -> dict[str, Any]:
    """Counts shown on the Measurements page (the exported store's content)."""
    df = m.frame
    if df.empty:
        return {"cells": 0, "rows": 0, "files": m.files, "by": pd.DataFrame()}
    by = (df.groupby(["model", "method", "pool", "regime"])
          .agg(cells=("cell_hash", "nunique"), rows=("cell_hash", "size"),
               seeds=("seed", "nunique"), k_min=("k", "min"), k_max=("k", "max"),
               targets=("target_language", "nunique"))
          .reset_index())
    secs = df.drop_duplicates("cell_hash").groupby(["model", "method", "pool", "regime"])[
        "train_seconds"].sum(min_count=1)
    by["train_hours"] = (secs.to_numpy() / 3600.0).round(3)
    return {"cells": int(df["cell_hash"].nunique()), "rows": int(len(df)), "files": m.files,
            "targets": int(df["target_language"].nunique()), "by": by}


def model_method_choices(df: pd.DataFrame) -> tuple[list[tuple[str, str]], int]:
    """(model, method) pairs for a selectbox, and the index of the default one.

    The default is the pair measured at the most values of k (ties: most rows), so a page
    opens on the scaling grid rather than on a single-source table such as the GPU
    fine-tuning one.
    """
    groups = df.groupby(["model", "method"])
    combos = sorted(groups.groups)
    rank = {key: (g["k"].nunique(), len(g)) for key, g in groups}
    return combos, combos.index(max(combos, key=lambda c: rank[c])) if combos else 0


# -- languages ------------------------------------------------------------------------------
# Static for the life of the process, and called inside format_func for thousands of
# options: plain lru_cache (st.cache_data would copy the value on every call).
@lru_cache(maxsize=1)
def language_names() -> dict[str, str]:
    """Dataset/registry code -> English name (registry languages only; fast)."""
    t = registry_table()
    return dict(zip(t["code"], t["name"]))


@lru_cache(maxsize=1)
def resource_groups() -> dict[str, str]:
    """Code -> target class ('absent' / 'xnli-low' / 'high') for the registry's NLI targets.

    The class is :func:`measure.knowledge.coverage.resource_class`, the meta-analysis's
    single definition (absent from CC-100; in CC-100 under a stated size; the rest), so the
    app and the report group targets identically.
    """
    t = registry_table()
    nli = t[t["datasets"].fillna("").str.split().map(lambda ds: any("nli" in d for d in ds))]
    return {str(c): resource_class(str(c)) for c in nli["code"]}


def low_resource_rule() -> str:
    """The target-class rule in one sentence (shown under the Scaling chart)."""
    return "Target classes: " + CLASS_RULE + "."


@lru_cache(maxsize=1)
def language_options() -> pd.DataFrame:
    """Every language the predictor accepts as a target: registry codes, then lang2vec's.

    Columns: code (what the predictor takes), iso639_3, name, label ('Swahili (sw)'),
    in_registry. Registry codes come first (they carry sizes and scripts); a lang2vec
    language whose ISO 639-3 code a registry entry already covers is not repeated.
    """
    t = registry_table()
    rows = [{"code": r.code, "iso639_3": r.iso639_3, "name": r.name, "in_registry": True}
            for r in t.itertuples()]
    covered = set(t["iso639_3"]) | set(t["code"])
    for iso3 in sorted(lang2vec_languages() - covered):
        lang = resolve_target(iso3)
        rows.append({"code": iso3, "iso639_3": iso3, "name": lang.name, "in_registry": False})
    df = pd.DataFrame(rows)
    df["label"] = df["name"] + " (" + df["code"] + ")"
    return df.reset_index(drop=True)


@lru_cache(maxsize=1)
def _labels() -> dict[str, str]:
    opts = language_options()
    return _LabelMap(zip(opts["code"], opts["label"]))


class _LabelMap(dict):
    """code -> label; an unknown code is its own label."""

    def __missing__(self, code: str) -> str:
        return code


def label_formatter() -> Any:
    """:func:`label_of` as one C-level lookup: ``format_func`` of the language pickers runs
    it on every option (~4,000) at every rerun."""
    return _labels().__getitem__


def label_of(code: str) -> str:
    """'Swahili (sw)' for any code the options know, also written another way ('swh',
    'swa': the registry's code is shown); the code itself otherwise. Why: every page names a
    language the same way, whichever code a table (the card's ISO 639-3 codes) holds."""
    labels = _labels()
    if code in labels:
        return labels[code]
    try:
        return labels.get(resolve_target(code).code, code)
    except (UnknownLanguageError, ValueError):
        return code


# -- families (URIEL genetic features) ------------------------------------------------------
@st.cache_resource(show_spinner="Reading URIEL language families…")
def _family_table() -> tuple[dict[str, int], np.ndarray, np.ndarray, np.ndarray]:
    """(language -> row, feature names, membership matrix, members per feature) from URIEL.

    URIEL's ``fam`` features are one 0/1 column per Glottolog family node. A language's
    top-level family is its node with the most member languages (a parent contains all
    of its children's members), its branch the next largest: no tree order is assumed.
    """
    # plain arrays (unicode names, float32 data): read without pickle, so a tampered file
    # cannot run code (lang2vec's own loader passes allow_pickle=True, which no array needs),
    # and found without importing lang2vec (seconds)
    with np.load(lang2vec_data_dir() / "family_features.npz", allow_pickle=False) as npz:
        langs = [str(x) for x in npz["langs"]]
        feats = np.array([str(f).removeprefix("F_").replace("_", " ") for f in npz["feats"]])
        member = npz["data"][:, :, 0] == 1
    return {c: i for i, c in enumerate(langs)}, feats, member, member.sum(axis=0)


def families(codes: list[str]) -> pd.DataFrame:
    """code -> family, branch (URIEL/Glottolog); 'Unknown' when URIEL lacks the language."""
    index, feats, member, counts = _family_table()
    rows = []
    for code in codes:
        try:
            iso3 = resolve_target(code).iso639_3
        except UnknownLanguageError:
            iso3 = code
        fam, branch = "Unknown", ""
        if iso3 in index:
            cols = np.flatnonzero(member[index[iso3]])
            if len(cols):
                order = cols[np.argsort(-counts[cols], kind="stable")]
                fam = str(feats[order[0]])
                branch = str(feats[order[1]]) if len(order) > 1 else fam
        rows.append({"code": code, "family": fam, "branch": branch})
    return pd.DataFrame(rows, columns=["code", "family", "branch"])


def family_order(codes: list[str]) -> list[str]:
    """Codes sorted by family, then branch, then name: related languages sit together.

    Families are ordered by how many of ``codes`` they hold (largest first), so the
    big Indo-European block leads and isolates trail.
    """
    fam = families(codes)
    names = language_names()
    fam["name"] = fam["code"].map(lambda c: names.get(c, c))
    size = fam.groupby("family")["code"].transform("size")
    fam["size"] = -size
    return fam.sort_values(["size", "family", "branch", "name"])["code"].tolist()


# -- report tables --------------------------------------------------------------------------
def read_report_summary(report_dir: Path) -> dict[str, Any] | None:
    """``summary.json`` written by ``xlt-predict report`` (None when absent or unreadable)."""
    path = report_dir / "summary.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def read_correlations(report_dir: Path) -> tuple[pd.DataFrame | None, str | None]:
    """The report's feature-score correlation table from ``summary.json`` (``correlations``:
    one record list per data origin, as ``xlt-predict report`` writes it), or (None, None)
    when there is none."""
    summary = read_report_summary(report_dir)
    corr = summary.get("correlations") if summary else None
    if not isinstance(corr, dict):
        return None, None
    parts = [pd.DataFrame(recs).assign(origin=origin) for origin, recs in corr.items() if recs]
    if not parts:
        return None, None
    df = pd.concat(parts, ignore_index=True)
    return df[["origin", *[c for c in df.columns if c != "origin"]]], "summary.json"
