"""xlt app entry page: what is shipped in models/ and where to go next."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

st.set_page_config(page_title="xlt — cross-lingual transfer", layout="wide")
models_dir = Path(os.environ.get("XLT_MODELS_DIR", "models"))

st.title("xlt: zero-shot cross-lingual transfer")
st.write("Measure, predict and explain how NLI macro-F1 on a target language changes as you "
         "fine-tune on more supervised source languages.")
if not models_dir.is_dir():
    st.error(f"Models directory {models_dir} not found: start the app with "
             "`xlt-app --models-dir DIR`.")
    st.stop()
files = sorted(p.relative_to(models_dir).as_posix() for p in models_dir.rglob("*") if p.is_file())
st.subheader("Shipped artefacts")
if files:
    st.dataframe({"file": files}, hide_index=True)
else:
    st.info("No fitted models or measured tables in the models directory yet.")
