"""The fitted predictor as a service: load it, validate requests, predict with intervals.

    from predictor.serving import load_predictor
    p = load_predictor("models/predictor")
    p.models                       # [{'model': 'xlmr', 'method': 'finetune', 'origin': ...}, ...]
    p.predict_one("xlmr", None, {"en": 10000, "hi": 1000}, "as")
    # -> {'prediction': 78.4, 'lower': 75.1, 'upper': 81.0, ...}
    p.predict([{...}, {...}])      # DataFrame[prediction, lower, upper, ...]
    p.recommend("xlmr", targets=["sw", "ur"], pool=["en", "de", "hi"], k=2)

Scores are on the 0-100 scale of the model's metric (``p.models[i]['metric']``:
accuracy for the SumEval models, macro-F1 for our own measurements). Intervals are
split-conformal intervals calibrated on unseen target languages (see
``predictor.intervals``); their coverage is in ``p.card['intervals']``. The policies a
prediction passes through live beside this module: support reasons (:mod:`.support`),
profile imputation (:mod:`.imputation`), the pretraining-class policy
(:mod:`.class_policy`), explanations (:mod:`.explain`) and recommendation
(:mod:`.recommend`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from measure.knowledge.paths import MODELS, DefaultPathNotFound, resolve_default, user_profiles_dir
from predictor import intervals, persist
from predictor.arrays import one_thread
from predictor.features import NO_PROFILES, TransferFeatures, as_rows, check_profiles
from predictor.features.profiles import profiles_root
from predictor.models import SeenTargetModel, ZModel, row_meta
from predictor.serving.class_policy import ClassPolicy, system_class_codes
from predictor.serving.explain import FeatureModel
from predictor.serving.imputation import ProfileImputer, profile_pair_flags
from predictor.serving.recommend import MAX_COMBINATIONS, recommend
from predictor.serving.requests import (PredictionInputError, Systems, validate_record,
                                        without_missing_method)
from predictor.serving.support import SupportChecker, add_reason

#: the parts of a fitted predictor's model file (``xlt-predict fit``)
BUNDLE_PARTS = ("features", "unseen", "seen")

STAND_IN_REASON = ("a source language has no per-source probe in the target's profile (only "
                   "the 15 XNLI languages have one, and profiles made before schema 2 have "
                   "none): the English probe's label entropy stands in for it")
IMPUTED_LABEL_FREE_REASON = ("the target's profile has no label-free estimates (made without "
                             "--pairs; every training target's has them): its pretraining "
                             "class's mean is used for them")
NOT_NLI_REASON = ("the target's profile was made from pairs that do not look like NLI pairs "
                  "({why}): its label-free estimates are not used, its pretraining class's "
                  "mean stands in for them; rerun `xlt-measure profile` with real "
                  "premise/hypothesis pairs")


class Predictor:
    """Features + the unseen-target model + the measured-target memory + interval calibration
    + the model card.

    Each prediction says its ``basis``: "measured-target" when the (model, method, target)
    has training rows (the target's own mean plus a learner of the configuration's
    deviation from it), else "unseen-target" (the learner on features alone). Intervals are
    calibrated per (system, pretraining class) group on held-out targets (unseen basis) or
    held-out configurations (measured basis); rows outside the training support get a
    wider interval, ``out_of_support`` true and a ``reason``.

    ``features``: the fitted transformer to read (default the bundle's); ``base_features``:
    the same transformer reading the profiles the predictor was trained with, when a user's
    ``--profiles`` directory replaces them in ``features`` (see :func:`load_predictor`).
    """

    def __init__(self, bundle: Mapping[str, Any], card: dict[str, Any], *,
                 features: TransferFeatures | None = None,
                 base_features: TransferFeatures | None = None) -> None:
        self.card = card
        self.features = bundle["features"] if features is None else features
        self.base_features = base_features
        # one model per system, chosen for it by nested CV
        self.unseen = {str(m): ZModel.from_state(st) for m, st in bundle["unseen"].items()}
        self.seen = {str(m): SeenTargetModel.from_state(st) for m, st in bundle["seen"].items()}
        self.systems = Systems(card.get("models", []))
        self.support = SupportChecker(card.get("support", {}))
        self.class_policy = ClassPolicy(self.seen, self.support.support)
        self.imputer = ProfileImputer(
            self.systems.entries, [mm for mm in self.unseen if self.support.profile_expected(mm)],
            self.base_features if self.base_features is not None else self.features)

    # -- metadata ------------------------------------------------------------------------
    @property
    def models(self) -> list[dict[str, Any]]:
        """One entry per system: origin, metric, task, typical n per language, targets."""
        return [dict(m) for m in self.card.get("models", [])]

    def coverage(self, basis: str = "unseen-target") -> list[dict[str, Any]]:
        """Per-group held-out coverage records of the intervals (from the card)."""
        return list(self.card["intervals"].get("coverage", {}).get(basis, []))

    def feature_model(self) -> FeatureModel:
        """The unseen-target model as a function of the feature matrix alone (for partial
        dependence, permutation importance and per-feature contributions in the app)."""
        return FeatureModel(self.unseen, self.features.get_feature_names_out())

    # -- validation -----------------------------------------------------------------------
    def resolve_method(self, model: Any, method: Any = None) -> str:
        """The method for ``model``: the given one if valid, else the model's only method."""
        return self.systems.resolve_method(model, method)

    def validate(self, rec: Mapping[str, Any]) -> dict[str, Any]:
        """A clean row {model, method, train_config, target} or ``PredictionInputError``."""
        return validate_record(rec, self.systems)

    # -- prediction -----------------------------------------------------------------------
    def predict(self, frame_or_rows: Any) -> pd.DataFrame:
        """Predictions with intervals for many rows (a DataFrame or dicts); any bad row raises."""
        rows = as_rows(frame_or_rows)
        clean = []
        for i, rec in enumerate(rows.to_dict("records")):
            try:
                clean.append(self.validate(without_missing_method(rec)))
            except PredictionInputError as exc:
                raise PredictionInputError(f"row {i}: {exc}") from None
        out = self._predict_valid(pd.DataFrame(clean, columns=["model", "method", "train_config",
                                                               "target"]))
        out.index = rows.index
        return out

    def predict_records(self, records: Sequence[Any]) -> list[dict[str, Any]]:
        """Per-record results (each with the interval level), an ``{"error": ...}`` for each bad
        record (for batch files and the HTTP API)."""
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
                pred = self._predict_valid(pd.DataFrame(clean)).to_dict("records")
            except ValueError:
                # a row the vectorised path cannot featurise: isolate it, line by line
                pred = []
                for i, row in zip(list(where), clean):
                    try:
                        pred.append(self._predict_valid(pd.DataFrame([row])).to_dict("records")[0])
                    except ValueError as exc:
                        results[i] = {"error": str(exc)}
                        where.remove(i)
            level = round(1 - float(self.card["intervals"]["alpha"]), 4)
            for i, p in zip(where, pred):
                results[i] = {**_result(p), "interval_level": level}
        return results

    def predict_one(self, model: str, method: str | None, train_config: Mapping[str, int],
                    target: str) -> dict[str, Any]:
        """One prediction: {'prediction', 'lower', 'upper'} on the 0-100 scale, plus 'basis'
        ('measured-target' | 'unseen-target'), 'out_of_support', 'reason', 'pretraining' and
        'profile' (a model-space profile of the target was used)."""
        row = self.validate({"model": model, "method": method, "train_config": train_config,
                             "target": target})
        p = self._predict_valid(pd.DataFrame([row])).iloc[0]
        return {**{k: float(p[k]) for k in ("prediction", "lower", "upper")},
                "basis": str(p["basis"]), "out_of_support": bool(p["out_of_support"]),
                "reason": str(p["reason"]) or None, "pretraining": str(p["pretraining"]),
                "interval_group": str(p["interval_group"]), "profile": bool(p["profile"]),
                **_coverage_note(p), **_pairs_note(p)}

    def recommend(self, model: str, targets: Sequence[str], pool: Sequence[str], k: int, *,
                  method: str | None = None, objective: str = "mean",
                  n_per_language: int | None = None, top: int = 5,
                  include_targets: bool = False,
                  max_combinations: int = MAX_COMBINATIONS) -> pd.DataFrame:
        """The best source sets for ``targets`` (:func:`predictor.serving.recommend.recommend`)."""
        return recommend(self, model, targets, pool, k, method=method, objective=objective,
                         n_per_language=n_per_language, top=top,
                         include_targets=include_targets, max_combinations=max_combinations)

    def _predict_valid(self, rows: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(self.predict_columns(rows))

    def predict_columns(self, rows: pd.DataFrame) -> dict[str, Any]:
        """The prediction columns as arrays for rows already validated (:meth:`validate`);
        why public: :func:`~predictor.serving.recommend.recommend` reads them directly.

        The story of a prediction: is the target measured? -> features -> profile
        imputation -> point -> interval half-widths -> support reasons (out-of-support
        points kept in range, intervals widened) -> the class policy -> bounds."""
        rows = rows.reset_index(drop=True)
        meta = row_meta(rows)
        policy = self.class_policy
        # one OpenMP thread: HistGradientBoosting's threads stall on a busy machine, and
        # prediction batches are small
        with one_thread():
            seen = self._measured(meta)
            X, names = self._transform(rows, seen)
            hp = X[:, names.index("has_profile")] > 0 if "has_profile" in names else None
            # a profile with per-source estimates, but not for every supervised language
            stand_in = ((X[:, names.index("prof_src_unknown")] > 0)
                        & (X[:, names.index("has_label_free")] > 0)
                        if {"prof_src_unknown", "has_label_free"} <= set(names)
                        else np.zeros(len(X), bool))
            sc_codes, sc_pairs = system_class_codes(meta)
            not_nli, not_nli_why, skewed = self._pair_flags(rows, hp, seen, meta)
            X, imputed_lf = self.imputer.impute(rows, X, names, meta, hp,
                                                skip=policy.borrowed(sc_codes, sc_pairs, seen),
                                                distrust=not_nli)
            point = self._point(X, meta, seen)
        basis = np.where(seen, "measured-target", "unseen-target")
        half, group, covered = self._half_widths(basis, meta)
        reason = self.support.reasons(rows, meta, seen, hp)
        add_reason(reason, stand_in, STAND_IN_REASON)
        add_reason(reason, imputed_lf & ~seen & ~not_nli, IMPUTED_LABEL_FREE_REASON)
        for why in sorted(set(not_nli_why) - {""}):
            add_reason(reason, not_nli & (np.asarray(not_nli_why, object) == why),
                       NOT_NLI_REASON.format(why=why))
        oos = np.array([bool(r) for r in reason])
        mm_list = meta["mm"].tolist()
        policy.keep_in_range(point, oos & ~seen, mm_list)
        if oos.any():
            calib = self.card["intervals"]["unseen-target"]
            widest = {mm: intervals.widest_for_model(calib, mm)
                      for mm in {mm_list[i] for i in np.flatnonzero(oos).tolist()}}
            half[oos] = [max(half[i], widest[mm_list[i]]) * intervals.OUT_OF_SUPPORT_WIDEN
                         for i in np.flatnonzero(oos).tolist()]
        floor, ceil = policy.borrow(sc_codes, sc_pairs, seen, point, reason)
        policy.chance_floors(rows, meta, floor, reason)
        pred, lo, hi = intervals.intervals(point, half)
        lo = np.clip(np.minimum(lo, floor), intervals.SCORE_MIN, intervals.SCORE_MAX)
        hi = np.clip(np.maximum(hi, ceil), intervals.SCORE_MIN, intervals.SCORE_MAX)
        return {"prediction": pred, "lower": lo, "upper": hi, "basis": basis,
                "out_of_support": np.array([bool(r) for r in reason], dtype=bool),
                "reason": reason, "interval_group": group, "interval_coverage": covered,
                "pretraining": meta["pclass"].to_numpy(),
                "profile": hp if hp is not None else np.zeros(len(rows), bool),
                "pairs_skewed": skewed}

    def _pair_flags(self, rows: pd.DataFrame, hp: np.ndarray | None, seen: np.ndarray,
                    meta: pd.DataFrame) -> tuple[np.ndarray, list[str], np.ndarray]:
        """(unmeasured profiled rows whose profile's pairs do not look like NLI pairs, why,
        those of a language in pretraining whose pairs look label-skewed: a note with the
        answer, the point unchanged; absent languages' probes collapse, which looks the
        same), from :func:`~predictor.serving.imputation.profile_pair_flags` over the
        directories :meth:`_transform` reads, in its order."""
        if hp is None:
            return np.zeros(len(rows), bool), [""] * len(rows), np.zeros(len(rows), bool)
        dirs = [self.features.profiles_dir] + ([self.base_features.profiles_dir]
                                               if self.base_features is not None else [])
        not_nli, why, skewed = profile_pair_flags(rows, np.asarray(hp, bool) & ~seen, dirs)
        return not_nli, why, skewed & (meta["pclass"].to_numpy() == "present")

    def _measured(self, meta: pd.DataFrame) -> np.ndarray:
        """Rows whose (model, method, target) has measurements (the measured-target model)."""
        out = np.zeros(len(meta), bool)
        mm = meta["mm"].astype(str).to_numpy()
        for m in np.unique(mm):
            sel = mm == m
            if m in self.seen:
                out[np.flatnonzero(sel)] = self.seen[m].is_seen(meta[sel].reset_index(drop=True))
        return out

    def _transform(self, rows: pd.DataFrame, seen: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """Features of ``rows``; with a user's ``--profiles`` directory, a target it has no
        profile for reads the predictor's own profiles (the directory adds profiles, it does
        not remove the shipped ones), and so does a *measured* target: its measured rows
        were fitted with the shipped profile, and a profile from other text moved English
        -> Greek by 3.5 points although the target's own measurements answer."""
        X = self.features.transform(rows)
        names = list(self.features.get_feature_names_out())
        if self.base_features is not None and "has_profile" in names:
            miss = np.flatnonzero((X[:, names.index("has_profile")] <= 0) | seen)
            if len(miss):
                Xb = self.base_features.transform(rows.iloc[miss].reset_index(drop=True))
                X = X.copy()
                X[miss] = Xb
        return X, names

    def _point(self, X: np.ndarray, meta: pd.DataFrame, seen: np.ndarray) -> np.ndarray:
        """Point predictions, each system's own models: the measured-target model for the
        ``seen`` rows, the unseen-target model for the others."""
        point = np.full(len(meta), np.nan)
        mm = meta["mm"].astype(str).to_numpy()
        for m in np.unique(mm):
            sel = mm == m
            if m not in self.unseen:
                raise PredictionInputError(f"no model for {m}")
            # each row through one model only: a measured target's row would be predicted
            # by the unseen-target model and overwritten (both predict row by row)
            for idx, model in ((np.flatnonzero(sel & ~seen), self.unseen[m]),
                               (np.flatnonzero(sel & seen), self.seen.get(m))):
                if len(idx):
                    point[idx] = model.predict(X[idx], meta.iloc[idx].reset_index(drop=True))
        return point

    def _half_widths(self, basis: np.ndarray, meta: pd.DataFrame
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(interval half-width, calibration group, the group's held-out coverage) of each
        row: one lookup per distinct (basis, system, class), gathered by code."""
        calib = self.card["intervals"]
        bmp: dict[tuple[str, str, str], int] = {}
        codes = np.fromiter((bmp.setdefault(key, len(bmp)) for key in zip(
            basis.tolist(), meta["mm"].tolist(), meta["pclass"].tolist())),
            dtype=np.int64, count=len(meta))
        halves, groups, covered = [], [], []
        for b, mm, pcl in bmp:
            c = calib.get(b) or calib["unseen-target"]
            h, g = intervals.quantile_for(c, mm, pcl)
            halves.append(h)
            groups.append(f"{b}:{g}")
            covered.append(intervals.coverage_for(c, mm, pcl))
        return (np.array(halves, dtype=float)[codes], np.array(groups, dtype=object)[codes],
                np.array(covered, dtype=float)[codes])


def _result(p: Mapping[str, Any]) -> dict[str, Any]:
    """One batch/query result: numbers rounded, the basis, the support flag and its reason."""
    return {"prediction": round(float(p["prediction"]), 2), "lower": round(float(p["lower"]), 2),
            "upper": round(float(p["upper"]), 2), "basis": str(p["basis"]),
            "out_of_support": bool(p["out_of_support"]), "reason": str(p["reason"]) or None,
            "pretraining": str(p["pretraining"]), "profile": bool(p["profile"]),
            **_coverage_note(p), **_pairs_note(p)}


def _coverage_note(p: Mapping[str, Any]) -> dict[str, Any]:
    """The interval group's held-out coverage, and a note when it is below
    ``intervals.COVERAGE_WARNING`` (the interval is narrower than this class's errors)."""
    cov = float(p.get("interval_coverage", float("nan")))
    if not cov == cov:
        return {}
    out: dict[str, Any] = {"interval_coverage": round(cov, 3)}
    if cov < intervals.COVERAGE_WARNING:
        out["interval_note"] = (f"intervals of this class covered {cov:.0%} of held-out "
                                "targets' scores, not 90%: expect larger errors")
    return out


#: the answer's note for a profile whose pairs look label-skewed
PAIRS_SKEWED_NOTE = ("the profile's per-source probes all predict skewed labels on its "
                     "pairs: if the pairs are not balanced across entailment / neutral / "
                     "contradiction, this prediction is too low (80% entailment pairs: "
                     "-4.2 on average on XNLI languages); profile balanced pairs")


def _pairs_note(p: Mapping[str, Any]) -> dict[str, Any]:
    """``profile_note`` when the target's profile pairs look label-skewed."""
    return {"profile_note": PAIRS_SKEWED_NOTE} if bool(p.get("pairs_skewed", False)) else {}


def default_predictor_dir() -> Path:
    """``predictor/`` inside the default models directory (:mod:`measure.knowledge.paths`)."""
    try:
        return resolve_default(MODELS) / "predictor"
    except DefaultPathNotFound as exc:
        raise FileNotFoundError(str(exc)) from None


def default_profiles_dir() -> Path | None:
    """The user's profiles directory (:func:`measure.knowledge.paths.user_profiles_dir`:
    ``$XLT_PROFILES_DIR``, else the per-user data directory, where ``xlt-measure profile``
    writes) when it exists, else None: what query, batch, recommend and the app read beside
    the shipped profiles when no ``--profiles`` is given.

    Why a default: a profile a user measured must answer without a flag on every command;
    why only beside the shipped ones (:func:`load_predictor`): it adds languages, and a
    measured target keeps the profile its rows were fitted with."""
    path = user_profiles_dir()
    return path if path.is_dir() else None


def reading_profiles(features: TransferFeatures, directory: str | Path) -> TransferFeatures:
    """A shallow copy of the fitted transformer that reads profiles from ``directory``
    (``NO_PROFILES``: none); the loaded transformer is left as it is, and the copy shares
    its fitted state."""
    profiles_root(directory)      # missing, a file or a FIFO: FileNotFoundError saying which
    out = copy.copy(features)
    out.profiles_dir = str(directory)
    return out


def load_predictor(path: str | Path | None = None, profiles: str | Path | None = None
                   ) -> Predictor:
    """Load a fitted predictor directory (checksum and type allow-list verified); None means
    the default models directory's ``predictor/``. ``profiles``: a directory of language
    profiles (``xlt-measure profile --profiles DIR``) read before the ``profiles/`` beside
    the predictor (a language without a profile in it keeps the shipped one, and the peers an
    unprofiled target is imputed from are always the shipped ones). Why beside it: a models
    directory is one unit (predictor, profiles, tables), so the same predictor gives the same
    answer in the app, the CLI and a test, whatever the working directory; a models
    directory without ``profiles/`` uses none."""
    if path is None:
        path = default_predictor_dir()
    obj, card = persist.load(path)
    if not isinstance(obj, dict) or not set(BUNDLE_PARTS) <= set(obj):
        raise persist.ModelIntegrityError(
            f"{path}: not a predictor this xlt can read (expected the parts "
            f"{', '.join(BUNDLE_PARTS)}): refit it with `xlt-predict fit`")
    sibling = Path(path).parent / "profiles"
    own = sibling if sibling.is_dir() else NO_PROFILES
    base = None
    if profiles is not None and own != NO_PROFILES and \
            Path(profiles).resolve() != sibling.resolve():
        # a user's directory adds profiles: targets it lacks (and the peers an unprofiled
        # target is imputed from) still read the predictor's own
        base = reading_profiles(obj["features"], own)
    features = reading_profiles(obj["features"], own if profiles is None else profiles)
    if profiles is not None:
        check_profiles(profiles)       # a bad --profiles DIR fails now, naming the file
    return Predictor(obj, card, features=features, base_features=base)
