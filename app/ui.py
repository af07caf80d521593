"""Shared page furniture: page setup, missing-input messages, model and language pickers.

Why: six pages ask for the same things (the models directory, a model, source and
target languages) and must fail the same way -- a clear message naming the command
that produces the missing input, never a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from app import data
from app.services import ModelChoice, PredictorService, load_service
from measure.knowledge.languages import registry_table


#: Tab icons (favicons) as emoji: Streamlit fetches a ``:material/...:`` favicon from
#: fonts.gstatic.com, and the app makes no outbound connection; an emoji favicon is an
#: inline SVG. (Material icons inside the page come with Streamlit's bundled font.)
FAVICONS = {":material/translate:": "🌐", ":material/online_prediction:": "🎯",
            ":material/explore:": "🧭", ":material/trending_up:": "📈",
            ":material/grid_on:": "🔢", ":material/insights:": "🔎",
            ":material/table_chart:": "📋"}


def favicon(icon: str) -> str | None:
    """The tab icon for ``icon``: an emoji as is, a material icon mapped to an emoji."""
    if icon.startswith(":material/"):
        return FAVICONS.get(icon)
    return icon


def setup(title: str, icon: str, intro: str) -> Path:
    """Page config, title and intro; returns the models directory (stops if it is missing)."""
    st.set_page_config(page_title=f"{title} · xlt", page_icon=favicon(icon), layout="wide")
    # charts are built from bounded aggregates (runs x groups, sources x targets); the
    # 5,000-row guard would only turn a large measured grid into an error
    alt.data_transformers.disable_max_rows()
    st.title(title)
    st.caption(intro)
    models = data.models_dir()
    if not models.is_dir():
        st.error(f"Models directory `{models}` not found. Start the app with "
                 "`xlt-app --models-dir DIR`, or create it with:")
        st.code(f"{data.CMD_MEASURE}\n{data.CMD_PREDICTOR}", language="bash")
        st.stop()
    return models


def missing(what: str, command: str, detail: str | None = None) -> None:
    """An info box: what is missing, why, and the command that produces it."""
    st.info(f"{what}{f' ({detail})' if detail else ''}. It is produced by:")
    st.code(command, language="bash")


def require_measurements(models: Path) -> data.Measurements:
    """The measured table, or a message with the producing command and ``st.stop()``."""
    m = data.measurements(models)
    for problem in m.problems:
        st.warning(f"Skipped a measurement file: {problem}")
    if m.empty:
        missing(f"No measured results in `{models / data.MEASUREMENTS_SUBDIR}`",
                data.CMD_MEASURE)
        st.stop()
    return m


def require_service(models: Path) -> PredictorService:
    """The loaded predictor, or a message with the producing command and ``st.stop()``."""
    service, why = load_service(models)
    if service is None:
        missing("No usable fitted predictor", data.CMD_PREDICTOR, why)
        st.stop()
    assert service is not None
    return service


def pick_model(service: PredictorService, key: str) -> ModelChoice:
    """A selectbox of the predictor's (model, method) pairs, labelled with origin and metric."""
    choices = service.models
    if not choices:
        st.warning("The fitted predictor lists no models in its card; refit it with:")
        st.code(data.CMD_PREDICTOR, language="bash")
        st.stop()
    idx = st.selectbox("Model", range(len(choices)), key=key,
                       format_func=lambda i: choices[i].label,
                       help="Each entry is a multilingual model, its training method and where "
                            "the predictor's training data for it came from.")
    return choices[int(idx)]


def pick_measured_table(df: pd.DataFrame, model_col: object, pool_col: object, key: str,
                        pool_help: str | None = None) -> tuple[tuple[str, str], pd.DataFrame]:
    """((model, method), its measured rows from one training pool), picked in two
    selectboxes (widget keys ``{key}_model`` / ``{key}_pool``); the default is the
    multi-k table."""
    combos, default = data.model_method_choices(df)
    mm = model_col.selectbox("Model · method", combos, index=default,  # type: ignore[attr-defined]
                             format_func=lambda t: f"{t[0]} · {t[1]}", key=f"{key}_model")
    sub = df[(df["model"] == mm[0]) & (df["method"] == mm[1])]
    pools = sub["pool"].value_counts().index.tolist()
    pool = pool_col.selectbox("Training pool", pools, key=f"{key}_pool",  # type: ignore[attr-defined]
                              help=pool_help)
    return mm, sub[sub["pool"] == pool]


def source_options() -> list[str]:
    """Codes offered as source (training) languages: the registry languages URIEL knows."""
    return list(_source_options())


@lru_cache(maxsize=1)
def _source_options() -> tuple[str, ...]:
    t = registry_table()
    return tuple(t.loc[t["in_uriel"].astype(bool), "code"])


@lru_cache(maxsize=1)
def _target_options() -> tuple[str, ...]:
    return tuple(data.language_options()["code"])


def target_options() -> list[str]:
    """Every prediction target: the registry codes, then every other lang2vec language."""
    return list(_target_options())


def lang_label(code: str) -> str:
    """'Swahili (sw)' from a cached map (fast enough for format_func over 4,000 options)."""
    return data.label_of(code)


def pick_targets(key: str, default: Sequence[str], label: str = "Target languages",
                 help_: str | None = None) -> list[str]:
    """Multiselect over every language lang2vec knows, shown by name; type to search."""
    opts = target_options()
    known = set(opts)
    default = [d for d in default if d in known]
    return list(st.multiselect(
        label, opts, default=default, key=key, format_func=data.label_formatter(),
        placeholder="Type a language name or code…",
        help=help_ or "Any of the ~4,000 languages lang2vec/URIEL knows. Registry languages "
                      "(with pretraining sizes) come first; type to search by name or code."))


def pick_sources(key: str, default: Sequence[str], label: str = "Source (training) languages",
                 options: Sequence[str] | None = None) -> list[str]:
    opts = list(options) if options is not None else source_options()
    known = set(opts)
    default = [d for d in default if d in known]
    return list(st.multiselect(label, opts, default=default, key=key,
                               format_func=data.label_formatter(),
                               placeholder="Choose source languages…"))
