"""The app's only door to the fitted predictor (``predictor.serving``).

Why an adapter: the pages ask questions in their own terms (predict these targets for
this source set, marginal gain of each candidate, best sets under a budget, feature
effects); this module turns them into ``Predictor`` calls, so a change in the
predictor's API touches one file. Everything here uses the *loaded* model: nothing is
fitted, and partial dependence is computed by predicting on modified feature rows.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from app.data import PREDICTOR_SUBDIR, config_key
from measure.knowledge.coverage import resource_class
from measure.knowledge.train_config import TrainConfig
from measure.store import repeated_scores
from predictor.formatting import FEATURE_LABELS
from predictor.serving import FeatureModel, Predictor, default_profiles_dir, load_predictor

# The inputs a person can reason about (the Recommend "why" table, the Features page's
# partial dependence choices), in words from predictor.formatting (one mapping for the app
# and the CLI).
MAIN_FEATURES = {f: FEATURE_LABELS[f] for f in (
    "dist_genetic_min", "dist_syntactic_min", "dist_geographic_min", "dist_featural_min",
    "dist_phonological_min", "dist_inventory_min", "diversity_genetic", "diversity_syntactic",
    "script_shared", "k", "log_total_examples", "log_target_examples", "target_log_pretrain")}

#: permutation importance on the Features page: rows sampled and shuffles per feature,
#: bounded so one click costs seconds (all 21,692 measured rows x 3 shuffles took 124 s)
IMPORTANCE_ROWS = 1000
IMPORTANCE_REPEATS = 2

ORIGIN_LABELS = {"own": "own measurements", "sumeval2022": "SumEval 2022 (published)"}
# the unseen-target model's within-target stage (trees): one column beside the linear
# first stage's per-feature contributions, so the parts still add up
WITHIN_STAGE_COLUMN = "within-target stage"
WITHIN_STAGE_COLUMN_DOC = ("trees fitted on the first stage's residuals centred per "
                           "training target: how this source set ranks within a target, "
                           "learnt from the other targets (all features together)")
METRIC_LABELS = {"macro_f1": "macro-F1", "accuracy": "accuracy"}


PRED_COLUMNS = ["prediction", "lower", "upper", "basis", "out_of_support", "reason",
                "pretraining", "profile", "pairs_skewed"]


class ServiceError(ValueError):
    """A request the predictor cannot answer; the message is shown to the user as is."""


@dataclass(frozen=True)
class ModelChoice:
    """One (model, method) the predictor was trained on, as the pages show it."""

    model: str
    method: str
    origin: str
    metric: str
    typical_n: int
    max_k: int
    targets: tuple[str, ...]

    @property
    def label(self) -> str:
        origin = ORIGIN_LABELS.get(self.origin, self.origin)
        return f"{self.model} · {self.method} · {origin} ({self.metric_label})"

    @property
    def metric_label(self) -> str:
        return METRIC_LABELS.get(self.metric, self.metric)


class PredictorService:
    """Page-level questions answered with one loaded ``predictor.serving.Predictor``."""

    def __init__(self, predictor: Predictor, path: Path) -> None:
        self.predictor = predictor
        self.path = path
        self.card: dict[str, Any] = dict(predictor.card)
        #: the user's profiles directory read beside the shipped profiles (None: none)
        self.profiles: str | None = None
        #: names this fitted model in ``st.cache_data`` keys (a refit changes the checksums)
        self.cache_key = (f"{path}:{self.card.get('card_sha256', '')}:"
                          f"{self.card.get('model_sha256', '')}")

    # -- cached answers (Streamlit reruns a page on every click; an answer already computed
    # for these inputs, in any session, is reused instead of predicted again) -------------
    def cached_marginal_gains(self, choice: ModelChoice, config: dict[str, int],
                              targets: Sequence[str], candidates: Sequence[str],
                              n_new: int) -> pd.DataFrame:
        """:meth:`marginal_gains`, memoised."""
        return _cached_gains(self, self.cache_key, choice, tuple(sorted(config.items())),
                             tuple(targets), tuple(candidates), int(n_new))

    def cached_recommend(self, choice: ModelChoice, targets: Sequence[str],
                         pool: Sequence[str], **kw: Any) -> pd.DataFrame:
        """:meth:`recommend`, memoised (keyword arguments as :meth:`recommend` takes them)."""
        return _cached_recommend(self, self.cache_key, choice, tuple(targets), tuple(pool),
                                 tuple(sorted(kw.items())))

    def cached_explain_sets(self, choice: ModelChoice, sets: Sequence[dict[str, int]],
                            targets: Sequence[str]) -> pd.DataFrame:
        """:meth:`explain_sets`, memoised."""
        return _cached_explain(self, self.cache_key, choice,
                               tuple(tuple(sorted(s.items())) for s in sets), tuple(targets))

    # -- metadata -----------------------------------------------------------------------
    @property
    def models(self) -> list[ModelChoice]:
        out = []
        for m in self.predictor.models:
            out.append(ModelChoice(
                model=str(m["model"]), method=str(m["method"]), origin=str(m.get("origin", "")),
                metric=str(m.get("metric", "macro_f1")),
                typical_n=int(m.get("typical_n_per_language", 1000)),
                max_k=int(m.get("max_k", 1)), targets=tuple(m.get("targets", ()))))
        # own measurements first: they are what the app is about
        return sorted(out, key=lambda c: (c.origin != "own", c.model, c.method))

    def describe(self, feature: str) -> str:
        """The card's documentation of a feature column ('' when undocumented)."""
        if feature == WITHIN_STAGE_COLUMN:
            return WITHIN_STAGE_COLUMN_DOC
        docs = self.card.get("feature_docs", {})
        if feature in docs:
            return str(docs[feature])
        for prefix in ("model=", "method="):
            if feature.startswith(prefix):
                return str(docs.get(prefix + "<id>", ""))
        return ""

    def cv_table(self) -> pd.DataFrame:
        return pd.DataFrame(self.card.get("cv", []))

    def interval_info(self) -> dict[str, Any]:
        return dict(self.card.get("intervals", {}))

    @property
    def coverage_text(self) -> str:
        """One line on what the intervals are, with the range of per-group held-out coverage."""
        info = self.interval_info()
        if not info:
            return ""
        level = 100 * (1 - float(info.get("alpha", 0.1)))
        recs = [r for r in info.get("coverage", {}).get("unseen-target", [])
                if r.get("targets", 0) >= 3]
        if recs:
            lo = min(r["coverage"] for r in recs)
            hi = max(r["coverage"] for r in recs)
            extra = (f"; held-out-language coverage {100 * lo:.0f}–{100 * hi:.0f}% across "
                     f"{len(recs)} (model, pretraining class) groups")
        else:
            extra = ""
        return (f"{level:.0f}% conformal interval, calibrated per model and pretraining class "
                f"on held-out target languages{extra}")

    def coverage_for(self, choice: "ModelChoice") -> pd.DataFrame:
        """Per-group held-out coverage of the intervals for one (model, method): columns
        basis, class, targets, half_width, coverage, worst_target, worst_coverage."""
        info = self.interval_info().get("coverage", {})
        rows = []
        for basis, recs in info.items():
            for r in recs:
                mm, _, pcl = r["group"].rpartition("|")
                if mm != f"{choice.model}|{choice.method}":
                    continue
                rows.append({"basis": basis, "class": pcl, "targets": r["targets"],
                             "half_width": r["half_width"], "coverage": r["coverage"],
                             "worst_target": r["worst_target"],
                             "worst_coverage": r["worst_target_coverage"]})
        return pd.DataFrame(rows, columns=["basis", "class", "targets", "half_width", "coverage",
                                           "worst_target", "worst_coverage"])

    def warm_up(self) -> None:
        """One throw-away prediction, so URIEL's arrays load now and not on the first click."""
        choices = self.models
        if choices:
            try:
                # a registry target and a lang2vec-only one (loads lang2vec's language list)
                self.predict(choices[0], {"en": choices[0].typical_n}, ["sw", "aym", "quy"])
            except Exception:  # noqa: BLE001 - a failed warm-up only costs speed later
                pass

    # -- prediction ---------------------------------------------------------------------
    def predict(self, choice: ModelChoice, config: dict[str, int],
                targets: Sequence[str]) -> tuple[pd.DataFrame, dict[str, str]]:
        """(frame[target, prediction, lower, upper, basis, out_of_support, reason, pretraining],
        {target: why it failed}) for one config.

        One batched call; if it fails (e.g. a language URIEL cannot place), targets are
        retried one by one so a single bad target does not hide the others.
        """
        targets = list(dict.fromkeys(targets))
        if not config:
            raise ServiceError("choose at least one source language with a positive number "
                               "of examples")
        cols = ["target", *PRED_COLUMNS]
        if not targets:
            return pd.DataFrame(columns=cols), {}
        rows = [self._row(choice, config, t) for t in targets]
        try:
            pred = self.predictor.predict(rows)
            pred.insert(0, "target", targets)
            return pred.reset_index(drop=True)[cols], {}
        except Exception:  # noqa: BLE001 - retried per target below to isolate the bad one
            pass
        ok, errors = [], {}
        for t in targets:
            try:
                p = self.predictor.predict([self._row(choice, config, t)])
                ok.append({"target": t, **{c: p[c].iloc[0] for c in PRED_COLUMNS}})
            except Exception as exc:  # noqa: BLE001 - reported per target on the page
                errors[t] = _short(exc)
        return pd.DataFrame(ok, columns=cols), errors

    @staticmethod
    def _row(choice: ModelChoice, config: dict[str, int], target: str) -> dict[str, Any]:
        return {"model": choice.model, "method": choice.method, "train_config": dict(config),
                "target": target}

    def marginal_gains(self, choice: ModelChoice, config: dict[str, int], targets: Sequence[str],
                       candidates: Sequence[str], n_new: int) -> pd.DataFrame:
        """Predicted change in mean (and worst) score over ``targets`` from adding each candidate.

        The base rows and every (candidate, target) row go to the predictor in one call
        (each call has a fixed cost). Columns: language, mean_gain, worst_gain, mean_after,
        worst_after.
        """
        targets = list(dict.fromkeys(targets))
        cands = [c for c in dict.fromkeys(candidates) if c not in config]
        cols = ["language", "mean_gain", "worst_gain", "mean_after", "worst_after"]
        if not targets or not cands:
            return pd.DataFrame(columns=cols)
        rows = [self._row(choice, config, t) for t in targets]
        rows += [self._row(choice, {**config, c: n_new}, t) for c in cands for t in targets]
        allp = self.predictor.predict(rows)["prediction"].to_numpy()
        base_p = allp[:len(targets)]
        P = allp[len(targets):].reshape(len(cands), len(targets))
        out = pd.DataFrame({"language": cands,
                            "mean_gain": P.mean(axis=1) - base_p.mean(),
                            "worst_gain": P.min(axis=1) - base_p.min(),
                            "mean_after": P.mean(axis=1), "worst_after": P.min(axis=1)})
        return out.sort_values("mean_gain", ascending=False, kind="stable").reset_index(drop=True)

    # -- recommendation -----------------------------------------------------------------
    def recommend(self, choice: ModelChoice, targets: Sequence[str], pool: Sequence[str], *,
                  k: int | None = None, total_examples: int | None = None,
                  n_per_language: int | None = None, objective: str = "mean",
                  include_targets: bool = False, top: int = 5,
                  k_max: int = 4) -> pd.DataFrame:
        """Best source sets for ``targets`` from ``pool``.

        Budget in languages: ``k`` languages with ``n_per_language`` examples each.
        Budget in examples: ``total_examples`` split evenly over k languages, every k from
        1 to ``k_max`` compared (the result's ``k`` column says which won); ``k_max``
        bounds the search, which grows as C(pool, k).
        Columns: rank, sources, k, n_per_language, objective, mean, worst, per-target columns.
        """
        if (k is None) == (total_examples is None):
            raise ServiceError("give the budget either as k languages or as a total number "
                               "of examples")
        targets = list(dict.fromkeys(targets))
        if not targets:
            raise ServiceError("choose at least one target language")
        if k is not None:
            return self._recommend_k(choice, targets, pool, k, n_per_language or choice.typical_n,
                                     objective, include_targets, top)
        assert total_examples is not None
        frames = []
        usable = len([p for p in pool if include_targets or p not in targets])
        for kk in range(1, min(usable, k_max) + 1):
            n = total_examples // kk
            if n < 1:
                break
            try:
                frames.append(self._recommend_k(choice, targets, pool, kk, n, objective,
                                                include_targets, top))
            except ServiceError as exc:
                if "exceed the cap" in str(exc):
                    break
                raise
        if not frames:
            raise ServiceError(f"a budget of {total_examples} examples is too small for any "
                               "source set")
        allr = pd.concat(frames, ignore_index=True)
        allr = allr.sort_values("objective", ascending=False, kind="stable").head(top)
        allr["rank"] = np.arange(1, len(allr) + 1)
        allr["within_noise_of_best"] = (allr["objective"].iloc[0] - allr["objective"]
                                        < allr["noise_margin"].max())
        return allr.reset_index(drop=True)

    def _recommend_k(self, choice: ModelChoice, targets: list[str], pool: Sequence[str], k: int,
                     n: int, objective: str, include_targets: bool, top: int) -> pd.DataFrame:
        try:
            df = self.predictor.recommend(choice.model, targets=targets, pool=list(pool), k=int(k),
                                          method=choice.method, objective=objective,
                                          n_per_language=int(n), top=top,
                                          include_targets=include_targets)
        except ValueError as exc:
            raise ServiceError(_short(exc)) from None
        df = df.copy()
        df["noise_margin"] = float(df.attrs.get("noise_margin", 0.0))
        df.insert(2, "k", int(k))
        df.insert(3, "n_per_language", int(n))
        df.attrs = {}
        return df

    def set_support(self, choice: ModelChoice, rec: pd.DataFrame,
                    targets: Sequence[str]) -> pd.DataFrame:
        """Per listed source set (``rec`` from :meth:`recommend`) and target: the basis,
        the support flag and its reason, from the same predictions (the ranking keeps only
        the numbers). Columns: rank, target, basis, out_of_support, reason."""
        cols = ["rank", "target", "basis", "out_of_support", "reason"]
        keys = [(int(r["rank"]), t) for _, r in rec.iterrows() for t in targets]
        rows = [self._row(choice, TrainConfig.of(r["sources"], int(r["n_per_language"])), t)
                for _, r in rec.iterrows() for t in targets]
        if not rows:
            return pd.DataFrame(columns=cols)
        pred = self.predictor.predict(rows)
        return pd.DataFrame({"rank": [k[0] for k in keys], "target": [k[1] for k in keys],
                             "basis": pred["basis"].to_numpy(),
                             "out_of_support": pred["out_of_support"].to_numpy(bool),
                             "reason": pred["reason"].fillna("").to_numpy()})[cols]

    # -- explanation --------------------------------------------------------------------
    @cached_property
    def feature_model(self) -> FeatureModel:
        """The unseen-target model as a function of the feature matrix alone."""
        return self.predictor.feature_model()

    @property
    def feature_names(self) -> list[str]:
        return [str(n) for n in self.predictor.features.get_feature_names_out()]

    def features(self, rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
        """The model's input features for rows (distances, sizes, ...)."""
        clean = [self.predictor.validate(r) for r in rows]
        return self.predictor.features.transform_frame(pd.DataFrame(clean))

    def contributions(self, rows: Sequence[dict[str, Any]]) -> pd.DataFrame | None:
        """Per-feature contributions in points of the unseen-target model when it is linear
        (sd of the system x coefficient x standardised value), else None."""
        return self._contributions_of(self.features(rows))

    def _contributions_of(self, feats: pd.DataFrame) -> pd.DataFrame | None:
        """:meth:`contributions` from rows' features already computed (:meth:`features`)."""
        X = feats.to_numpy(float)
        c = self.feature_model.contributions(X)
        if c is None:
            return None
        out = pd.DataFrame(c, columns=feats.columns, index=feats.index)
        within = self.feature_model.within_points(X)
        if within is not None:
            out[WITHIN_STAGE_COLUMN] = within
        return out

    def permutation_importance(self, rows: Sequence[dict[str, Any]], y: Sequence[float],
                               repeats: int = IMPORTANCE_REPEATS, seed: int = 0,
                               max_rows: int = IMPORTANCE_ROWS,
                               progress: Any = None) -> pd.DataFrame:
        """How much the MAE on ``rows`` grows when one feature column is shuffled, in points
        (scoring = MAE, as scikit-learn's ``permutation_importance``): in-sample when the
        rows are training rows; prediction only, nothing is refitted.

        Bounded: at most ``max_rows`` rows (a seeded random sample) and ``repeats`` shuffles
        per column, each column's shuffles predicted in one call; ``progress(done, total)``
        is called after each column. Columns: feature, importance (mean over the shuffles),
        std (their SD); columns constant over the rows are left out (shuffling them changes
        nothing)."""
        rng = np.random.default_rng(seed)
        y = np.asarray(y, float)
        if len(rows) > max_rows:
            pick = np.sort(rng.choice(len(rows), max_rows, replace=False))
            rows, y = [rows[i] for i in pick], y[pick]
        feats = self.features(rows)
        X = feats.to_numpy(float)
        n = len(X)
        base = float(np.abs(self.feature_model.predict(X) - y).mean())
        cols = np.flatnonzero(np.ptp(X, axis=0) > 0)
        imps = np.zeros((len(cols), repeats))
        for j, c in enumerate(cols.tolist()):
            block = np.tile(X, (repeats, 1))
            block[:, c] = np.concatenate([X[rng.permutation(n), c] for _ in range(repeats)])
            pred = self.feature_model.predict(block).reshape(repeats, n)
            imps[j] = np.abs(pred - y).mean(axis=1) - base
            if progress is not None:
                progress(j + 1, len(cols))
        out = pd.DataFrame({"feature": feats.columns[cols], "importance": imps.mean(axis=1),
                            "std": imps.std(axis=1)})
        return out.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)

    def k_scaling(self, choice: "ModelChoice", targets: Sequence[str], pool: Sequence[str],
                  total: int, ks: Sequence[int], sets_per_k: int = 24,
                  seed: int = 0) -> pd.DataFrame:
        """The predictor's answer to the Scaling page's question: mean predicted score of
        random source sets of each size k drawn from ``pool`` at a fixed ``total`` of
        examples (split evenly), zero-shot (a set holding the target is not scored for it),
        per target class.

        Why beside partial dependence: partial dependence moves the k column alone, holding
        every other feature of a row fixed, while a larger set also changes its distances,
        diversity and probe entropies; this moves the whole set, as the measurements do.
        Columns: k, target_class, prediction, targets, sets."""
        rng = np.random.default_rng(seed)
        rows, meta = [], []
        for k in ks:
            if not 1 <= k <= len(pool) or total // k < 1:
                continue
            for _ in range(sets_per_k):
                langs = [str(x) for x in rng.choice(list(pool), k, replace=False)]
                cfg = TrainConfig.of(langs, total // k)
                for t in targets:
                    if t not in langs:
                        rows.append(self._row(choice, cfg, t))
                        meta.append((k, resource_class(t), t))
        cols = ["k", "target_class", "prediction", "targets", "sets"]
        if not rows:
            return pd.DataFrame(columns=cols)
        pred = self.predictor.predict(rows)["prediction"].to_numpy()
        df = pd.DataFrame(meta, columns=["k", "target_class", "target"]).assign(prediction=pred)
        per_target = df.groupby(["k", "target_class", "target"], as_index=False)["prediction"].mean()
        out = per_target.groupby(["k", "target_class"], as_index=False).agg(
            prediction=("prediction", "mean"), targets=("target", "nunique"))
        return out.assign(sets=sets_per_k)[cols]

    def training_pool(self, choice: "ModelChoice") -> str | None:
        """The training pool the predictor was fitted on for this system (the card's
        ``training_data.pools``), e.g. 'xnli/validation'; None when it names none for it."""
        pools = self.card.get("training_data", {}).get("pools") or {}
        return pools.get(f"{choice.model}|{choice.method}")

    def measured_by_pool(self, table: pd.DataFrame, choice: "ModelChoice",
                         config: dict[str, int], targets: Sequence[str]) -> pd.DataFrame:
        """Measured macro-F1 of exactly this configuration, per training pool, deduplicated.

        Why per pool: the same {language: n} trained on different pools (XNLI validation vs
        the machine-translated training set) is a different experiment (Aymara from English
        x 2,490: 35.6 vs 44.7); why deduplicated: k = 1 cells are identical across the two
        regimes and deterministic seeds, and counting them twice is not more evidence.
        Columns: target, pool, measured, measured_sd, measured_runs.
        """
        cols = ["target", "pool", "measured", "measured_sd", "measured_runs"]
        if table is None or table.empty:
            return pd.DataFrame(columns=cols)
        key = config_key(config)
        sub = table[(table["model"] == choice.model) & (table["method"] == choice.method)
                    & (table["config_key"] == key) & table["target_language"].isin(list(targets))]
        if sub.empty:
            return pd.DataFrame(columns=cols)
        sub = sub[~repeated_scores(sub, ["pool", "target_language"], "macro_f1")]
        g = sub.groupby(["target_language", "pool"])["macro_f1"]
        out = pd.DataFrame({"measured": g.mean(), "measured_sd": g.std(ddof=1).fillna(0.0),
                            "measured_runs": g.size()}).reset_index()
        return out.rename(columns={"target_language": "target"})[cols]

    def explain_sets(self, choice: ModelChoice, sets: Sequence[dict[str, int]],
                     targets: Sequence[str]) -> pd.DataFrame:
        """Model inputs per source set, averaged over ``targets`` (one row per set).

        With a linear model, also the summed contribution of each feature group in
        points (columns ``contrib:<feature>``).
        """
        rows = [self._row(choice, dict(cfg), t) for cfg in sets for t in targets]
        feats = self.features(rows)
        set_id = np.repeat(np.arange(len(sets)), len(targets))
        out = feats.groupby(set_id).mean()
        contrib = self._contributions_of(feats)     # the same rows: featurised once
        if contrib is not None:
            c = contrib.groupby(set_id).mean()
            out = pd.concat([out, c.add_prefix("contrib:")], axis=1)
        return out.reset_index(drop=True)

    def partial_dependence(self, rows: Sequence[dict[str, Any]], feature: str,
                           grid: Sequence[float] | None = None, n_grid: int = 12) -> pd.DataFrame:
        """Average prediction when ``feature`` is set to each grid value on every row.

        Classic partial dependence on the model's own feature space: the rows are
        featurised once, column ``feature`` is overwritten, and the rest of the loaded
        pipeline predicts. Columns: value, prediction, p10, p90 (spread over rows).
        """
        feats = self.features(rows)
        if feature not in feats.columns:
            raise ServiceError(f"the predictor has no feature {feature!r}")
        col = feats[feature].to_numpy(float)
        if grid is None:
            lo, hi = float(np.nanmin(col)), float(np.nanmax(col))
            if feature == "k":
                grid = list(range(max(1, int(lo)), max(int(hi), int(lo) + 1) + 1))
            else:
                grid = list(np.linspace(lo, hi if hi > lo else lo + 1e-6, n_grid))
        out = []
        X = feats.copy()
        for v in grid:
            X[feature] = float(v)
            p = self.feature_model.predict(X.to_numpy(float))
            out.append({"value": float(v), "prediction": float(np.mean(p)),
                        "p10": float(np.percentile(p, 10)), "p90": float(np.percentile(p, 90))})
        return pd.DataFrame(out)


def slope_per_doubling(curve: pd.DataFrame) -> dict[str, float]:
    """Least-squares slope of the mean prediction on log2 k, per target class, from
    :meth:`PredictorService.k_scaling`: the unit the report's headline uses (points per
    doubling of k)."""
    out = {}
    for cls, g in curve.groupby("target_class"):
        if g["k"].nunique() >= 2:
            out[str(cls)] = float(np.polyfit(np.log2(g["k"].to_numpy(float)),
                                             g["prediction"].to_numpy(float), 1)[0])
    return out


# The service itself is not hashed (``_svc``): ``key`` (its cache_key) names it.
@st.cache_data(show_spinner=False, max_entries=512)
def _cached_gains(_svc: PredictorService, key: str, choice: ModelChoice,
                  config: tuple[tuple[str, int], ...], targets: tuple[str, ...],
                  candidates: tuple[str, ...], n_new: int) -> pd.DataFrame:
    return _svc.marginal_gains(choice, dict(config), list(targets), list(candidates), n_new)


@st.cache_data(show_spinner=False, max_entries=256)
def _cached_recommend(_svc: PredictorService, key: str, choice: ModelChoice,
                      targets: tuple[str, ...], pool: tuple[str, ...],
                      kw: tuple[tuple[str, Any], ...]) -> pd.DataFrame:
    return _svc.recommend(choice, list(targets), list(pool), **dict(kw))


@st.cache_data(show_spinner=False, max_entries=256)
def _cached_explain(_svc: PredictorService, key: str, choice: ModelChoice,
                    sets: tuple[tuple[tuple[str, int], ...], ...],
                    targets: tuple[str, ...]) -> pd.DataFrame:
    return _svc.explain_sets(choice, [dict(s) for s in sets], list(targets))


def _short(exc: BaseException) -> str:
    msg = str(exc).strip() or type(exc).__name__
    return msg if len(msg) < 400 else msg[:397] + "…"


# -- loading ----------------------------------------------------------------------------------
def predictor_dir(models: Path) -> Path:
    return models / PREDICTOR_SUBDIR


def _card_stamp(directory: Path) -> tuple:
    files = [directory / "model_card.json", directory / "predictor.skops"]
    return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files if p.is_file())


@st.cache_resource(show_spinner="Loading the predictor…", max_entries=4)
def _load(directory: str, stamp: tuple, profiles: str
          ) -> tuple[PredictorService | None, str | None]:
    try:
        service = PredictorService(load_predictor(directory, profiles=profiles or None),
                                   Path(directory))
        service.profiles = profiles or None
        service.warm_up()
        _freeze_heap()
        return service, None
    except FileNotFoundError as exc:
        return None, _short(exc)
    except Exception as exc:  # noqa: BLE001 - integrity/allow-list errors are shown, not raised
        return None, f"{type(exc).__name__}: {_short(exc)}"


def _freeze_heap() -> None:
    """Move everything alive now (the predictor, URIEL, lang2vec's tables, Streamlit) out of
    the cyclic garbage collector's reach (``gc.freeze``).

    Why: the process holds hundreds of thousands of long-lived objects, and a full
    (generation 2) collection walks all of them while holding the GIL, which the click it
    lands on pays for. Frozen objects are never collected, which costs nothing for objects
    that live as long as the app; collections still run, over what the reruns allocate."""
    gc.collect()
    gc.freeze()


def load_service(models: Path) -> tuple[PredictorService | None, str | None]:
    """(service, None) or (None, why) for ``models/predictor`` (cached per file version),
    reading the user's profiles beside the shipped ones (``xlt-app --profiles DIR`` sets
    ``$XLT_PROFILES_DIR``; :func:`predictor.serving.default_profiles_dir`): a directory
    made after the app started is read from the next page load on."""
    directory = predictor_dir(models)
    if not (directory / "model_card.json").is_file():
        return None, f"no fitted predictor in {directory}"
    profiles = default_profiles_dir()
    return _load(str(directory), _card_stamp(directory), str(profiles or ""))
