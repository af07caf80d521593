"""Recommend: the best source-language sets for chosen targets under a budget.

Budget in languages (k languages, n examples each) or in examples (a total split
evenly over k languages, every k up to a bound compared). Sets are ranked by the
predicted mean over the targets or by the worst target; the runner-ups are listed
and the "why" table compares what the model sees for each set (distances to the
targets, diversity, script, sizes), with per-feature contributions when the fitted
model is linear.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.append(_ROOT)

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from app import ui  # noqa: E402
from app.services import MAIN_FEATURES, ServiceError  # noqa: E402
from measure.knowledge.nli import XNLI_15  # noqa: E402
from predictor.formatting import feature_label, signed  # noqa: E402

MAX_ROWS = 250_000  # (source sets x targets) predicted per request; keeps a click interactive
BASIS_WORDS = {"measured-target": "from its own measurements",
               "unseen-target": "not measured: predicted from its features"}

models = ui.setup("Recommend source languages", ":material/explore:",
                  "Which languages should you label data in? Give the target languages and a "
                  "budget; the predictor scores every candidate source set and ranks them.")
service = ui.require_service(models)

left, right = st.columns([1, 1], gap="large")
with left:
    choice = ui.pick_model(service, "rc_model")
    targets = ui.pick_targets("rc_targets", default=["sw", "aym", "nah"])
    pool = ui.pick_sources("rc_pool", default=XNLI_15, label="Candidate source languages (pool)")
with right:
    budget = st.radio("Budget", ["languages", "examples"], horizontal=True, key="rc_budget",
                      format_func=lambda b: {"languages": "k languages × n examples each",
                                             "examples": "total examples (split evenly)"}[b])
    usable = [p for p in pool if p not in targets]
    include_targets = st.checkbox("Allow supervising a target language itself", value=False,
                                  key="rc_incl",
                                  help="Off: zero-shot only, targets are removed from the pool.")
    if include_targets:
        usable = list(pool)
    k_cap = max(1, min(len(usable), 8))
    if budget == "languages":
        k = int(st.number_input("k languages", min_value=1, max_value=k_cap, value=min(2, k_cap),
                                key="rc_k"))
        n_per = int(st.number_input("Examples per language", min_value=1, max_value=10_000_000,
                                    value=choice.typical_n, step=500,
                                    key=f"rc_n_{choice.model}"))
        total = None
    else:
        total = int(st.number_input("Total examples", min_value=1, max_value=100_000_000,
                                    value=2 * choice.typical_n, step=500,
                                    key=f"rc_total_{choice.model}"))
        k = None
        n_per = None
        k_max = int(st.number_input("Compare k up to", min_value=1, max_value=k_cap,
                                    value=min(4, k_cap), key="rc_kmax"))
    objective = st.radio("Rank by", ["mean", "worst"], horizontal=True, key="rc_obj",
                         format_func=lambda o: {"mean": "mean over targets",
                                                "worst": "worst target"}[o])
    top = int(st.slider("Sets to list", 3, 15, 5, key="rc_top"))

if not targets:
    st.info("Choose one or more target languages.")
    st.stop()
if not usable:
    st.warning("The pool has no language left once the targets are removed: add candidate "
               "source languages or allow supervising a target.")
    st.stop()
ks = [k] if k is not None else list(range(1, k_max + 1))
n_rows = sum(math.comb(len(usable), kk) for kk in ks if kk <= len(usable)) * len(targets)
if n_rows > MAX_ROWS:
    st.warning(f"That is {n_rows:,} predictions (every source set × target); shrink the pool, "
               f"lower k or choose fewer targets (limit {MAX_ROWS:,}).")
    st.stop()

try:
    with st.spinner("Scoring source sets…"):
        rec = service.cached_recommend(choice, targets, pool, k=k, total_examples=total,
                                       n_per_language=n_per, objective=objective,
                                       include_targets=include_targets, top=top,
                                       k_max=k_max if k is None else 4)
except ServiceError as exc:
    st.warning(str(exc))
    st.stop()
if rec.empty:
    st.warning("No source set fits this budget.")
    st.stop()

rec["set"] = rec["sources"].map(lambda s: " + ".join(ui.lang_label(c) for c in s))
best = rec.iloc[0]
obj_name = "mean" if objective == "mean" else "worst-target"
st.success(f"**Best:** {best['set']} ({int(best['n_per_language']):,} examples each) — predicted "
           f"{choice.metric_label} {best['mean']:.1f} on average, {best['worst']:.1f} on the "
           f"hardest target.")
if len(rec) > 1:
    second = rec.iloc[1]
    st.caption(f"Runner-up: {second['set']} — {obj_name} {second['objective']:.1f} "
               f"({signed(second['objective'] - best['objective'])}).")
    tied = int(rec["within_noise_of_best"].sum()) if "within_noise_of_best" in rec else 0
    margin = float(rec["noise_margin"].max()) if "noise_margin" in rec else 0.0
    if tied > 1:
        st.warning(f"The top {tied} sets are within the predictor's ranking noise of the best "
                   f"({margin:.2f} points: 1.645·√2 × the within-target residual SD on "
                   "held-out targets): their order is not reliable — treat them as equally good, or "
                   "measure them.")

shown_targets = [t for t in targets if t in rec.columns]
support = service.set_support(choice, rec, shown_targets)
level = 100 * (1 - float(service.interval_info().get("alpha", 0.1)))
basis = support.drop_duplicates("target")
st.caption("Basis: " + "; ".join(
    f"{ui.lang_label(r.target)} {BASIS_WORDS.get(r.basis, r.basis)}"
    for r in basis.itertuples()) + f". Bars: {level:.0f}% intervals.")
flagged = support[support["out_of_support"]]
if not flagged.empty:
    reasons = flagged.groupby("reason", sort=False)["target"].apply(
        lambda ts: ", ".join(dict.fromkeys(ui.lang_label(t) for t in ts)))
    st.warning("Outside the predictor's training support (wider intervals): " + "; ".join(
        f"{who}: {why}" for why, who in reasons.items()))

per_target = []
for _, r in rec.iterrows():
    for t in targets:
        if t in rec.columns:
            per_target.append({"rank": int(r["rank"]), "set": r["set"], "target": ui.lang_label(t),
                               "prediction": r[t], "lower": r[f"{t}_lower"],
                               "upper": r[f"{t}_upper"]})
pt = pd.DataFrame(per_target)
if not pt.empty:
    # a plain Vega-Lite spec: no Altair schema validation on every rerun
    yy = {"field": "target", "type": "nominal", "title": None, "axis": {"labelLimit": 240}}
    ranked = {"yOffset": {"field": "rank", "type": "ordinal"},
              "color": {"field": "rank", "type": "ordinal", "title": "rank",
                        "scale": {"scheme": "viridis", "reverse": False}}}
    st.vega_lite_chart(pt, {
        "height": max(160, 34 * len(targets) + 6 * len(rec) * len(targets)),
        "layer": [
            {"mark": {"type": "rule", "opacity": 0.4, "strokeWidth": 2},
             "encoding": {"x": {"field": "lower", "type": "quantitative"},
                          "x2": {"field": "upper"}, "y": yy, **ranked}},
            {"mark": {"type": "point", "filled": True, "size": 110, "opacity": 0.9},
             "encoding": {"x": {"field": "prediction", "type": "quantitative",
                                "scale": {"zero": False},
                                "title": f"predicted {choice.metric_label}"},
                          "y": yy, **ranked,
                          "tooltip": [{"field": "set", "type": "nominal"},
                                      {"field": "target", "type": "nominal"},
                                      *({"field": f, "type": "quantitative", "format": ".1f"}
                                        for f in ("prediction", "lower", "upper"))]}}]},
        width="stretch")

show = pd.DataFrame({"rank": rec["rank"], "source set": rec["set"], "k": rec["k"],
                     "n / language": rec["n_per_language"], "mean": rec["mean"].round(2),
                     "worst": rec["worst"].round(2)})
for t in shown_targets:
    show[ui.lang_label(t)] = rec[t].round(1)
out_of = flagged.groupby("rank")["target"].apply(lambda ts: ", ".join(ui.lang_label(t)
                                                                         for t in ts))
show["outside support"] = [out_of.get(r, "") for r in rec["rank"]]
st.dataframe(show, hide_index=True, width="stretch")

st.subheader("Why these sets")
sets = [{c: int(r["n_per_language"]) for c in r["sources"]} for _, r in rec.iterrows()]
try:
    why = service.cached_explain_sets(choice, sets, targets)
except Exception as exc:  # noqa: BLE001 - explanation is optional, never fatal
    why = None
    st.info(f"No explanation available: {exc}")
if why is not None:
    main = [f for f in MAIN_FEATURES if f in why.columns]
    varying = [f for f in main if why[f].nunique() > 1]
    constant = [f for f in main if f not in varying]
    contrib_cols = [c for c in why.columns if c.startswith("contrib:")]
    st.caption("What the model sees for each set (columns: the sets by rank, as in the table "
               "above), averaged over the targets; distances are URIEL distances in [0, 1] "
               "from the target to the nearest source (smaller = closer).")
    # one row per input, one narrow column per set: a column per input was cut off at the
    # page's edge (six long names side by side)
    table = pd.DataFrame({"input": [MAIN_FEATURES[f] for f in varying],
                          **{f"#{int(r)}": why.loc[i, varying].to_numpy(float).round(3)
                             for i, r in enumerate(rec["rank"])}})
    if varying:
        st.dataframe(table, hide_index=True, width="stretch", column_config={
            "input": st.column_config.TextColumn(width="large")})
    if constant:
        st.caption("The same for every listed set: " + "; ".join(
            f"{MAIN_FEATURES[f]} = {why.loc[0, f]:.3g}" for f in constant) + ".")
    if contrib_cols and len(rec) > 1:
        diff = (why.loc[0, contrib_cols] - why.loc[1, contrib_cols]).sort_values(
            key=lambda s: -s.abs())
        top_diff = diff.head(5)
        st.markdown("**Largest contributions to the gap between the best set and the "
                    "runner-up** (linear first stage per feature, plus the within-target "
                    "stage where the model has one; points):")
        names = [c.removeprefix("contrib:") for c in top_diff.index]
        st.dataframe(pd.DataFrame({"feature": [feature_label(n) for n in names],
                                   "points": top_diff.to_numpy().round(3),
                                   "meaning": [service.describe(n) for n in names]}),
                     hide_index=True, width="stretch", column_config={
                         "feature": st.column_config.TextColumn(width="medium"),
                         "meaning": st.column_config.TextColumn(width="large")})
    elif len(rec) > 1:
        d = why.loc[0, main] - why.loc[1, main]
        notes = []
        for f in varying[:6]:
            if abs(d[f]) > 1e-9:
                notes.append(f"{MAIN_FEATURES[f]}: {why.loc[0, f]:.3g} vs {why.loc[1, f]:.3g}")
        if notes:
            st.caption("Best vs runner-up — " + "; ".join(notes) + ".")
