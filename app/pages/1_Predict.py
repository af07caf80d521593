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

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from app import data, ui  # noqa: E402
from app.services import ModelChoice, PredictorService, ServiceError  # noqa: E402
from measure.knowledge.nli import XNLI_15  # noqa: E402
from predictor.formatting import MISSING, signed  # noqa: E402
from predictor.serving.predictor import PAIRS_SKEWED_NOTE  # noqa: E402

DEFAULT_TARGETS = ["sw", "ur", "aym", "nah", "quy"]

models = ui.setup("Predict", ":material/online_prediction:",
                  "Predicted zero-shot score on any target language for a set of supervised "
                  "source languages, with a conformal interval, the measured value when this "
                  "exact configuration was run, and what adding one more language would bring.")
service = ui.require_service(models)
measured = data.measurements(models)

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


@st.cache_data(show_spinner=False, max_entries=256)
def prediction_table(_service: PredictorService, _measured: pd.DataFrame, key: tuple,
                     choice: ModelChoice, config_items: tuple[tuple[str, int], ...],
                     targets: tuple[str, ...]) -> tuple[pd.DataFrame, pd.DataFrame,
                                                         dict[str, str]]:
    """(table, measured per pool, {target: why no prediction}) for one request, built once:
    a rerun that changes nothing here (or comes back to it) reuses it. ``key`` names the
    fitted predictor and the measured files (the unhashed ``_service``/``_measured``)."""
    config = dict(config_items)
    pred, errors = _service.predict(choice, config, list(targets))
    if pred.empty:
        return pred, pd.DataFrame(), errors
    by_pool = _service.measured_by_pool(_measured, choice, config, pred["target"].tolist())
    # one "measured" per target: the pool the predictor was fitted on when this
    # configuration was measured there (the prediction is for that pool), else the pool
    # with the most (deduplicated) runs; all are listed
    fitted = _service.training_pool(choice)
    main_pool = (by_pool.assign(_other=by_pool["pool"] != fitted)
                 .sort_values(["target", "_other", "measured_runs", "pool"],
                              ascending=[True, True, False, True])
                 .drop_duplicates("target"))
    others = by_pool.groupby("target").apply(
        lambda g: " · ".join(f"{r.pool}: {r.measured:.1f} ({r.measured_runs} run"
                             f"{'s' if r.measured_runs != 1 else ''})" for r in g.itertuples()),
        include_groups=False).rename("per_pool") if not by_pool.empty else \
        pd.Series(dtype=str, name="per_pool")
    table = pred.merge(main_pool[["target", "pool", "measured", "measured_sd", "measured_runs"]],
                       on="target", how="left").merge(others, left_on="target",
                                                      right_index=True, how="left")
    table["language"] = table["target"].map(ui.lang_label)
    table["pretraining"] = table["pretraining"].map(
        {"present": "in pretraining", "absent": "absent from pretraining",
         "unknown": "coverage unknown"}).fillna(table["pretraining"])
    table["basis_label"] = table["basis"].map(
        {"measured-target": "from this target's measurements",
         "unseen-target": "target not measured: from its features"})
    table = table.sort_values("prediction", ascending=False).reset_index(drop=True)
    return table, by_pool, errors


t0 = time.perf_counter()
try:
    table, by_pool, errors = prediction_table(
        service, measured.frame, (service.cache_key, measured.stamp), choice,
        tuple(sorted(config.items())), tuple(dict.fromkeys(targets)))
except ServiceError as exc:
    st.warning(str(exc))
    st.stop()
elapsed_ms = 1000 * (time.perf_counter() - t0)
for code, why in errors.items():
    st.warning(f"No prediction for {ui.lang_label(code)}: {why}")
if table.empty:
    st.stop()

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
skewed = table[table["pairs_skewed"].fillna(False).astype(bool)]
if len(skewed):
    st.warning(f"{', '.join(skewed['language'])}: {PAIRS_SKEWED_NOTE}.")

lo = max(0.0, float(min(table["lower"].min(), table["measured"].min(skipna=True)
                        if n_meas else 100)) - 5)
hi = min(100.0, float(max(table["upper"].max(), table["measured"].max(skipna=True)
                          if n_meas else 0)) + 5)
# Plain Vega-Lite (st.vega_lite_chart), not Altair: Altair validates every encoding against
# the Vega-Lite JSON schema on each rerun (~0.1-0.2 s a page). Only the columns drawn are
# sent, and the spec holds nothing that depends on the predictions (the order is the rows'
# order, the x range an invisible rule), so when the sources change the browser swaps the
# data of the chart it has instead of building a new one.
y = {"field": "language", "type": "nominal", "sort": None, "title": None,
     "axis": {"labelLimit": 240}}
pred_tips = [{"field": "language", "type": "nominal"},
             {"field": "prediction", "type": "quantitative", "format": ".1f"},
             {"field": "lower", "type": "quantitative", "format": ".1f"},
             {"field": "upper", "type": "quantitative", "format": ".1f"}]
meas_cols = ["language", "pool", "measured", "measured_sd", "measured_runs"]
pts = by_pool.assign(language=by_pool["target"].map(ui.lang_label))[meas_cols] if n_meas \
    else pd.DataFrame({c: pd.Series(dtype=float if c.startswith("measured") else str)
                       for c in meas_cols})
spec = {
    "datasets": {"pred": table[["language", "prediction", "lower", "upper"]]  # sorted
                 .assign(x_lo=lo, x_hi=hi), "meas": pts},
    "data": {"name": "pred"}, "height": max(140, 44 * len(table)),
    "layer": [
        {"mark": {"type": "rule", "opacity": 0},  # the x range: [lo, hi] on every row
         "encoding": {"x": {"field": "x_lo", "type": "quantitative",
                            "scale": {"zero": False},
                            "title": f"predicted {choice.metric_label}"},
                      "x2": {"field": "x_hi"}, "y": y}},
        {"mark": {"type": "rule", "strokeWidth": 6, "opacity": 0.35, "color": "#1b6ca8"},
         "encoding": {"x": {"field": "lower", "type": "quantitative"},
                      "x2": {"field": "upper"}, "y": y, "tooltip": pred_tips}},
        {"mark": {"type": "point", "filled": True, "size": 110, "color": "#1b6ca8"},
         "encoding": {"x": {"field": "prediction", "type": "quantitative"}, "y": y,
                      "tooltip": pred_tips}},
        {"mark": {"type": "text", "dy": -13, "fontSize": 12, "color": "#1b6ca8",
                  "fontWeight": "bold"},
         "encoding": {"x": {"field": "prediction", "type": "quantitative"}, "y": y,
                      "text": {"field": "prediction", "type": "quantitative", "format": ".1f"}}},
        {"data": {"name": "meas"},
         "mark": {"type": "point", "shape": "diamond", "filled": False, "size": 320,
                  "strokeWidth": 2.5},
         "encoding": {"x": {"field": "measured", "type": "quantitative"}, "y": y,
                      "color": {"field": "pool", "type": "nominal", "scale": {"scheme": "dark2"},
                                "title": "measured, training pool"},
                      "tooltip": [{"field": "language", "type": "nominal"},
                                  {"field": "pool", "type": "nominal"},
                                  {"field": "measured", "type": "quantitative", "format": ".1f"},
                                  {"field": "measured_sd", "type": "quantitative",
                                   "format": ".2f", "title": "SD"},
                                  {"field": "measured_runs", "type": "quantitative",
                                   "title": "distinct runs"}]}}]}
st.vega_lite_chart(spec, width="stretch")
legend = "● predicted, bar = " + (service.coverage_text or "prediction interval")
if n_meas:
    legend += (" · ◇ measured (mean over the distinct runs of this exact configuration, one "
               "diamond per training pool)")
fitted_pool = service.training_pool(choice)
if fitted_pool:
    legend += f" · predictions are for the training pool the predictor was fitted on: {fitted_pool}"
st.caption(legend + f" · computed in {elapsed_ms:.0f} ms")

def shown(values: pd.Series, fmt: str = "{:.1f}") -> list[str]:
    """Numbers as text, a dash where a target was not measured (an empty cell reads as a
    literal 'None' in the table)."""
    return [MISSING if pd.isna(v) else fmt.format(v) for v in values]


show = pd.DataFrame({
    "target": table["language"], "predicted": table["prediction"].round(1),
    "lower": table["lower"].round(1), "upper": table["upper"].round(1),
    "basis": table["basis_label"],
    "measured": shown(table["measured"]), "runs": shown(table["measured_runs"], "{:.0f}"),
    "pool": table["pool"].fillna(MISSING),
    "measured − predicted": shown(table["measured"] - table["prediction"], "{:+.1f}"),
    "all pools": table["per_pool"].fillna(MISSING),
    "pretraining": table["pretraining"],
    "profile": table["profile"].map({True: "yes", False: "none"}),
    "outside support": table["reason"].where(table["out_of_support"], "").fillna("")})
st.dataframe(show, hide_index=True, width="stretch")
cov = service.coverage_for(choice)
if not cov.empty:
    st.caption("Interval coverage per group, measured on held-out targets (unseen-target "
               "basis) or held-out configurations (measured-target basis): " + "; ".join(
                   f"{r.basis}, {r['class']}: ±{r.half_width:.1f}, coverage "
                   f"{100 * r.coverage:.0f}% over {r.targets} targets"
                   for _, r in cov.iterrows() if r.targets >= 3) + ".")


@st.fragment
def marginal_gains(service: PredictorService, choice: ModelChoice, config: dict[str, int],
                   targets: list[str], predicted: list[str]) -> None:
    """The marginal-gain section: a fragment, so its own widgets (the candidates, the added
    language's size) rerun only this section, not the predictions above."""
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
        return
    try:
        gains = service.cached_marginal_gains(choice, config, predicted, cands, n_new)
    except Exception as exc:  # noqa: BLE001 - shown, not raised
        st.warning(f"Could not compute marginal gains: {exc}")
        return
    gains["language"] = [ui.lang_label(c) + (" · a target (not zero-shot)" if c in targets
                                             else "") for c in gains["language"]]
    # sorted by the bar's length in the spec, not by a list of names: a spec that does not
    # change lets the browser update the drawn chart's data in place
    y = {"field": "language", "type": "nominal", "sort": "-x", "title": None}
    x = {"field": "mean_gain", "type": "quantitative"}
    st.vega_lite_chart(
        gains[["language", "mean_gain", "worst_gain", "mean_after"]],
        {"height": max(120, 26 * len(gains)), "layer": [
            {"mark": {"type": "bar"},
             "encoding": {
                 "x": {**x, "title": f"change in mean predicted {choice.metric_label}"},
                 "y": {**y, "axis": {"labelOverlap": False, "labelLimit": 240}},
                 "color": {"condition": {"test": "datum.mean_gain >= 0", "value": "#2ca02c"},
                           "value": "#d62728"},
                 "tooltip": [{"field": "language", "type": "nominal"},
                             {**x, "format": "+.2f", "title": "mean gain"},
                             {"field": "worst_gain", "type": "quantitative", "format": "+.2f",
                              "title": "worst-target gain"},
                             {"field": "mean_after", "type": "quantitative", "format": ".1f",
                              "title": "mean after"}]}},
            {"mark": {"type": "text", "align": "left", "dx": 4, "fontSize": 11},
             "encoding": {"x": x, "y": y, "text": {**x, "format": "+.2f"}}}]},
        width="stretch")
    best = gains.iloc[0]
    st.caption(f"Adding {best['language']} with {n_new:,} examples changes the mean over the "
               f"{len(predicted)} targets by {signed(best['mean_gain'])} points (worst target "
               f"{signed(best['worst_gain'])}).")


marginal_gains(service, choice, config, targets, table["target"].tolist())
