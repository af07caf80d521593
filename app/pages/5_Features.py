"""Features: what drives the predictor -- importance, partial dependence, correlations, CV.

* What each feature family adds: the drop-one-family ablation that ``xlt-predict fit``
  writes to the model card (outer-fold MAE per protocol and dataset). ``fit`` writes no
  permutation importance; it is computed here on demand, bounded to a few seconds with a
  progress bar (a seeded sample of the measured rows, two shuffles per feature: all 21,692
  rows x 3 shuffles took 124 s with no warning), in-sample and labelled as such --
  prediction only, nothing is refitted.
* Partial dependence on k and the main URIEL distances, computed with the loaded
  model on background rows (the measured configurations of the chosen model); beside the
  one for k, the predictor's gain per doubling of k when whole source sets grow -- the
  quantity the Scaling page measures, which partial dependence is not.
* The report's correlation table (``models/report``), if present.
* The grouped cross-validation table from the card, in words (predictor.formatting).
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

from app import data, ui  # noqa: E402
from app.services import (IMPORTANCE_REPEATS, IMPORTANCE_ROWS, MAIN_FEATURES,  # noqa: E402
                          ModelChoice, PredictorService, load_service, slope_per_doubling)
from measure.knowledge.nli import XNLI_15  # noqa: E402
from measure.knowledge.train_config import TrainConfig  # noqa: E402
from predictor.formatting import (PROTOCOL_DOCS, baseline_label, dataset_label,  # noqa: E402
                                  feature_label, interval, protocol_label, signed, spec_label)

PD_DEFAULT = ["k", "dist_genetic_min", "dist_syntactic_min", "dist_geographic_min"]
MAX_BACKGROUND = 400

models = ui.setup("Features", ":material/insights:",
                  "What the predictor relies on: the feature-family ablation, permutation "
                  "importance, partial dependence on "
                  "k and the main typological distances, correlations from the report, and how "
                  "well it predicts unseen languages.")
service, why = load_service(models)
measured = data.measurements(models).frame


def background_rows(svc: PredictorService, choice: ModelChoice) -> list[dict]:
    """Measured (configuration, target) pairs of this model; else single sources × its targets."""
    sub = measured[(measured["model"] == choice.model) & (measured["method"] == choice.method)] \
        if not measured.empty else measured
    if not sub.empty:
        pairs = sub.drop_duplicates(["config_key", "target_language"])
        if len(pairs) > MAX_BACKGROUND:
            pairs = pairs.sample(MAX_BACKGROUND, random_state=0)
        rows = [{"model": choice.model, "method": choice.method,
                 "train_config": TrainConfig.read(r.train_config),
                 "target": r.target_language} for r in pairs.itertuples()]
        rows = [r for r in rows if r["train_config"]]  # an unreadable row is left out
        if rows:
            return rows
    targets = list(choice.targets) or XNLI_15
    return [{"model": choice.model, "method": choice.method,
             "train_config": {s: choice.typical_n}, "target": t}
            for s in XNLI_15 for t in targets if s != t]


@st.cache_data(show_spinner="Computing partial dependence…", max_entries=32)
def cached_pd(_svc: PredictorService, key: str, choice: ModelChoice, feature: str,
              grid: tuple[float, ...] | None) -> pd.DataFrame:
    return _svc.partial_dependence(background_rows(_svc, choice), feature,
                                   grid=None if grid is None else list(grid))


@st.cache_resource(max_entries=1)
def importance_store() -> dict:
    """Computed permutation importances by (model file, table, choice), shared by sessions.

    Why not ``st.cache_data``: the computation draws a progress bar as it goes, and a
    cached function would replay that bar on every later hit."""
    return {}


def in_sample_importance(svc: PredictorService, choice: ModelChoice, progress) -> pd.DataFrame:
    """MAE increase when one feature column is shuffled, on a sample of this model's measured
    rows (in-sample; prediction only): :meth:`PredictorService.permutation_importance`."""
    sub = measured[(measured["model"] == choice.model) & (measured["method"] == choice.method)]
    rows, scores = [], []
    for tc, target, score in zip(sub["train_config"], sub["target_language"], sub["macro_f1"]):
        config = TrainConfig.read(tc)
        if config:  # an unreadable row is left out
            rows.append({"model": choice.model, "method": choice.method,
                         "train_config": config, "target": target})
            scores.append(score)
    return svc.permutation_importance(rows, scores, progress=progress)


@st.cache_data(show_spinner="Predicting growing source sets…", max_entries=16)
def cached_k_scaling(_svc: PredictorService, key: str, choice: ModelChoice) -> pd.DataFrame:
    """:meth:`PredictorService.k_scaling` over the XNLI pool at the model's typical budget."""
    ks = sorted({k for k in (1, 2, 4, 8, choice.max_k) if 1 <= k <= min(choice.max_k, 15)})
    targets = list(choice.targets) or XNLI_15
    return _svc.k_scaling(choice, targets, XNLI_15, choice.typical_n, ks)


def k_versus_scaling(svc: PredictorService, key: str, choice: ModelChoice) -> None:
    """The partial dependence of k beside the Scaling page's gain per doubling: why they
    differ, and the predictor's own answer to the Scaling question (whole sets growing)."""
    curve = cached_k_scaling(svc, key, choice)
    slopes = slope_per_doubling(curve)
    summary = data.read_report_summary(models / data.REPORT_SUBDIR) or {}
    pool = svc.training_pool(choice)
    measured_slope = {e["target_class"]: e.get("slope") for e in summary.get("scaling", [])
                      if e.get("model") == choice.model and e.get("method") == choice.method
                      and e.get("pool") == pool and e.get("regime") == "fixed_total"
                      and e.get("metric") == choice.metric and e.get("design", "grid") == "grid"}
    st.markdown("**Why k alone moves the prediction so little.** Partial dependence changes "
                "the k column alone and keeps everything else about each row fixed: the same "
                "languages, their distances to the target, the diversity of the set, the "
                "sources' probe entropies and the total number of examples. In the predictor "
                "most of what more languages bring arrives through those features (a larger "
                "set is more likely to hold a close source whose probe does not collapse on "
                "the target), so k itself carries little. The Scaling page's figure (e.g. "
                "+1.23 macro-F1 per doubling for absent targets) is the *measured* change as "
                "whole source sets grow. The predictor's answer to that same question — "
                f"random sets of k XNLI languages sharing {choice.typical_n:,} examples, "
                "every feature recomputed, zero-shot — is:")
    rows = [{"target class": cls,
             "predicted gain per doubling of k (whole sets)": slopes.get(cls),
             "measured (report, fixed total)": measured_slope.get(cls),
             "targets": int(curve.loc[curve["target_class"] == cls, "targets"].max())}
            for cls in data.TARGET_CLASSES if cls in set(curve["target_class"])]
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config={
            c: st.column_config.NumberColumn(format="%+.2f")
            for c in ("predicted gain per doubling of k (whole sets)",
                      "measured (report, fixed total)")})
        st.caption(f"{int(curve['sets'].max())} random sets per k (k = "
                   f"{', '.join(str(k) for k in sorted(curve['k'].unique()))}); slope of the "
                   "mean prediction per target class on log2 k. Measured: the report's mixed-"
                   "model slope for this model and pool, where the report has one.")


if service is None:
    ui.missing("No usable fitted predictor, so no importance or partial dependence",
               data.CMD_PREDICTOR, why)
else:
    choice = ui.pick_model(service, "ft_model")
    # cache key: the model file and the measured table (both feed the computations)
    card_key = f"{service.card.get('model_sha256', service.path)}:{len(measured)}"

    st.subheader("What each feature family adds (ablation)")
    ab = pd.DataFrame(service.card.get("ablation", []))
    if ab.empty:
        st.info("The model card has no ablation (`xlt-predict fit --ablation`).")
    else:
        ab = ab.assign(protocol=ab["protocol"].map(protocol_label),
                       dataset=ab["dataset"].map(dataset_label))
        t = ab.pivot_table(index=["protocol", "dataset"], columns="dropped",
                           values="delta_vs_all").drop(columns=["none"], errors="ignore")
        t.insert(0, "MAE (all features)", ab[ab["dropped"] == "none"]
                 .set_index(["protocol", "dataset"])["mae"])
        st.caption("Outer-fold MAE with every feature, and its change when one family is "
                   "dropped (positive = the family helps), per protocol and dataset, each "
                   "target weighted equally; hyper-parameters fixed at the shipped choice. "
                   "From the model card (written by `xlt-predict fit`).")
        st.dataframe(t.round(3).reset_index(), hide_index=True, width="stretch")

    st.subheader("Permutation importance")
    st.info("`xlt-predict fit` writes the family ablation above, not permutation "
            "importance. You can compute it on the measured table below — in-sample, "
            "with the loaded unseen-target model, nothing is refitted.")
    sub = measured if measured.empty else measured[
        (measured["model"] == choice.model) & (measured["method"] == choice.method)]
    store = importance_store()
    imp_key = (card_key, choice)
    imp = store.get(imp_key)
    n_used = min(len(sub), IMPORTANCE_ROWS)
    if sub.empty:
        st.caption(f"No measured rows for {choice.model} · {choice.method} in "
                   f"`{models / data.MEASUREMENTS_SUBDIR}`.")
    elif imp is None and st.button(
            "Compute in-sample permutation importance", key="ft_perm",
            help=f"A random sample of {IMPORTANCE_ROWS:,} measured rows, "
                 f"{IMPORTANCE_REPEATS} shuffles per feature: a few seconds."):
        bar = st.progress(0.0, text="Shuffling features…")
        imp = in_sample_importance(service, choice, lambda i, n: bar.progress(
            i / n, text=f"Shuffling features: {i} of {n}"))
        bar.empty()
        store[imp_key] = imp
    if imp is not None:
        st.caption(f"In-sample MAE increase on a random sample of {n_used:,} of the "
                   f"{len(sub):,} measured rows of {choice.model} · {choice.method} "
                   f"({IMPORTANCE_REPEATS} shuffles per feature).")
    if imp is not None and not imp.empty:
        top = imp.head(15).copy()
        top["label"] = [feature_label(f) for f in top["feature"]]
        top["low"], top["high"] = top["importance"] - top["std"], top["importance"] + top["std"]
        y = alt.Y("label:N", sort=top["label"].tolist(), title=None,
                  axis=alt.Axis(labelLimit=300, labelOverlap=False))
        tooltip = [alt.Tooltip("label:N", title="feature"),
                   alt.Tooltip("importance:Q", format=".3f"),
                   alt.Tooltip("std:Q", format=".3f", title="SD over shuffles")]
        bar = alt.Chart(top).mark_bar(color="#1b6ca8").encode(
            x=alt.X("importance:Q", title="importance (MAE increase, points)"), y=y,
            tooltip=tooltip)
        spread = alt.Chart(top).mark_rule(color="#333").encode(x="low:Q", x2="high:Q", y=y)
        st.altair_chart((bar + spread).properties(height=26 * len(top)), width="stretch")
        st.caption("Bars: mean over the shuffles; lines: ± one SD over them.")

    st.subheader("Partial dependence")
    names = service.feature_names
    options = [f for f in MAIN_FEATURES if f in names] + \
        [f for f in names if f not in MAIN_FEATURES and "=" not in f]
    chosen = st.multiselect("Features", options, default=[f for f in PD_DEFAULT if f in names],
                            key="ft_pd", format_func=feature_label)
    st.caption("Mean prediction of the loaded model when one feature is set to each value "
               "on every background row (the measured configurations of this model, or single "
               "sources × its targets); the spread over rows is in the tooltip.")
    if not chosen:
        st.info("Choose at least one feature.")
    cols = st.columns(2)
    for i, feat in enumerate(chosen):
        grid = tuple(float(v) for v in range(1, max(choice.max_k, 2) + 1)) \
            if feat == "k" else None
        try:
            pdf = cached_pd(service, card_key, choice, feat, grid)
        except Exception as exc:  # noqa: BLE001 - one bad feature must not hide the rest
            cols[i % 2].warning(f"{feat}: {exc}")
            continue
        lo, hi = float(pdf["prediction"].min()), float(pdf["prediction"].max())
        pad = max(0.5, 0.15 * (hi - lo))
        xaxis = alt.Axis(format="d", tickMinStep=1) if feat == "k" else alt.Axis()
        line = alt.Chart(pdf).mark_line(point=True, color="#1b6ca8").encode(
            x=alt.X("value:Q", title=feature_label(feat),
                    scale=alt.Scale(zero=False), axis=xaxis),
            y=alt.Y("prediction:Q", title=f"mean predicted {choice.metric_label}",
                    scale=alt.Scale(domain=[lo - pad, hi + pad], zero=False)),
            tooltip=[alt.Tooltip("value:Q", format=".3g"),
                     alt.Tooltip("prediction:Q", format=".2f", title="mean prediction"),
                     alt.Tooltip("p10:Q", format=".1f", title="10th percentile"),
                     alt.Tooltip("p90:Q", format=".1f", title="90th percentile")])
        with cols[i % 2]:
            st.markdown(f"**{feature_label(feat)}** — changes the mean prediction "
                        f"by {hi - lo:.2f} points over its range")
            st.altair_chart(line.properties(height=220), width="stretch")
    if "k" in chosen:
        k_versus_scaling(service, card_key, choice)

st.subheader("Correlations with the measured score")
table, source = data.read_correlations(models / data.REPORT_SUBDIR)
if table is None:
    ui.missing(f"No correlation table in `{models / data.REPORT_SUBDIR}`", data.CMD_REPORT)
else:
    for col in list(table.columns):
        if table[col].map(lambda v: isinstance(v, (list, tuple))).any():
            table[col] = table[col].map(lambda v: f"[{v[0]:.2f}, {v[1]:.2f}]"
                                        if isinstance(v, (list, tuple)) and len(v) == 2
                                        and all(isinstance(x, (int, float)) for x in v) else v)
    if "feature" in table:
        table["feature"] = table["feature"].map(feature_label)
    st.caption(f"From `{source}` in the report directory (zero-shot rows; Pearson and "
               "Spearman correlation of each feature with the score).")
    config = {c: st.column_config.NumberColumn(format="%.2e") for c in table.columns
              if str(c).endswith("_p")}
    config.update({c: st.column_config.NumberColumn(format="%+.3f") for c in table.columns
                   if c in ("pearson", "spearman")})
    st.dataframe(table, hide_index=True, width="stretch", column_config=config)

if service is not None:
    st.subheader("How well the predictor generalises (grouped cross-validation)")
    cv = service.cv_table()
    if cv.empty:
        st.info("The model card has no cross-validation table.")
    else:
        cols = [c for c in ["protocol", "model", "folds", "mae", "rmse", "spearman",
                            "spearman_within_target"] if c in cv.columns]
        st.markdown("Chosen for unseen targets: "
                    f"{spec_label(service.card.get('selected_model', '?'))}.")
        st.markdown("Chosen for measured targets: "
                    f"{spec_label(str(service.card.get('seen_target_model', '?')))}.")
        st.caption(f"How: {service.card.get('selection', '')}. Protocols: " + "; ".join(
            f"{protocol_label(k)} = {v}" for k, v in PROTOCOL_DOCS.items()) + ". MAE: outer "
            "folds of nested CV, each dataset and target weighted equally; \"predictor\" is "
            "the chosen model above, the other rows are its baselines.")
        shown = cv[cols].copy()
        if "protocol" in shown:
            shown["protocol"] = shown["protocol"].map(protocol_label)
        if "model" in shown:
            shown["model"] = [baseline_label(m) if m != baseline_label(m) else "predictor"
                              for m in shown["model"]]
        st.dataframe(shown.round(3), hide_index=True, width="stretch")
        by_ds = pd.DataFrame(service.card.get("cv_by_dataset", []))
        if not by_ds.empty:
            st.markdown("**Per dataset, each target weighted equally, against the best fair "
                        "baseline** (difference with a 95% bootstrap CI over target languages; "
                        "negative = the predictor is better)")
            recs = service.card["cv_by_dataset"]
            show = pd.DataFrame({
                "protocol": [protocol_label(r["protocol"]) for r in recs],
                "dataset": [dataset_label(r["dataset"]) for r in recs],
                "targets": [r["targets"] for r in recs], "MAE": [r["mae"] for r in recs],
                "best baseline": [baseline_label(r["best_baseline"]) for r in recs],
                "baseline MAE": [r[f"mae_{r['best_baseline']}"] for r in recs],
                "difference [95% CI]": [f"{signed(r['diff'])} {interval(*r['diff_ci'])}"
                                        for r in recs],
                "change (negative = better)": [f"{-100 * r['rel_improvement']:+.0f}%"
                                               for r in recs]})
            st.dataframe(show.round(3), hide_index=True, width="stretch")
        rk = service.card.get("ranking", [])
        if rk:
            st.markdown("**Ranking source sets within a target** (unseen-target protocol): "
                        "Spearman ρ of the predictor vs the best single URIEL distance and "
                        "random orderings")
            st.dataframe(pd.DataFrame([{
                "dataset": dataset_label(r["dataset"]), "kind": r["kind"],
                "targets": r["targets"], "predictor ρ": r["spearman"]["model"],
                "best distance ρ": r["spearman"][r["best_distance"]],
                "best distance": r["best_distance"], "random ρ": r["spearman"]["random"],
                "Δρ [95% CI]": f"{signed(r['spearman_diff'], 3)} "
                               f"{interval(*r['spearman_diff_ci'], 3)}",
                "NDCG@3 predictor": r["ndcg3"]["model"],
                "NDCG@3 distance": r["ndcg3"][r["best_distance"]]} for r in rk]).round(3),
                hide_index=True, width="stretch")
        cov = pd.DataFrame([{**r, "basis": b} for b, recs in
                            service.interval_info().get("coverage", {}).items() for r in recs])
        if not cov.empty:
            st.markdown("**Interval coverage per (model, pretraining class) group**, each "
                        "target of the group held out in turn")
            cov["group"] = cov["group"].str.replace("|", " · ", regex=False)
            cov["worst target"] = cov["worst_target"].map(ui.lang_label)
            st.dataframe(cov[["basis", "group", "targets", "half_width", "coverage",
                              "worst target", "worst_target_coverage"]].round(3).rename(
                columns={"half_width": "± half-width", "worst_target_coverage":
                         "worst target's coverage"}),
                hide_index=True, width="stretch")
