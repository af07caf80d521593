"""xlt app entry page: what the served models directory holds, the headline result, the pages.

Run with ``xlt-app`` (``app/cli.py``), which sets ``XLT_MODELS_DIR``. The app never
trains: it reads the measured table (``models/measurements``), the fitted predictor
(``models/predictor``) and the report (``models/report``), and says which command
produces whatever is missing.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.append(_ROOT)

import streamlit as st  # noqa: E402

from app import analysis, data, ui  # noqa: E402
from app.services import load_service  # noqa: E402

models = ui.setup("xlt: zero-shot cross-lingual transfer", ":material/translate:",
                  "If you fine-tune a multilingual model on labelled NLI data in k languages, "
                  "what macro-F1 will you get on your target language — and does adding more "
                  "supervised languages help, especially low-resource targets?")
st.caption(f"Serving `{models}`")

m = data.measurements(models)
service, why = load_service(models)
report_table, report_file = data.read_correlations(models / data.REPORT_SUBDIR)

c1, c2, c3 = st.columns(3)
with c1:
    st.markdown("#### Measurements")
    if m.empty:
        ui.missing("No measured results", data.CMD_MEASURE)
    else:
        status = data.store_status(m)
        st.metric("Training cells", f"{status['cells']:,}")
        st.caption(f"{status['rows']:,} result rows · {status['targets']} target languages · "
                   f"{', '.join(sorted(m.frame['model'].unique()))}")
with c2:
    st.markdown("#### Predictor")
    if service is None:
        ui.missing("No usable fitted predictor", data.CMD_PREDICTOR, why)
    else:
        cv = service.cv_table()
        sel = service.card.get("selected_model", "?")
        row = cv[(cv.get("protocol") == "unseen_target") & (cv.get("model") == sel)] \
            if not cv.empty else cv
        mae = f"{float(row['mae'].iloc[0]):.2f}" if len(row) else "–"
        st.metric("Error on unseen languages (MAE)", mae,
                  help="Leave-one-target-language-out cross-validation, from the model card.")
        st.caption(f"Regressor {sel}, trained for: "
                   + ", ".join(c.label for c in service.models) + ". "
                   + service.coverage_text)
with c3:
    st.markdown("#### Report")
    if report_table is None:
        ui.missing("No meta-analysis report", data.CMD_REPORT)
    else:
        st.metric("Correlation table", f"{len(report_table)} features")
        st.caption(f"from `{report_file}`")

if not m.empty:
    rows = m.frame[m.frame["zero_shot"]]
    pool = rows["pool"].value_counts().index[0]
    rows = rows[rows["pool"] == pool]
    fits = analysis.fit_log2(analysis.cell_points(rows))
    f = fits[fits["regime"] == "per_language"].set_index("target_group")
    if data.LOW in f.index and data.HIGH in f.index:
        st.markdown("### Headline")
        st.markdown(
            f"With a per-language budget ({pool}), each doubling of the number of supervised "
            f"languages changes zero-shot macro-F1 by **{f.loc[data.LOW, 'b']:+.2f}** points on "
            f"low-resource targets and **{f.loc[data.HIGH, 'b']:+.2f}** on high-resource targets "
            "(least-squares fit F1 = a + b·log2 k over all measured runs; see Scaling).")

st.markdown("### Pages")
pages = [("pages/1_Predict.py", "Predict", ":material/online_prediction:",
          "predicted score per target for a source set, with intervals and marginal gains"),
         ("pages/2_Recommend.py", "Recommend", ":material/explore:",
          "best source sets for your targets under a budget"),
         ("pages/3_Scaling.py", "Scaling", ":material/trending_up:",
          "measured macro-F1 against k, low- vs high-resource, both budgets"),
         ("pages/4_Transfer_grid.py", "Transfer grid", ":material/grid_on:",
          "single-source transfer heatmap ordered by language family"),
         ("pages/5_Features.py", "Features", ":material/insights:",
          "importance, partial dependence, correlations, cross-validation"),
         ("pages/6_Measurements.py", "Measurements", ":material/table_chart:",
          "filter, sort and download the measured results")]
for path, label, icon, text in pages:
    cols = st.columns([1, 3])
    cols[0].page_link(path, label=label, icon=icon)
    cols[1].caption(text)
