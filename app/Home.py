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

from app import data, ui  # noqa: E402
from app.services import load_service  # noqa: E402
from predictor.metaanalysis.answer import answer_text  # noqa: E402
from predictor.formatting import spec_label  # noqa: E402
from predictor.metaanalysis.summary import headline_markdown  # noqa: E402

models = ui.setup("xlt: zero-shot cross-lingual transfer", ":material/translate:",
                  "If you train an NLI classifier on a multilingual model with labelled data "
                  "in k languages (by default a probe on its frozen sentence embeddings; "
                  "fine-tuning is measured too), what macro-F1 will you get on your target "
                  "language — and does adding more supervised languages help, especially "
                  "low-resource targets?")
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
        st.caption("Trained for: " + ", ".join(c.label for c in service.models) + ". "
                   + (f"{service.coverage_text}." if service.coverage_text else ""),
                   help=f"Chosen by nested cross-validation: {spec_label(str(sel))}.")
        if service.profiles:
            st.caption(f"Your language profiles are read beside the shipped ones: "
                       f"`{service.profiles}`.")
with c3:
    st.markdown("#### Report")
    if report_table is None:
        ui.missing("No meta-analysis report", data.CMD_REPORT)
    else:
        st.metric("Correlation table", f"{len(report_table)} features")
        st.caption(f"from `{report_file}`")

summary = data.read_report_summary(models / data.REPORT_SUBDIR)
if summary and summary.get("headline", {}).get("macro_f1"):
    st.markdown("### Headline: does adding supervised languages help?")
    st.markdown(headline_markdown(summary, "macro_f1"))
    answer = answer_text(summary)
    if answer:
        st.markdown(answer[0])
    st.caption("Change in zero-shot macro-F1 per doubling of the number of supervised "
               "languages k, from the meta-analysis report (`summary.json`); kappa, the "
               "designs and the caveats are on the Scaling page and in the report.")

st.markdown("### Pages")
pages = [("pages/1_Predict.py", "Predict", ":material/online_prediction:",
          "predicted score per target for a source set, with intervals and marginal gains"),
         ("pages/2_Recommend.py", "Recommend", ":material/explore:",
          "best source sets for your targets under a budget"),
         ("pages/3_Scaling.py", "Scaling", ":material/trending_up:",
          "the effect of k per target class: estimates, designs and the measured runs"),
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
