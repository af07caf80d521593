"""Predict: expected score per target for a source set, with intervals, measured values and gains.

The user picks a model (with its method and data origin), source languages with
per-language example counts, and any targets lang2vec knows. The loaded predictor
returns a point prediction, a conformal interval calibrated for the target's (model,
pretraining class) group, and its basis (the target's own measurements, or its features
when it was never measured) per target (one batched call); predictions outside the
training support are flagged with the reason. When exactly this configuration was
measured, the measured mean over distinct runs is drawn beside it, one diamond per
training pool. Below, the predicted change from adding each candidate language.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.append(_ROOT)

import altair as alt  # noqa: E402
import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from app import data, ui  # noqa: E402
from app.services import ServiceError  # noqa: E402

from measure.languages import XNLI_15  # noqa: E402
DEFAULT_TARGETS = ["sw", "ur", "aym", "nah", "quy"]

models = ui.setup("Predict", ":material/online_prediction:",
                  "Predicted zero-shot score on any target language for a set of supervised "
                  "source languages, with a conformal interval, the measured value when this "
                  "exact configuration was run, and what adding one more language would bring.")
service = ui.require_service(models)
measured_table = data.measurements(models).frame

left, right = st.columns([1, 1], gap="large")
with left:
    choice = ui.pick_model(service, "pr_model")
    sources = ui.pick_sources("pr_sources", default=["en"])
    counts: dict[str, int] = {}
    if sources:
        st.markdown("**Examples per source language**")
        cols = st.columns(min(4, len(sources)))
        for i, code in enumerate(sources):
            counts[code] = int(cols[i % len(cols)].number_input(
                ui.lang_label(code), min_value=0, max_value=10_000_000, value=choice.typical_n,
                step=500, key=f"pr_n_{choice.model}_{code}",
                help="Training examples in this language (0 = leave it out)."))
with right:
    targets = ui.pick_targets("pr_targets", default=DEFAULT_TARGETS)
    st.caption(f"Scores are the model's {choice.metric_label} (0–100). The predictor was "
               f"trained on {len(choice.targets)} measured targets for this model; other "
               "targets are placed by their URIEL distances and pretraining size.")

config = {c: n for c, n in counts.items() if n > 0}
if not sources:
    st.warning("Choose at least one source language.")
    st.stop()
if not config:
    st.warning("Every source language has 0 examples: give at least one a positive count.")
    st.stop()
if not targets:
    st.info("Choose one or more target languages to see predictions.")
    st.stop()

t0 = time.perf_counter()
try:
    pred, errors = service.predict(choice, config, targets)
except ServiceError as exc:
    st.warning(str(exc))
    st.stop()
elapsed_ms = 1000 * (time.perf_counter() - t0)
for code, why in errors.items():
    st.warning(f"No prediction for {ui.lang_label(code)}: {why}")
if pred.empty:
    st.stop()

by_pool = service.measured_by_pool(measured_table, choice, config, pred["target"].tolist())
# one "measured" per target: the pool with the most (deduplicated) runs; every pool is listed
main_pool = (by_pool.sort_values(["target", "measured_runs", "pool"], ascending=[True, False, True])
             .drop_duplicates("target"))
others = by_pool.groupby("target").apply(
    lambda g: " · ".join(f"{r.pool}: {r.measured:.1f} ({r.measured_runs} run"
                         f"{'s' if r.measured_runs != 1 else ''})" for r in g.itertuples()),
    include_groups=False).rename("per_pool") if not by_pool.empty else \
    pd.Series(dtype=str, name="per_pool")
table = pred.merge(main_pool[["target", "pool", "measured", "measured_sd", "measured_runs"]],
                   on="target", how="left").merge(others, left_on="target", right_index=True,
                                                  how="left")
table["language"] = table["target"].map(ui.lang_label)
table["pretraining"] = table["pretraining"].map(
    {"present": "in pretraining", "absent": "absent from pretraining",
     "unknown": "coverage unknown"}).fillna(table["pretraining"])
table["basis_label"] = table["basis"].map(
    {"measured-target": "from this target's measurements",
     "unseen-target": "target not measured: from its features"})
table = table.sort_values("prediction", ascending=False).reset_index(drop=True)

st.subheader(f"Predicted {choice.metric_label} for "
             + " + ".join(f"{ui.lang_label(c)} × {n:,}" for c, n in config.items()))
m1, m2, m3, m4 = st.columns(4)
m1.metric("Mean predicted", f"{table['prediction'].mean():.1f}")
worst = table.iloc[-1]
m2.metric(f"Hardest: {worst['language']}", f"{worst['prediction']:.1f}",
          help="The target with the lowest predicted score.")
half = float((table["upper"] - table["lower"]).mean() / 2)
m3.metric("Interval half-width", f"±{half:.1f}", help=service.coverage_text)
n_meas = int(table["measured"].notna().sum())
m4.metric("Measured targets", f"{n_meas} of {len(table)}",
          help="Targets for which exactly this model, method and training configuration "
               "was measured (mean over distinct runs of one training pool).")
n_oos = int(table["out_of_support"].sum())
if n_oos:
    st.warning(f"{n_oos} of {len(table)} predictions are outside the predictor's training "
               "support (wider intervals): " + "; ".join(
                   f"{r.language}: {r.reason}" for r in table[table["out_of_support"]]
                   .itertuples()))

order = table["language"].tolist()
lo = max(0.0, float(min(table["lower"].min(), table["measured"].min(skipna=True)
                        if n_meas else 100)) - 5)
hi = min(100.0, float(max(table["upper"].max(), table["measured"].max(skipna=True)
                          if n_meas else 0)) + 5)
xs = alt.Scale(domain=[lo, hi], zero=False)
y = alt.Y("language:N", sort=order, title=None, axis=alt.Axis(labelLimit=240))
base = alt.Chart(table)
interval = base.mark_rule(strokeWidth=6, opacity=0.35, color="#1b6ca8").encode(
    x=alt.X("lower:Q", scale=xs, title=f"predicted {choice.metric_label}"), x2="upper:Q", y=y,
    tooltip=["language", alt.Tooltip("prediction:Q", format=".1f"),
             alt.Tooltip("lower:Q", format=".1f"), alt.Tooltip("upper:Q", format=".1f")])
point = base.mark_point(filled=True, size=110, color="#1b6ca8").encode(
    x="prediction:Q", y=y, tooltip=["language", alt.Tooltip("prediction:Q", format=".1f"),
                                    alt.Tooltip("lower:Q", format=".1f"),
                                    alt.Tooltip("upper:Q", format=".1f")])
label = base.mark_text(dy=-13, fontSize=12, color="#1b6ca8", fontWeight="bold").encode(
    x="prediction:Q", y=y, text=alt.Text("prediction:Q", format=".1f"))
layers = [interval, point, label]
if n_meas:
    pts = by_pool.assign(language=by_pool["target"].map(ui.lang_label))
    meas = alt.Chart(pts).mark_point(
        shape="diamond", filled=False, size=320, strokeWidth=2.5).encode(
        x="measured:Q", y=y, color=alt.Color("pool:N", scale=alt.Scale(scheme="dark2"),
                                             title="measured, training pool"),
        tooltip=["language", "pool", alt.Tooltip("measured:Q", format=".1f"),
                 alt.Tooltip("measured_sd:Q", format=".2f", title="SD"),
                 alt.Tooltip("measured_runs:Q", title="distinct runs")])
    layers.append(meas)
chart = alt.layer(*layers).properties(height=max(140, 44 * len(table)))
st.altair_chart(chart, width="stretch")
legend = "● predicted, bar = " + (service.coverage_text or "prediction interval")
if n_meas:
    legend += (" · ◇ measured (mean over the distinct runs of this exact configuration, one "
               "diamond per training pool)")
st.caption(legend + f" · computed in {elapsed_ms:.0f} ms")

show = pd.DataFrame({
    "target": table["language"], "predicted": table["prediction"].round(1),
    "lower": table["lower"].round(1), "upper": table["upper"].round(1),
    "basis": table["basis_label"],
    "measured": table["measured"].round(1), "runs": table["measured_runs"],
    "pool": table["pool"],
    "measured − predicted": (table["measured"] - table["prediction"]).round(1),
    "all pools": table["per_pool"],
    "pretraining": table["pretraining"],
    "profile": table["profile"].map({True: "yes", False: "none"}),
    "outside support": table["reason"].where(table["out_of_support"], "")})
st.dataframe(show, hide_index=True, width="stretch")
cov = service.coverage_for(choice)
if not cov.empty:
    st.caption("Interval coverage per group, measured on held-out targets (unseen-target "
               "basis) or held-out configurations (measured-target basis): " + "; ".join(
                   f"{r.basis}, {r['class']}: ±{r.half_width:.1f}, coverage "
                   f"{100 * r.coverage:.0f}% over {r.targets} targets"
                   for _, r in cov.iterrows() if r.targets >= 3) + ".")

st.subheader("Marginal gain of adding one more language")
g1, g2 = st.columns([3, 1])
# zero-shot by default: the targets themselves are not offered as additions
cand_default = [c for c in XNLI_15 if c not in config and c not in targets]
with g1:
    candidates = ui.pick_sources("pr_candidates", default=cand_default,
                                 label="Candidate languages to add")
typical = int(pd.Series(list(config.values())).median())
n_new = int(g2.number_input("Examples for the added language", min_value=1,
                            max_value=10_000_000, value=typical, step=500,
                            key=f"pr_newn_{choice.model}"))
cands = [c for c in candidates if c not in config]
if not cands:
    st.info("Choose candidate languages that are not already in the source set.")
    st.stop()
try:
    gains = service.marginal_gains(choice, config, table["target"].tolist(), cands, n_new)
except Exception as exc:  # noqa: BLE001 - shown, not raised
    st.warning(f"Could not compute marginal gains: {exc}")
    st.stop()
gains["language"] = [ui.lang_label(c) + (" · a target (not zero-shot)" if c in targets
                                         else "") for c in gains["language"]]
bar = alt.Chart(gains).mark_bar().encode(
    x=alt.X("mean_gain:Q", title=f"change in mean predicted {choice.metric_label}"),
    y=alt.Y("language:N", sort=gains["language"].tolist(), title=None,
            axis=alt.Axis(labelOverlap=False, labelLimit=240)),
    color=alt.condition(alt.datum.mean_gain >= 0, alt.value("#2ca02c"), alt.value("#d62728")),
    tooltip=["language", alt.Tooltip("mean_gain:Q", format="+.2f", title="mean gain"),
             alt.Tooltip("worst_gain:Q", format="+.2f", title="worst-target gain"),
             alt.Tooltip("mean_after:Q", format=".1f", title="mean after")])
txt = alt.Chart(gains).mark_text(align="left", dx=4, fontSize=11).encode(
    x="mean_gain:Q", y=alt.Y("language:N", sort=gains["language"].tolist()),
    text=alt.Text("mean_gain:Q", format="+.2f"))
st.altair_chart(alt.layer(bar, txt).properties(height=max(120, 26 * len(gains))),
                width="stretch")
best = gains.iloc[0]
st.caption(f"Adding {best['language']} with {n_new:,} examples changes the mean over the "
           f"{len(table)} targets by {best['mean_gain']:+.2f} points (worst target "
           f"{best['worst_gain']:+.2f}).")
