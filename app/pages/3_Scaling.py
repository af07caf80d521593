"""Scaling: macro-F1 against the number of supervised languages k -- the research question.

The estimates (slope per doubling with CIs, saturation k, member gaps, add-one gains,
Shapley values, greedy vs random) are read from the report's ``summary.json`` and shown as
they are -- the same numbers as the report, the README and the Home page. The chart draws
the measured grid (random source sets) per target class: one point per training run and
class, target-adjusted, with the median and interquartile band per k; a toggle keeps the
sets that hold (or lack) the target's best single source, because a larger random set is
more likely to hold it. Below it, the report's mean per k with its 95% interval.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.append(_ROOT)

import altair as alt  # noqa: E402
import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from app import analysis, data, ui  # noqa: E402
from measure.knowledge.coverage import CLASS_LABELS  # noqa: E402
from predictor.formatting import CLASS_COLOURS, interval  # noqa: E402
from predictor.metaanalysis.answer import answer_text  # noqa: E402
from predictor.metaanalysis.summary import headline_markdown  # noqa: E402

CLASS_SCALE = alt.Scale(domain=list(data.TARGET_CLASSES),
                        range=[CLASS_COLOURS[c] for c in data.TARGET_CLASSES])
REGIME_TITLES = {"per_language": "Per-language budget (each language brings the same n)",
                 "fixed_total": "Fixed total budget (n split over the k languages)"}
METRIC_LABELS = {"macro_f1": "macro-F1", "kappa": "Cohen's kappa ×100"}


def set_label(code_set: str) -> str:
    """'ar+hi+sw' -> 'Arabic (ar) + Hindi (hi) + Swahili (sw)': the app's one language style."""
    return " + ".join(ui.lang_label(c) for c in str(code_set).split("+"))


models = ui.setup("Scaling with the number of supervised languages", ":material/trending_up:",
                  "Does adding supervised languages help zero-shot transfer, and does it help "
                  "targets that are absent from pretraining or low-resource? The estimates "
                  "come from the meta-analysis report (`summary.json`); the chart shows the "
                  "measured runs behind them.")
m = ui.require_measurements(models)
df = m.frame
summary = data.read_report_summary(models / data.REPORT_SUBDIR)

st.subheader("The answer (meta-analysis report)")
if not summary or "headline" not in summary:
    ui.missing("No meta-analysis report (version 2) in this models directory", data.CMD_REPORT)
else:
    metric = st.radio("Score", list(METRIC_LABELS), format_func=METRIC_LABELS.get,
                      horizontal=True, key="sc_metric")
    table = headline_markdown(summary, metric)
    if table:
        st.markdown(table)
    paras = answer_text(summary)
    if paras:
        st.markdown(paras[0])
    if len(paras) > 1:
        with st.expander("The whole answer: per class, sets against their members, add-one, "
                         "Shapley, choosing well, collapse", expanded=False):
            for para in paras[1:]:
                st.markdown(para)
    st.caption("Per doubling of k; mixed model with crossed random effects (target intercepts, "
               "target × log2 k slopes, source-set intercepts) and a two-way cluster bootstrap "
               "over targets and source sets; saturation k from a piecewise fit. Regenerate "
               "with `" + summary.get("command", data.CMD_REPORT) + "`.")

st.subheader("Measured runs")
c1, c2, c3 = st.columns([2, 2, 3])
mm, sub = ui.pick_measured_table(df, c1, c2, "sc", pool_help="Where the source-language "
                                "examples came from (dataset/split).")
grid_hashes = analysis.design_cells(models / data.MEASUREMENTS_SUBDIR).get("grid")
if grid_hashes is not None and sub["cell_hash"].isin(grid_hashes).any():
    sub = sub[sub["cell_hash"].isin(grid_hashes)]
regimes = [r for r in ("per_language", "fixed_total") if r in set(sub["regime"])]
chosen_regimes = c3.multiselect("Budget regimes", regimes, default=regimes, key="sc_regimes",
                                format_func=lambda r: REGIME_TITLES.get(r, r).split(" (")[0])

order = {c: i for i, c in enumerate(data.TARGET_CLASSES)}
all_targets = sorted(sub["target_language"].unique(),
                     key=lambda c: (order.get(data.resource_groups().get(c, ""), 9), c))
c4, c5 = st.columns([5, 2])
targets = c4.multiselect("Targets", all_targets, default=all_targets, key="sc_targets",
                         format_func=ui.lang_label)
zero_shot = c5.checkbox("Zero-shot only", value=True, key="sc_zero",
                        help="Drop a target from a run when the target language itself was "
                             "supervised (that is not transfer).")
st.caption(data.low_resource_rule())

best_source = analysis.best_sources(summary, mm, sub["pool"].iloc[0] if len(sub) else None)
SET_FILTERS = {"all": "All sets", "with": "Sets holding the target's best single source",
               "without": "Sets without it"}
holds = st.radio("Source sets", list(SET_FILTERS), format_func=SET_FILTERS.get, horizontal=True,
                 key="sc_best", disabled=not best_source,
                 help="A random larger set is more likely to hold the one source language "
                      "that transfers best to a target (for every AmericasNLI target: "
                      "Swahili); compare the curves with and without it. The best source "
                      "per target comes from the report's single-source cells.")

rows = sub[sub["regime"].isin(chosen_regimes) & sub["target_language"].isin(targets)]
if zero_shot:
    rows = rows[rows["zero_shot"]]
if holds != "all" and best_source:
    has = analysis.holds_best_source(rows, best_source)
    rows = rows[has if holds == "with" else ~has]
if not chosen_regimes or not targets:
    st.warning("Choose at least one budget regime and one target language.")
    st.stop()
if rows.empty:
    st.warning("No measured runs match this selection; widen the targets or untick "
               "'Zero-shot only'.")
    st.stop()

points = analysis.cell_points(rows)
kq = analysis.k_summary(points)
ks = sorted(points["k"].unique().tolist())
ymin = max(0.0, float(points["macro_f1"].min()) - 3)
ymax = min(100.0, float(points["macro_f1"].max()) + 3)
yscale = alt.Scale(domain=[ymin, ymax], zero=False)
xscale = alt.Scale(type="log", base=2, domain=[min(ks) * 0.9, max(ks) * 1.1], nice=False)
xaxis = alt.Axis(values=ks, format="d", title="supervised languages k (log scale)")


def regime_chart(regime: str) -> alt.LayerChart:
    pts = points[points["regime"] == regime]
    summ = kq[kq["regime"] == regime]
    color = alt.Color("target_group:N", scale=CLASS_SCALE, title="targets",
                      legend=alt.Legend(orient="bottom", direction="horizontal"))
    base_pts = alt.Chart(pts).mark_circle(size=30, opacity=0.3).encode(
        x=alt.X("k:Q", scale=xscale, axis=xaxis), y=alt.Y("macro_f1:Q", scale=yscale,
                                                          title="macro-F1"),
        color=color,
        tooltip=[alt.Tooltip("sources:N", title="sources"), "k:Q", "seed:Q",
                 alt.Tooltip("target_group:N", title="class"),
                 alt.Tooltip("macro_f1:Q", format=".1f", title="mean macro-F1"),
                 alt.Tooltip("targets:Q", title="targets averaged")])
    band = alt.Chart(summ).mark_area(opacity=0.15).encode(
        x="k:Q", y="q25:Q", y2="q75:Q", color=color)
    med = alt.Chart(summ).mark_line(point=alt.OverlayMarkDef(size=60, filled=True),
                                    strokeWidth=2.5).encode(
        x="k:Q", y="median:Q", color=color,
        tooltip=["k:Q", alt.Tooltip("target_group:N", title="class"),
                 alt.Tooltip("median:Q", format=".1f"), alt.Tooltip("q25:Q", format=".1f"),
                 alt.Tooltip("q75:Q", format=".1f"), alt.Tooltip("n:Q", title="runs")])
    return alt.layer(band, base_pts, med).properties(
        title=REGIME_TITLES.get(regime, regime), height=380)


cols = st.columns(len(chosen_regimes))
for col, regime in zip(cols, chosen_regimes):
    with col:
        if (points["regime"] == regime).any():
            st.altair_chart(regime_chart(regime), width="stretch")
        else:
            st.info(f"No runs for the {regime} budget in this selection.")
st.caption("Dots: runs of the random-set grid (all seeds), target-adjusted macro-F1 per class. "
           "Line: median per k; band: interquartile range. Classes: "
           + "; ".join(f"{k} = {v}" for k, v in CLASS_LABELS.items()) + ".")

k_means = analysis.k_mean_intervals(summary, mm, sub["pool"].iloc[0] if len(sub) else None,
                                    chosen_regimes)
if not k_means.empty:
    st.markdown("**Mean per k with its 95% interval** (the report's estimate: all random "
                "sets, the mean over targets of each target's mean score; two-way bootstrap "
                "over targets and source sets)")
    kcols = st.columns(len(chosen_regimes))
    for col, regime in zip(kcols, chosen_regimes):
        km = k_means[k_means["regime"] == regime]
        if km.empty:
            continue
        color = alt.Color("target_class:N", scale=CLASS_SCALE, title="targets",
                          legend=alt.Legend(orient="bottom", direction="horizontal"))
        kx = alt.X("k:Q", scale=alt.Scale(type="log", base=2), axis=alt.Axis(
            values=sorted(km["k"].unique().tolist()), format="d",
            title="supervised languages k (log scale)"))
        bars = alt.Chart(km).mark_rule(strokeWidth=2).encode(
            x=kx, y=alt.Y("ci_low:Q", scale=alt.Scale(zero=False), title="macro-F1"),
            y2="ci_high:Q", color=color)
        line = alt.Chart(km).mark_line(point=True).encode(
            x=kx, y="mean:Q", color=color,
            tooltip=["k:Q", alt.Tooltip("target_class:N", title="class"),
                     alt.Tooltip("mean:Q", format=".1f"), alt.Tooltip("ci_low:Q", format=".1f"),
                     alt.Tooltip("ci_high:Q", format=".1f")])
        with col:
            st.altair_chart(alt.layer(bars, line).properties(
                title=REGIME_TITLES.get(regime, regime), height=300), width="stretch")

with st.expander("Median per k (table)"):
    st.dataframe(kq.round(2), hide_index=True, width="stretch")

if summary and "scaling" in summary:
    pool = sub["pool"].iloc[0] if len(sub) else None
    st.subheader("Estimates for this model and pool (from summary.json)")
    est = [e for e in summary["scaling"] if e["model"] == mm[0] and e["method"] == mm[1]
           and e["pool"] == pool and e["regime"] in chosen_regimes]
    if not est:
        st.info(f"The report has no scaling estimate for {mm[0]} · {mm[1]} on {pool}.")
    else:
        st.dataframe(pd.DataFrame([{
            "regime": e["regime"], "metric": e["metric"], "targets": e["target_class"],
            "slope per doubling (mixed)": e.get("slope"),
            "95% CI (mixed)": interval(e.get("ci_low"), e.get("ci_high")),
            "95% CI (bootstrap)": interval(e.get("boot_ci_low"), e.get("boot_ci_high")),
            "saturation k": e.get("saturation_k"),
            "segments": "; ".join(f"{g['k_from']}–{g['k_to']}: {g['gain_per_doubling']:+.2f}"
                                  for g in e.get("segments", [])),
            "targets (n)": e["n_targets"], "sets": e["n_sets"]} for e in est]),
            hide_index=True, width="stretch",
            column_config={"slope per doubling (mixed)":
                           st.column_config.NumberColumn(format="%+.2f")})
    gaps = [g for g in summary.get("member_gaps", []) if g["model"] == mm[0]
            and g["pool"] == pool and g["regime"] in chosen_regimes]
    if gaps:
        st.markdown("**Sets against their own members** (set − best single member; set − mean "
                    "single member)")
        st.dataframe(pd.DataFrame([{
            "design": g["design"], "regime": g["regime"], "metric": g["metric"],
            "targets": g["target_class"], "set − best member": g["gap_best"],
            "95% CI": interval(*g["gap_best_ci"]), "set − mean member": g["gap_mean"],
            "95% CI ": interval(*g["gap_mean_ci"]), "rows": g["n_rows"]} for g in gaps]).round(2),
            hide_index=True, width="stretch")
    adds = [a for a in summary.get("add_one", []) if a["model"] == mm[0] and a["pool"] == pool
            and a["regime"] in chosen_regimes]
    if adds:
        st.markdown("**Adding one language** (paired gain at the same budget and seed)")
        st.dataframe(pd.DataFrame([{
            "regime": a["regime"], "metric": a["metric"], "targets": a["target_class"],
            "base size": "all" if a["base_size"] is None else str(a["base_size"]),
            "mean gain": a["gain"], "95% CI": interval(*a["ci"]),
            "share > 0": a["share_positive"], "pairs": a["n_pairs"]} for a in adds]).round(2),
            hide_index=True, width="stretch")
    shap = [r for r in summary.get("shapley", []) if r["model"] == mm[0] and r["pool"] == pool]
    if shap:
        st.markdown("**Shapley values** on all subsets of 5-language sets")
        st.dataframe(pd.DataFrame([{
            "set": set_label(r["full_set"]), "regime": r["regime"], "metric": r["metric"],
            "targets": r["target_class"],
            "φ per language": ", ".join(f"{ui.lang_label(x['language'])} {x['phi']:+.2f}"
                                        for x in r["languages"]),
            "additivity": r.get("additivity"),
            "full − best single": r["full_minus_best_single"]}
            for r in shap]).round(2), hide_index=True, width="stretch")
        st.caption("φ: each language's Shapley value (its average marginal gain over all "
                   "orders in which the set can be built, from chance level). Additivity: "
                   "what the full set gains over chance divided by the sum of what each "
                   "member gains alone (1 = the members' gains add up; 0.2 = the set is "
                   "worth about one member). Full − best single: the set against its best "
                   "member alone.")
    bvr = [r for r in summary.get("best_vs_random", []) if r["model"] == mm[0]
           and r["pool"] == pool]
    if bvr:
        st.markdown("**Choosing well vs adding more**: greedy (oracle) set against random sets")
        bvr_df = pd.DataFrame(bvr)
        if "best_set" in bvr_df:
            bvr_df["best_set"] = bvr_df["best_set"].map(set_label)
        st.dataframe(bvr_df[[c for c in ["regime", "objective", "k", "best_set", "best",
                                         "random_median", "random_p10", "random_p90",
                                         "share_random_beaten"] if c in bvr_df]].round(2),
                     hide_index=True, width="stretch")
