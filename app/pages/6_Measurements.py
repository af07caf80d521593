"""Measurements: filter, sort and download the measured results; the store's status.

The table is the tidy export of the results store (``xlt-measure export``), one row
per (training cell, target), read from ``models/measurements/*.parquet|csv``.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.append(_ROOT)

import streamlit as st  # noqa: E402

from app import data, ui  # noqa: E402

SHOW_COLUMNS = ["target_language", "target_name", "macro_f1", "accuracy", "sources", "k",
                "total_examples", "seed", "regime", "pool", "model", "method", "target_group",
                "zero_shot", "n", "train_seconds", "cell_hash"]
SORTABLE = {"macro_f1": "macro-F1", "k": "k", "target_language": "target", "sources": "sources",
            "seed": "seed", "total_examples": "total examples", "accuracy": "accuracy"}

models = ui.setup("Measurements", ":material/table_chart:",
                  "Every measured result the app serves: one row per training run and target "
                  "language. Filter, sort and download them.")
m = ui.require_measurements(models)
df = m.frame
status = data.store_status(m)

st.subheader("Store status")
c1, c2, c3, c4 = st.columns(4)
c1.metric("Training cells", f"{status['cells']:,}")
c2.metric("Result rows", f"{status['rows']:,}")
c3.metric("Target languages", f"{status['targets']}")
c4.metric("Files", f"{len(status['files'])}", help=", ".join(status["files"]))
st.dataframe(status["by"].rename(columns={"train_hours": "train hours"}), hide_index=True,
             width="stretch")

st.subheader("Filter")
f1, f2, f3, f4 = st.columns(4)
sel_models = f1.multiselect("Model", sorted(df["model"].unique()), key="ms_model",
                            placeholder="All")
sel_pools = f2.multiselect("Training pool", sorted(df["pool"].unique()), key="ms_pool",
                           placeholder="All")
sel_regimes = f3.multiselect("Budget regime", sorted(df["regime"].unique()), key="ms_regime",
                             placeholder="All")
sel_groups = f4.multiselect("Target group", list(data.TARGET_CLASSES), key="ms_group",
                            placeholder="All")
g1, g2, g3 = st.columns([3, 2, 2])
sel_targets = g1.multiselect("Targets", sorted(df["target_language"].unique()),
                             key="ms_targets", format_func=ui.lang_label, placeholder="All")
kmin, kmax = int(df["k"].min()), int(df["k"].max())
if kmax > kmin:
    k_range = g2.slider("k (supervised languages)", kmin, kmax, (kmin, kmax), key="ms_k")
else:
    k_range = (kmin, kmax)
    g2.caption(f"All runs have k = {kmin}.")
src_query = g3.text_input("Source set contains", key="ms_src", placeholder="e.g. sw or de+en",
                          help="Languages separated by '+' or spaces; rows whose source set "
                               "contains all of them.")
h1, h2, h3 = st.columns([2, 2, 2])
zero_only = h1.checkbox("Zero-shot rows only", value=False, key="ms_zero")
sort_by = h2.selectbox("Sort by", list(SORTABLE), format_func=SORTABLE.get, key="ms_sort")
descending = h3.checkbox("Descending", value=True, key="ms_desc")

rows = df
if sel_models:
    rows = rows[rows["model"].isin(sel_models)]
if sel_pools:
    rows = rows[rows["pool"].isin(sel_pools)]
if sel_regimes:
    rows = rows[rows["regime"].isin(sel_regimes)]
if sel_groups:
    rows = rows[rows["target_group"].isin(sel_groups)]
if sel_targets:
    rows = rows[rows["target_language"].isin(sel_targets)]
rows = rows[rows["k"].between(*k_range)]
wanted = [w for w in src_query.replace("+", " ").replace(",", " ").split() if w]
if wanted:
    sets = rows["sources"].str.split("+")
    rows = rows[sets.map(lambda s: all(w in s for w in wanted))]
if zero_only:
    rows = rows[rows["zero_shot"]]
rows = rows.sort_values([sort_by, "cell_hash", "target_language"],
                        ascending=[not descending, True, True], kind="stable")

if rows.empty:
    st.warning("No measured rows match these filters; clear some of them.")
    st.stop()

st.markdown(f"**{len(rows):,} rows** from {rows['cell_hash'].nunique():,} training cells · "
            f"mean macro-F1 **{rows['macro_f1'].mean():.2f}** "
            f"(median {rows['macro_f1'].median():.2f}, min {rows['macro_f1'].min():.2f}, "
            f"max {rows['macro_f1'].max():.2f})")
cols = [c for c in SHOW_COLUMNS if c in rows.columns]
st.dataframe(rows[cols], hide_index=True, width="stretch", height=460,
             column_config={"macro_f1": st.column_config.NumberColumn("macro-F1", format="%.2f"),
                            "accuracy": st.column_config.NumberColumn(format="%.2f"),
                            "cell_hash": st.column_config.TextColumn("cell", width="small")})
export = rows.drop(columns=[c for c in ("config_key",) if c in rows.columns])
st.download_button(f"Download {len(rows):,} rows as CSV", export.to_csv(index=False),
                   file_name="xlt_measurements.csv", mime="text/csv", key="ms_download",
                   type="primary")
