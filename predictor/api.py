"""The public Python API of the predictor (used by the CLI and the Streamlit app).

    from predictor.api import load_predictor
    p = load_predictor("models/predictor")
    p.models                       # [{'model': 'xlmr', 'method': 'finetune', 'origin': ...}, ...]
    p.predict_one("xlmr", None, {"en": 10000, "hi": 1000}, "as")
    # -> {'prediction': 78.4, 'lower': 75.1, 'upper': 81.0}
    p.predict([{...}, {...}])      # DataFrame[prediction, lower, upper]
    p.recommend("xlmr", targets=["sw", "ur"], pool=["en", "de", "hi"], k=2)

Scores are on the 0-100 scale of the model's metric (``p.models[i]['metric']``:
accuracy for the SumEval models, macro-F1 for our own measurements). Intervals are
split-conformal intervals calibrated on unseen target languages (see
``predictor.intervals``); their coverage is in ``p.card['intervals']``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from measure.languages import UnknownLanguageError
from measure.paths import MODELS, DefaultPathNotFound, resolve_default
from predictor import intervals, persist
from predictor.dataset import DataValidationError, canonical_config, lookup_language
from predictor.features import as_rows

MAX_COMBINATIONS = 50_000


class PredictionInputError(ValueError):
    """A prediction request the predictor cannot answer (unknown model, language, ...)."""


class Predictor:
    """A fitted point model + conformal interval calibration + its model card."""

    def __init__(self, estimator: Any, card: dict[str, Any], scale_estimator: Any = None) -> None:
        self.estimator = estimator
        self.scale_estimator = scale_estimator
        self.card = card
        self._methods: dict[str, list[str]] = {}
        for m in card.get("models", []):
            self._methods.setdefault(m["model"], []).append(m["method"])

    # -- metadata ------------------------------------------------------------------------
    @property
    def models(self) -> list[dict[str, Any]]:
        """One entry per (model, method): origin, metric, task, typical n per language, targets."""
        return [dict(m) for m in self.card.get("models", [])]

    @property
    def quantile(self) -> float:
        """The pooled conformal quantile (all models)."""
        return float(self.card["intervals"]["quantile"])

    def quantiles(self, rows: pd.DataFrame) -> np.ndarray:
        """Per-row quantile: the row's (model, method) calibration, else the pooled one."""
        by_model = self.card["intervals"].get("by_model", {})
        keys = rows["model"].astype(str) + "|" + rows["method"].astype(str)
        return keys.map(lambda k: by_model.get(k, {}).get("quantile", self.quantile)) \
            .to_numpy(dtype=float)

    def _model_info(self, model: str, method: str) -> dict[str, Any]:
        for m in self.card.get("models", []):
            if m["model"] == model and m["method"] == method:
                return m
        raise PredictionInputError(f"unknown model/method {model}/{method}")

    # -- validation -----------------------------------------------------------------------
    def resolve_method(self, model: Any, method: Any = None) -> str:
        """The method for ``model``: the given one if valid, else the model's only method."""
        if not isinstance(model, str) or model not in self._methods:
            raise PredictionInputError(f"unknown model {model!r}; this predictor knows "
                                       f"{sorted(self._methods)}")
        methods = self._methods[model]
        if method is None:
            if len(methods) > 1:
                raise PredictionInputError(f"model {model!r} has several methods {methods}: "
                                           "pass one as 'method'")
            return methods[0]
        if method not in methods:
            raise PredictionInputError(f"model {model!r} has no method {method!r}; "
                                       f"known: {methods}")
        return str(method)

    def validate(self, rec: Mapping[str, Any]) -> dict[str, Any]:
        """A clean row {model, method, train_config, target} or ``PredictionInputError``."""
        if not isinstance(rec, Mapping):
            raise PredictionInputError(f"expected an object, got {type(rec).__name__}")
        task = rec.get("task", "xnli")
        if task != "xnli":
            raise PredictionInputError(f"unknown task {task!r}; the predictor covers 'xnli' "
                                       "(3-way NLI)")
        missing = [c for c in ("model", "train_config", "target") if c not in rec]
        if missing:
            raise PredictionInputError(f"missing field(s) {missing}")
        method = self.resolve_method(rec["model"], rec.get("method"))
        target = rec["target"]
        if not isinstance(target, str) or not target.strip():
            raise PredictionInputError(f"target must be a language code such as 'sw', got "
                                       f"{target!r}")
        target = target.strip()
        try:
            tc = canonical_config(rec["train_config"])
            lookup_language(target)
        except (DataValidationError, UnknownLanguageError) as exc:
            raise PredictionInputError(str(exc)) from None
        return {"model": rec["model"], "method": method, "train_config": tc, "target": target}

    # -- prediction -----------------------------------------------------------------------
    def _predict_valid(self, rows: pd.DataFrame) -> pd.DataFrame:
        # one OpenMP thread: HistGradientBoosting's threads stall on a busy machine, and
        # prediction batches are small
        with threadpool_limits(limits=1):
            point = self.estimator.predict(rows)
            scale = None if self.scale_estimator is None else self.scale_estimator.predict(rows)
        pred, lo, hi = intervals.intervals(point, self.quantiles(rows), scale)
        return pd.DataFrame({"prediction": pred, "lower": lo, "upper": hi}, index=rows.index)

    def predict(self, frame_or_rows: Any) -> pd.DataFrame:
        """Predictions with intervals for many rows (a DataFrame or dicts); any bad row raises."""
        rows = as_rows(frame_or_rows)
        recs = rows.to_dict("records")
        clean = []
        for i, rec in enumerate(recs):
            rec = {k: v for k, v in rec.items() if not (k == "method" and _isna(v))}
            try:
                clean.append(self.validate(rec))
            except PredictionInputError as exc:
                raise PredictionInputError(f"row {i}: {exc}") from None
        out = self._predict_valid(pd.DataFrame(clean, columns=["model", "method", "train_config",
                                                               "target"]))
        out.index = rows.index
        return out

    def predict_records(self, records: Sequence[Any]) -> list[dict[str, Any]]:
        """Per-record results, an ``{'error': ...}`` for each bad record (for batch files)."""
        results: list[dict[str, Any]] = [{} for _ in records]
        clean, where = [], []
        for i, rec in enumerate(records):
            try:
                clean.append(self.validate(rec))
                where.append(i)
            except PredictionInputError as exc:
                results[i] = {"error": str(exc)}
        if clean:
            try:
                pred = self._predict_valid(pd.DataFrame(clean)).to_numpy()
            except ValueError:
                # a row the vectorised path cannot featurise: isolate it, line by line
                pred = []
                for i, row in zip(list(where), clean):
                    try:
                        pred.append(self._predict_valid(pd.DataFrame([row])).to_numpy()[0])
                    except ValueError as exc:
                        results[i] = {"error": str(exc)}
                        where.remove(i)
            for i, (p, lo, hi) in zip(where, pred):
                results[i] = {"prediction": round(float(p), 2), "lower": round(float(lo), 2),
                              "upper": round(float(hi), 2)}
        return results

    def predict_one(self, model: str, method: str | None, train_config: Mapping[str, int],
                    target: str) -> dict[str, float]:
        """One prediction: {'prediction', 'lower', 'upper'} on the 0-100 scale."""
        row = self.validate({"model": model, "method": method, "train_config": train_config,
                             "target": target})
        p = self._predict_valid(pd.DataFrame([row])).iloc[0]
        return {k: float(p[k]) for k in ("prediction", "lower", "upper")}

    # -- recommendation -------------------------------------------------------------------
    def recommend(self, model: str, targets: Sequence[str], pool: Sequence[str], k: int, *,
                  method: str | None = None, objective: str = "mean",
                  n_per_language: int | None = None, top: int = 5,
                  include_targets: bool = False,
                  max_combinations: int = MAX_COMBINATIONS) -> pd.DataFrame:
        """Rank every k-subset of ``pool`` as source set for ``targets``.

        ``objective`` 'mean' ranks by mean predicted score over the targets, 'worst' by the
        lowest. Each language gets ``n_per_language`` examples (default: the model's
        typical per-language size in the training data). Targets are removed from the
        pool unless ``include_targets`` (zero-shot by default). Returns the ``top`` rows:
        rank, sources, objective, mean, worst, then per target ``{t}``, ``{t}_lower``,
        ``{t}_upper``; ``df.attrs`` holds the settings and the number of combinations.
        """
        method = self.resolve_method(model, method)
        if objective not in ("mean", "worst"):
            raise PredictionInputError(f"objective must be 'mean' or 'worst', got {objective!r}")
        targets = _dedupe([str(t) for t in targets])
        pool = _dedupe([str(p) for p in pool])
        if not targets:
            raise PredictionInputError("no targets given")
        for code in targets + pool:
            try:
                lookup_language(code)
            except UnknownLanguageError as exc:
                raise PredictionInputError(str(exc)) from None
        dropped: list[str] = []
        if not include_targets:
            tiso = {lookup_language(t).iso639_3 for t in targets}
            dropped = [p for p in pool if lookup_language(p).iso639_3 in tiso]
            pool = [p for p in pool if p not in dropped]
        if not isinstance(k, int) or k < 1 or k > len(pool):
            raise PredictionInputError(f"k must be between 1 and the pool size {len(pool)} "
                                       f"(after removing targets {dropped}), got {k}")
        n_comb = math.comb(len(pool), k)
        if n_comb > max_combinations:
            raise PredictionInputError(
                f"{n_comb:,} source sets (C({len(pool)},{k})) exceed the cap of "
                f"{max_combinations:,}: shrink the pool, lower k or raise max_combinations")
        if n_per_language is None:
            n_per_language = int(self._model_info(model, method)["typical_n_per_language"])
        if n_per_language < 1:
            raise PredictionInputError(f"n_per_language must be >= 1, got {n_per_language}")
        combos = list(itertools.combinations(pool, k))
        rows = pd.DataFrame([{"model": model, "method": method,
                              "train_config": {c: n_per_language for c in combo}, "target": t}
                             for combo in combos for t in targets])
        pred = self._predict_valid(rows)
        T = len(targets)
        P = pred["prediction"].to_numpy().reshape(len(combos), T)
        L = pred["lower"].to_numpy().reshape(len(combos), T)
        U = pred["upper"].to_numpy().reshape(len(combos), T)
        mean, worst = P.mean(axis=1), P.min(axis=1)
        obj = mean if objective == "mean" else worst
        order = np.argsort(-obj, kind="stable")[:max(1, top)]
        out = pd.DataFrame({"rank": np.arange(1, len(order) + 1),
                            "sources": [list(combos[i]) for i in order],
                            "objective": obj[order], "mean": mean[order], "worst": worst[order]})
        for j, t in enumerate(targets):
            out[t] = P[order, j]
            out[f"{t}_lower"] = L[order, j]
            out[f"{t}_upper"] = U[order, j]
        out.attrs.update({"model": model, "method": method, "objective": objective,
                          "k": k, "n_per_language": n_per_language, "targets": targets,
                          "pool": pool, "dropped_from_pool": dropped,
                          "n_combinations": n_comb})
        return out


def _isna(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(i.strip() for i in items if i.strip()))


def default_predictor_dir() -> Path:
    """``predictor/`` inside the default models directory (:mod:`measure.paths`)."""
    try:
        return resolve_default(MODELS) / "predictor"
    except DefaultPathNotFound as exc:
        raise FileNotFoundError(str(exc)) from None


def load_predictor(path: str | Path | None = None) -> Predictor:
    """Load a fitted predictor directory (checksum and type allow-list verified); None means
    the default models directory's ``predictor/``."""
    if path is None:
        path = default_predictor_dir()
    obj, card = persist.load(path)
    if not isinstance(obj, dict) or "point" not in obj:
        raise persist.ModelIntegrityError(f"{path}: unexpected model object layout")
    return Predictor(obj["point"], card, obj.get("scale"))
