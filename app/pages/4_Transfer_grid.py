"""Transfer grid: single-source transfer as a source × target heatmap, ordered by family.

Each cell is the mean measured macro-F1 (over seeds and budget regimes) of a model
trained on one source language and evaluated on one target. Rows and columns are
ordered by language family (URIEL/Glottolog genetic features, ``app.data.families``),
with a coloured family strip, so related languages sit next to each other.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.append(_ROOT)

import json  # noqa: E402

import altair as alt  # noqa: E402
import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from app import analysis, data, ui  # noqa: E402

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#17becf", "#8c6d31", "#5254a3", "#393b79", "#637939", "#843c39", "#7b4173"]

models = ui.setup("Transfer grid", ":material/grid_on:",
                  "Single-source transfer: train on one language (rows), test on another "
                  "(columns). Languages are grouped by family; the diagonal (same language) is "
                  "not zero-shot and is outlined.")
m = ui.require_measurements(models)
df = m.frame[m.frame["k"] == 1]
if df.empty:
    st.warning("The measured table has no single-source runs (k = 1). They are produced by a "
               "batch with `singles = true`, e.g. the default grid:")
    st.code(data.CMD_MEASURE, language="bash")
    st.stop()

c1, c2, c3 = st.columns([2, 2, 2])
mm, sub = ui.pick_measured_table(df, c1, c2, "tg")
relative = c3.radio("Colour", ["macro-F1", "difference to the target's column mean"],
                    key="tg_colour", horizontal=False,
                    help="The difference view removes how hard each target is, leaving which "
                         "source transfers best to it.")

grid = analysis.transfer_matrix(sub)
sources = data.family_order(sorted(grid["source"].unique()))
targets = data.family_order(sorted(grid["target"].unique()))
fam = data.families(sorted(set(sources) | set(targets))).set_index("code")
names = data.language_names()
grid["source_name"] = grid["source"].map(lambda c: f"{names.get(c, c)} ({c})")
grid["target_name"] = grid["target"].map(lambda c: f"{names.get(c, c)} ({c})")
grid["source_family"] = grid["source"].map(fam["family"])
grid["target_family"] = grid["target"].map(fam["family"])
zs = grid[grid["zero_shot"]]
col_mean = zs.groupby("target")["macro_f1"].mean()
grid["vs_column"] = grid["macro_f1"] - grid["target"].map(col_mean)
value = "macro_f1" if relative == "macro-F1" else "vs_column"

src_order = [f"{names.get(c, c)} ({c})" for c in sources]
tgt_order = [f"{names.get(c, c)} ({c})" for c in targets]
# Family colours for the axis labels (Vega's faceted layers fail in Streamlit's CSP-safe
# renderer, so families are shown by label colour and white block boundaries instead).
families = list(dict.fromkeys(fam.loc[targets + sources, "family"]))
family_color = {f: PALETTE[i % len(PALETTE)] for i, f in enumerate(families)}
label_family = {f"{names.get(c, c)} ({c})": fam.loc[c, "family"] for c in sources + targets}


def label_color_expr() -> alt.ExprRef:
    """A Vega expression colouring each axis label by its language's family."""
    expr = "'#333'"
    for f in families:
        labels = [lab for lab, fa in label_family.items() if fa == f]
        cond = " || ".join("datum.value == " + json.dumps(lab) for lab in labels)
        expr = f"({cond}) ? '{family_color[f]}' : {expr}"
    return alt.ExprRef(expr)


def boundaries(order: list[str], codes: list[str]) -> list[str]:
    """Labels that start a new family block (a white line is drawn before each)."""
    fams = [fam.loc[c, "family"] for c in codes]
    return [order[i] for i in range(1, len(order)) if fams[i] != fams[i - 1]]


labels = alt.ExprRef(label_color_expr().expr)
x = alt.X("target_name:N", sort=tgt_order, title="target language",
          axis=alt.Axis(labelAngle=-55, labelLimit=170, labelColor=labels, labelOverlap=False,
                        labelFontWeight="bold", orient="top"))
y = alt.Y("source_name:N", sort=src_order, title="source language (trained on)",
          axis=alt.Axis(labelLimit=190, labelColor=labels, labelFontWeight="bold",
                        labelOverlap=False))
if value == "macro_f1":
    color = alt.Color("macro_f1:Q", scale=alt.Scale(scheme="viridis"), title="macro-F1")
else:
    lim = float(grid["vs_column"].abs().max() or 1.0)
    color = alt.Color("vs_column:Q", scale=alt.Scale(scheme="redblue", domain=[-lim, lim]),
                      title="Δ vs column mean")
tooltip = [alt.Tooltip("source_name:N", title="source"),
           alt.Tooltip("source_family:N", title="source family"),
           alt.Tooltip("target_name:N", title="target"),
           alt.Tooltip("target_family:N", title="target family"),
           alt.Tooltip("macro_f1:Q", format=".1f", title="macro-F1"),
           alt.Tooltip("sd:Q", format=".2f", title="SD over runs"),
           alt.Tooltip("runs:Q"), alt.Tooltip("vs_column:Q", format="+.1f", title="Δ column")]
base = alt.Chart(grid)
heat = base.mark_rect().encode(x=x, y=y, color=color, tooltip=tooltip)
text = base.mark_text(fontSize=10).encode(
    x=x, y=y, text=alt.Text(f"{value}:Q", format=".0f" if value == "macro_f1" else "+.0f"),
    color=alt.value("white") if value == "macro_f1" else alt.value("black"))
rule_x = alt.Chart(pd.DataFrame({"target_name": boundaries(tgt_order, targets)})).mark_rule(
    color="white", strokeWidth=4).encode(x=alt.X("target_name:N", sort=tgt_order, bandPosition=0))
rule_y = alt.Chart(pd.DataFrame({"source_name": boundaries(src_order, sources)})).mark_rule(
    color="white", strokeWidth=4).encode(y=alt.Y("source_name:N", sort=src_order, bandPosition=0))
diag = base.transform_filter("!datum.zero_shot").mark_rect(
    fill=None, stroke="#111", strokeWidth=2.5).encode(x=x, y=y)
chart = alt.layer(heat, text, rule_x, rule_y, diag).properties(
    width=alt.Step(30), height=alt.Step(26))
st.altair_chart(chart, width="content")
st.markdown(
    "Families (label colours): " + " &nbsp; ".join(
        f"<span style='color:{family_color[f]};font-weight:600'>■ {f}</span>" for f in families),
    unsafe_allow_html=True)
st.caption("Languages are grouped by top-level family (URIEL/Glottolog genetic features) and, "
           "within a family, by branch; white lines separate families. Outlined: source = "
           "target (not zero-shot).")

with st.expander("Families and branches"):
    fam_table = (fam.loc[list(dict.fromkeys(sources + targets))].reset_index()
                 .assign(language=lambda d: d["code"].map(ui.lang_label))
                 [["language", "family", "branch"]])
    st.dataframe(fam_table, hide_index=True, width="stretch")

if not zs.empty:
    best = zs.sort_values("macro_f1", ascending=False).groupby("target").head(1)
    best = best.set_index("target").loc[[t for t in targets if t in set(best["target"])]]
    st.subheader("Best single source per target (zero-shot)")
    st.dataframe(pd.DataFrame({
        "target": [ui.lang_label(t) for t in best.index],
        "best source": [ui.lang_label(s) for s in best["source"]],
        "macro-F1": best["macro_f1"].round(1).to_numpy(),
        "same family": (best["source_family"] == best["target_family"]).to_numpy()}),
        hide_index=True, width="stretch")
with st.expander("Download the grid"):
    st.download_button("Download CSV", grid.drop(columns=["zero_shot"]).to_csv(index=False),
                       file_name=f"transfer_grid_{mm[0]}_{mm[1]}.csv", mime="text/csv",
                       key="tg_download")
