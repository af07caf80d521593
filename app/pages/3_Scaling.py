"""Scaling: macro-F1 against the number of supervised languages k -- the research question.

Measured points (one per training cell and target group, every seed), their median
and interquartile band per k, and the fitted curve F1 = a + b·log2(k) per group, for
the per-language and the fixed-total budget side by side. Low-resource targets are
highlighted against high-resource ones.
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

GROUP_COLORS = alt.Scale(domain=[data.LOW, data.HIGH], range=["#d95f02", "#1b6ca8"])
REGIME_TITLES = {"per_language": "Per-language budget (each language brings the same n)",
                 "fixed_total": "Fixed total budget (n split over the k languages)"}

models = ui.setup("Scaling with the number of supervised languages", ":material/trending_up:",
                  "Does adding supervised languages help zero-shot transfer, and does it help "
                  "low-resource targets more? Each point is one training run (source set and "
                  "seed), averaged over the chosen targets of a group after adjusting for target "
                  "difficulty (each target's mean over all runs is removed and the group's "
                  "mean level added back), so targets dropping out as they become sources do "
                  "not masquerade as an effect of k.")
m = ui.require_measurements(models)
df = m.frame

c1, c2, c3 = st.columns([2, 2, 3])
mm, sub = ui.pick_measured_table(df, c1, c2, "sc", pool_help="Where the source-language "
                                "examples came from (dataset/split).")
regimes = [r for r in ("per_language", "fixed_total") if r in set(sub["regime"])]
chosen_regimes = c3.multiselect("Budget regimes", regimes, default=regimes, key="sc_regimes",
                                format_func=lambda r: REGIME_TITLES.get(r, r).split(" (")[0])

all_targets = sorted(sub["target_language"].unique(),
                     key=lambda c: (data.resource_groups().get(c, data.LOW), c))
c4, c5 = st.columns([5, 2])
targets = c4.multiselect("Targets", all_targets, default=all_targets, key="sc_targets",
                         format_func=ui.lang_label)
zero_shot = c5.checkbox("Zero-shot only", value=True, key="sc_zero",
                        help="Drop a target from a run when the target language itself was "
                             "supervised (that is not transfer).")
st.caption(data.low_resource_rule())

rows = sub[sub["regime"].isin(chosen_regimes) & sub["target_language"].isin(targets)]
if zero_shot:
    rows = rows[rows["zero_shot"]]
if not chosen_regimes or not targets:
    st.warning("Choose at least one budget regime and one target language.")
    st.stop()
if rows.empty:
    st.warning("No measured runs match this selection; widen the targets or untick "
               "'Zero-shot only'.")
    st.stop()

points = analysis.cell_points(rows)
summary = analysis.k_summary(points)
fits = analysis.fit_log2(points)
curves = analysis.fitted_curves(fits)
ks = sorted(points["k"].unique().tolist())
ymin = max(0.0, float(points["macro_f1"].min()) - 3)
ymax = min(100.0, float(points["macro_f1"].max()) + 3)
yscale = alt.Scale(domain=[ymin, ymax], zero=False)
xscale = alt.Scale(type="log", base=2, domain=[min(ks) * 0.9, max(ks) * 1.1], nice=False)
xaxis = alt.Axis(values=ks, format="d", title="supervised languages k (log scale)")


def regime_chart(regime: str) -> alt.LayerChart:
    pts = points[points["regime"] == regime]
    summ = summary[summary["regime"] == regime]
    cur = curves[curves["regime"] == regime]
    color = alt.Color("target_group:N", scale=GROUP_COLORS, title="targets",
                      legend=alt.Legend(orient="bottom", direction="horizontal"))
    base_pts = alt.Chart(pts).mark_circle(size=38, opacity=0.35).encode(
        x=alt.X("k:Q", scale=xscale, axis=xaxis), y=alt.Y("macro_f1:Q", scale=yscale,
                                                          title="macro-F1"),
        color=color,
        tooltip=[alt.Tooltip("sources:N", title="sources"), "k:Q", "seed:Q",
                 alt.Tooltip("target_group:N", title="group"),
                 alt.Tooltip("macro_f1:Q", format=".1f", title="mean macro-F1"),
                 alt.Tooltip("targets:Q", title="targets averaged")])
    band = alt.Chart(summ).mark_area(opacity=0.15).encode(
        x="k:Q", y="q25:Q", y2="q75:Q", color=color)
    med = alt.Chart(summ).mark_line(point=alt.OverlayMarkDef(size=60, filled=True),
                                    strokeWidth=2.5).encode(
        x="k:Q", y="median:Q", color=color,
        tooltip=["k:Q", alt.Tooltip("target_group:N", title="group"),
                 alt.Tooltip("median:Q", format=".1f"), alt.Tooltip("q25:Q", format=".1f"),
                 alt.Tooltip("q75:Q", format=".1f"), alt.Tooltip("n:Q", title="runs")])
    fit = alt.Chart(cur).mark_line(strokeDash=[6, 4], strokeWidth=2).encode(
        x="k:Q", y="fit:Q", color=color)
    return alt.layer(band, base_pts, med, fit).properties(
        title=REGIME_TITLES.get(regime, regime), height=380)


cols = st.columns(len(chosen_regimes))
for col, regime in zip(cols, chosen_regimes):
    with col:
        if (points["regime"] == regime).any():
            st.altair_chart(regime_chart(regime), width="stretch")
        else:
            st.info(f"No runs for the {regime} budget in this selection.")
st.caption("Dots: runs (all seeds), target-adjusted macro-F1. Solid line: median per k; "
           "band: interquartile range. Dashed: least-squares fit F1 = a + b·log2 k.")

st.subheader("Fitted gain per doubling of k")
if fits.empty:
    st.info("Not enough distinct k values in this selection to fit a curve (need at least two).")
else:
    for regime in chosen_regimes:
        f = fits[fits["regime"] == regime].set_index("target_group")
        if data.LOW in f.index and data.HIGH in f.index:
            lo, hi = f.loc[data.LOW, "b"], f.loc[data.HIGH, "b"]
            verdict = "more" if lo > hi else "less"
            st.markdown(
                f"**{REGIME_TITLES.get(regime, regime).split(' (')[0]}:** each doubling of k "
                f"changes macro-F1 by **{lo:+.2f}** points for low-resource targets and "
                f"**{hi:+.2f}** for high-resource ones — low-resource targets gain "
                f"{verdict} ({lo - hi:+.2f}).")
    table = fits.assign(regime=fits["regime"].map(lambda r: REGIME_TITLES.get(r, r).split(" (")[0]))
    table["b 95% CI"] = [f"[{lo:+.2f}, {hi:+.2f}]" for lo, hi in zip(fits["b_lo"], fits["b_hi"])]
    st.dataframe(
        table[["regime", "target_group", "a", "b", "b 95% CI", "r2", "points", "k_min", "k_max"]]
        .rename(columns={"target_group": "targets", "a": "F1 at k=1 (a)",
                         "b": "gain per doubling (b)", "r2": "R²", "points": "runs"}),
        hide_index=True, width="stretch",
        column_config={"F1 at k=1 (a)": st.column_config.NumberColumn(format="%.2f"),
                       "gain per doubling (b)": st.column_config.NumberColumn(format="%+.2f"),
                       "R²": st.column_config.NumberColumn(format="%.3f")})

with st.expander("Median per k (table)"):
    st.dataframe(summary.round(2), hide_index=True, width="stretch")

summary = data.read_report_summary(models / data.REPORT_SUBDIR)
effects = pd.DataFrame(summary.get("effects", [])) if summary else pd.DataFrame()
if not effects.empty and "model" in effects.columns:
    eff = effects[effects["model"] == mm[0]]
    with st.expander("Grouped estimate from the meta-analysis report", expanded=False):
        if eff.empty:
            st.info(f"The report has no estimate for {mm[0]}.")
        else:
            st.caption("Mixed model with a random intercept per target language and a cluster "
                       "bootstrap over targets (`xlt-predict report`); it pools every training "
                       "pool of the model, so it can differ from the per-pool fit above.")
            cols = [c for c in ["regime", "group", "slope_per_doubling", "ci_low", "ci_high",
                                "boot_ci_low", "boot_ci_high", "p_value", "n_targets",
                                "n_configs", "k_range", "diminishing_after_k"] if c in eff]
            st.dataframe(eff[cols].round(3), hide_index=True, width="stretch")
