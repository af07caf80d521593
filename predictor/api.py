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

import copy
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from measure.knowledge.coverage import pretraining_class
from measure.knowledge.languages import UnknownLanguageError, resolve_target
from measure.knowledge.nli import CHANCE
from measure.knowledge.paths import MODELS, DefaultPathNotFound, resolve_default
from predictor import intervals, persist
from predictor.arrays import distinct_objects, first_seen, one_thread
from predictor.dataset import DataValidationError, canonical_config
from predictor.features import NO_PROFILES, as_rows, check_profiles, use_profiles

#: the profile columns that only unlabelled pairs (``xlt-measure profile --pairs``) give
LABEL_FREE_COLUMNS = ("has_label_free", "prof_confidence", "prof_label_entropy", "prof_atc",
                      "prof_doc", "prof_src_entropy_max", "prof_src_entropy_mean",
                      "prof_src_entropy_wmean")

MAX_COMBINATIONS = 50_000


class PredictionInputError(ValueError):
    """A prediction request the predictor cannot answer (unknown model, language, ...)."""


class Predictor:
    """Features + the unseen-target model + the measured-target memory + interval calibration
    + the model card.

    Each prediction says its ``basis``: "measured-target" when the (model, method, target)
    has training rows (the target's own mean plus a learner of the configuration's
    deviation from it), else "unseen-target" (the learner on features alone). Intervals are
    calibrated per (model, method, pretraining class) group on held-out targets (unseen
    basis) or held-out configurations (measured basis); rows outside the training support
    get a wider interval, ``out_of_support`` true and a ``reason``.
    """

    def __init__(self, bundle: Any, card: dict[str, Any]) -> None:
        from predictor.models import SeenTargetModel, ZModel
        if not isinstance(bundle, Mapping) or "features" not in bundle:
            raise persist.ModelIntegrityError(
                "this model file predates predictor v2 (no 'features'/'unseen'/'seen' parts): "
                "refit it with `xlt-predict fit`")
        self.features = bundle["features"]
        # one model per (model, method) design, chosen for it by nested CV
        self.unseen = {str(m): ZModel.from_state(st) for m, st in bundle["unseen"].items()}
        self.seen = {str(m): SeenTargetModel.from_state(st) for m, st in bundle["seen"].items()}
        self.card = card
        # the same features reading the profiles the predictor was trained with, when a
        # user's --profiles directory replaces them in ``features`` (see load_predictor)
        self.base_features: Any = None
        # derived from the fitted models on first use (see _class_transfers, _chance_floors)
        self._transfers: tuple[dict[str, Any], dict[str, float | None],
                               dict[str, list[str]]] | None = None
        self._source_classes: dict[str, set[str]] | None = None
        self._methods: dict[str, list[str]] = {}
        for m in card.get("models", []):
            self._methods.setdefault(m["model"], []).append(m["method"])

    # -- metadata ------------------------------------------------------------------------
    @property
    def models(self) -> list[dict[str, Any]]:
        """One entry per (model, method): origin, metric, task, typical n per language, targets."""
        return [dict(m) for m in self.card.get("models", [])]

    def coverage(self, basis: str = "unseen-target") -> list[dict[str, Any]]:
        """Per-group held-out coverage records of the intervals (from the card)."""
        return list(self.card["intervals"].get("coverage", {}).get(basis, []))

    def _model_info(self, model: str, method: str) -> dict[str, Any]:
        for m in self.card.get("models", []):
            if m["model"] == model and m["method"] == method:
                return m
        raise PredictionInputError(f"unknown model/method {model}/{method}")

    def feature_model(self) -> "FeatureModel":
        """The unseen-target model as a function of the feature matrix alone (for partial
        dependence, permutation importance and per-feature contributions in the app)."""
        return FeatureModel(self)

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
            resolve_target(target)
        except (DataValidationError, UnknownLanguageError) as exc:
            raise PredictionInputError(str(exc)) from None
        return {"model": rec["model"], "method": method, "train_config": tc, "target": target}

    # -- prediction -----------------------------------------------------------------------
    def _support(self, rows: pd.DataFrame, meta: pd.DataFrame, seen: np.ndarray,
                 has_profile: np.ndarray | None) -> list[str]:
        """'' or why a row is outside the training support (several reasons joined by '; ').

        Checked: k and examples per language against the design's training range; for
        targets without measurements also unknown pretraining coverage, absence from
        pretraining with a script no corpus language is written in, no model-space profile
        when every training target had one, and a URIEL featural distance to the nearest
        training target larger than any training target's to its nearest neighbour.
        """
        sup = self.card.get("support", {})
        n = len(rows)
        no_profile = ("no model-space profile for the target (every training target has "
                      "one): `xlt-measure profile`")
        # a row's reasons are (its configuration's, the missing profile's, its target's), in
        # that order; each part is worked out once per distinct key (found in array ops) and
        # the joined text once per distinct combination of parts
        from predictor.models import key_codes
        if n == 0:
            return []
        tcs = rows["train_config"].tolist()
        mm_code, mm_uniq = pd.factorize(meta["mm"].astype(str).to_numpy(dtype=object))
        sups = [sup.get(m) for m in mm_uniq.tolist()]
        has_s = np.array([bool(x) for x in sups], dtype=bool)[mm_code]
        share = np.array([(x or {}).get("profile_share", 0) >= 0.99 for x in sups],
                         dtype=bool)[mm_code]
        seen = np.asarray(seen, bool)
        # the configuration's part, per (configuration object, design)
        obj_idx, _ = distinct_objects(tcs)
        cfg_code, first = first_seen(obj_idx * len(mm_uniq) + mm_code)
        cfg_parts = [self._config_reasons(tcs[i], sups[mm_code[i]]) if sups[mm_code[i]]
                     else [] for i in first.tolist()]
        cfg_code = np.where(has_s, cfg_code, -1)
        # the target's part, per (design, ISO 639-3, class), for unmeasured targets only
        tgt_code = np.zeros(n, dtype=np.int64)            # 0: no target reasons
        tgt_parts: list[list[str]] = [[]]
        need = np.flatnonzero(has_s & ~seen)
        if len(need):
            sub = meta.iloc[need]
            kinv, kfirst = first_seen(key_codes(sub, ("mm", "target", "pclass"))[0])
            tgt_l, model_l = rows["target"].tolist(), rows["model"].tolist()
            iso_l, pcl_l = meta["target"].tolist(), meta["pclass"].tolist()
            for j in kfirst.tolist():
                i = int(need[j])
                tgt_parts.append(self._target_reasons(sups[mm_code[i]], str(model_l[i]),
                                                      str(tgt_l[i]), iso_l[i], pcl_l[i]))
            tgt_code[need] = kinv + 1
        prof = (has_s & ~seen & share & ~np.asarray(has_profile, bool)
                if has_profile is not None else np.zeros(n, bool))
        which, first = first_seen(((cfg_code + 1) * 2 + prof) * len(tgt_parts) + tgt_code)
        texts = ["; ".join((cfg_parts[cfg_code[i]] if cfg_code[i] >= 0 else [])
                           + ([no_profile] if prof[i] else []) + tgt_parts[tgt_code[i]])
                 for i in first.tolist()]
        return [texts[j] for j in which.tolist()]

    @staticmethod
    def _target_reasons(s: Mapping[str, Any], model: str, tgt: str, iso: str,
                        pcl: str) -> list[str]:
        """Why an unmeasured target is outside a design's training support (``s``)."""
        from measure.knowledge.coverage import coverage, script_in_pretraining
        from predictor.features import pair_distances
        why = []
        cov = coverage(model, tgt)
        if pcl not in s.get("pclasses", [pcl]):
            why.append(f"no training target of this model is {pcl} from pretraining "
                       f"(trained on: {', '.join(s.get('pclasses', []))})")
        if pcl == "unknown":
            why.append(f"pretraining coverage unknown ({cov.reason})")
        sip = script_in_pretraining(model, cov.script)
        if pcl == "absent" and sip is None:
            why.append("absent from pretraining, and whether the corpus covers its "
                       "script is unknown (script or corpus table unknown)")
        elif pcl == "absent" and sip == 0.0:
            why.append(f"absent from pretraining, and no language of the corpus is "
                       f"written in its script ({cov.script})")
        thr = s.get("featural_nn_max")
        if thr is not None and math.isfinite(thr) and s.get("targets"):
            dist = pair_distances([iso], list(s["targets"]), "featural")[0]
            if np.isfinite(dist).any() and float(np.nanmin(dist)) > thr:
                why.append(f"far from every training target (URIEL featural distance "
                           f"{float(np.nanmin(dist)):.2f} > {thr:.2f})")
        return why

    @staticmethod
    def _config_reasons(tc: Mapping[str, Any], s: Mapping[str, Any]) -> list[str]:
        """Why a configuration is outside a design's training support (k, examples per
        language); [] when it is inside."""
        why = []
        ns = [v for v in tc.values() if v > 0]
        k = len(ns)
        if not s["k"][0] <= k <= s["k"][1]:
            why.append(f"k = {k} outside the training range {s['k'][0]}-{s['k'][1]}")
        lo, hi = s["n_per_language"]
        if ns and (min(ns) < lo or max(ns) > hi):
            why.append(f"examples per language outside the training range {lo:,}-{hi:,}")
        return why

    def _point(self, X: np.ndarray, meta: pd.DataFrame, seen: np.ndarray) -> np.ndarray:
        """Point predictions, each design's own models: the measured-target model for the
        ``seen`` rows (:meth:`_measured`), the unseen-target model for the others."""
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

    def _impute_profile(self, rows: pd.DataFrame, X: np.ndarray, names: list[str],
                        meta: pd.DataFrame, hp: np.ndarray | None,
                        skip: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Rows without a profile, for a design whose training targets all had one.

        The profile columns of such a row are the mean of what they would be, for the same
        source configuration, on the design's measured targets of the *same pretraining
        class* (all measured targets when the class has none). Why: the profile family is
        what carries languages absent from pretraining; a global centring value (or the
        placeholder zeros) places an unprofiled absent language such as Quechua among the
        high-resource XNLI targets, 15 points above every measured absent language. The
        output still says ``profile: none`` and flags the row out of support.

        Rows whose profile has no label-free estimates (``xlt-measure profile`` without
        ``--pairs``) get only the label-free columns imputed the same way, when every peer
        has them: left as placeholder zeros (ATC 0, DoC 0) they are far outside anything the
        design was fitted on, and Basque from 400 sentences was predicted at 14 macro-F1,
        below chance, with a narrow interval. Returns (X, rows whose label-free columns
        were imputed). Peers' profiles come from ``base_features`` (the profiles the
        predictor was trained with), not from a user's ``--profiles`` directory.
        """
        from predictor.features import GROUPS
        lf_names = [c for c in LABEL_FREE_COLUMNS if c in names]
        hlf = (X[:, names.index("has_label_free")] > 0 if "has_label_free" in names
               else np.ones(len(X), bool))
        no_lf = np.zeros(len(X), bool) if hp is None else (hp & ~hlf)
        if hp is None or (hp.all() and not no_lf.any()):
            return X, np.zeros(len(X), bool)
        cols = [names.index(c) for c in GROUPS["profile"] if c in names]
        lf_cols = [names.index(c) for c in lf_names]
        sup = self.card.get("support", {})
        peers_of: dict[tuple[str, str], list[str]] = {}
        for entry in self.card.get("models", []):
            mm = f"{entry['model']}|{entry['method']}"
            for t in entry.get("targets", []):
                pcl = pretraining_class(str(t), str(entry["model"]))
                peers_of.setdefault((mm, pcl), []).append(str(t))
                peers_of.setdefault((mm, "*"), []).append(str(t))
        mm_all = meta["mm"].astype(str).to_numpy()
        pcl_all = meta["pclass"].tolist()
        # the imputed columns depend on (configuration, design, class) only: worked out once
        # per distinct key (recommend asks for thousands of source sets per target), and
        # not at all for rows whose point the class transfer replaces
        tcs = rows["train_config"].tolist()
        obj_idx, _ = distinct_objects(tcs)
        other = [c for c in rows.columns if c not in ("target", "target_iso3")]
        values = {c: rows[c].tolist() for c in other}
        skip = np.zeros(len(X), bool) if skip is None else np.asarray(skip, bool)
        key_of: dict[tuple[int, str, str], int] = {}
        row_key = np.full(len(X), -1, dtype=np.int64)
        # the peers' rows, column by column (one dict per row cost ~3 us x 100,000 rows)
        subs: dict[str, list[Any]] = {c: [] for c in other + ["target"]}
        starts: list[int] = []
        for i in np.flatnonzero((~hp | no_lf) & ~skip).tolist():
            mm = mm_all[i]
            if sup.get(mm, {}).get("profile_share", 0) < 0.99 or mm not in self.unseen:
                continue
            key = (int(obj_idx[i]), mm, str(pcl_all[i]))
            kid = key_of.get(key)
            if kid is None:
                peers = peers_of.get((mm, key[2])) or peers_of.get((mm, "*"), [])
                if not peers:
                    continue
                kid = key_of[key] = len(key_of)
                starts.append(len(subs["target"]))
                for c in other:
                    subs[c].extend([values[c][i]] * len(peers))
                subs["target"].extend(peers)
            row_key[i] = kid
        imputed_lf = np.zeros(len(X), bool)
        n_subs = len(subs["target"])
        if not n_subs:
            return X, imputed_lf
        base = self.base_features if self.base_features is not None else self.features
        # only the profile columns of the peers' rows (no URIEL distances), in ``cols`` order
        Xs = base.transform_columns(pd.DataFrame(subs), [names[c] for c in cols])
        X = X.copy()
        st = np.asarray(starts, dtype=np.int64)
        counts = np.diff(np.append(st, n_subs))
        means = np.add.reduceat(Xs, st, axis=0) / counts[:, None]
        at = {c: j for j, c in enumerate(cols)}
        all_lf = (np.minimum.reduceat(
            (Xs[:, at[names.index("has_label_free")]] > 0).astype(int), st) > 0) \
            if "has_label_free" in names and names.index("has_label_free") in at \
            else np.ones(len(st), bool)
        full = np.flatnonzero((row_key >= 0) & ~hp)
        if len(full):
            X[np.ix_(full, cols)] = means[row_key[full]]
        part = np.flatnonzero((row_key >= 0) & hp)
        if lf_cols and len(part):
            part = part[all_lf[row_key[part]]]
            X[np.ix_(part, lf_cols)] = means[np.ix_(row_key[part], [at[c] for c in lf_cols])]
            imputed_lf[part] = True
        return X, imputed_lf

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
        profile for reads the predictor's own profiles (an absent language keeps its class
        imputation: the directory adds profiles, it does not remove the shipped ones), and
        so does a *measured* target: its measured rows were fitted with the shipped
        profile, and a profile from other text moved English -> Greek by 3.5 points
        (55.0 -> 51.5, profile from UI messages) although the target's own measurements
        answer."""
        X = self.features.transform(rows)
        names = list(self.features.get_feature_names_out())
        if self.base_features is not None and "has_profile" in names:
            miss = np.flatnonzero((X[:, names.index("has_profile")] <= 0) | seen)
            if len(miss):
                Xb = self.base_features.transform(rows.iloc[miss].reset_index(drop=True))
                X = X.copy()
                X[miss] = Xb
        return X, names

    def _class_transfers(self) -> tuple[dict[str, Any], dict[str, float | None],
                                        dict[str, list[str]]]:
        """(transfers by pretraining class, present level by design, classes by design),
        from the measured-target memory of every design (:mod:`predictor.class_transfer`)."""
        if self._transfers is None:
            from predictor.class_transfer import design_levels, fit_transfers, present_level
            designs = {}
            for mm, m in self.seen.items():
                model = mm.split("|")[0]
                table = next((t for keys, t in m.means_.tables_
                              if tuple(keys) == ("mm", "target")), {})
                means = {k[len(mm) + 1:]: float(v) for k, v in table.items()
                         if k.startswith(f"{mm}|")}
                designs[mm] = design_levels(
                    means, lambda t, model=model: pretraining_class(t, model))
            self._transfers = (fit_transfers(designs),
                               {mm: present_level(lv) for mm, lv in designs.items()},
                               {mm: sorted(lv) for mm, lv in designs.items()})
        return self._transfers

    @staticmethod
    def _design_class_codes(meta: pd.DataFrame) -> tuple[np.ndarray, list[tuple[str, str]]]:
        """(code of each row's (design, pretraining class), the distinct pairs)."""
        mc, mu = pd.factorize(meta["mm"].to_numpy(dtype=object))
        pc, pu = pd.factorize(meta["pclass"].to_numpy(dtype=object))
        codes, first = first_seen(mc.astype(np.int64) * max(len(pu), 1) + pc)
        return codes, [(str(mu[mc[i]]), str(pu[pc[i]])) for i in first.tolist()]

    def _class_never_measured(self, mm: str, pcl: str) -> bool:
        """Whether design ``mm`` has a present level but no measured target of class ``pcl``."""
        _, level_of, classes_of = self._class_transfers()
        return level_of.get(mm) is not None and pcl not in classes_of.get(mm, [pcl])

    def _borrowed(self, codes: np.ndarray, pairs: list[tuple[str, str]],
                  seen: np.ndarray) -> np.ndarray:
        """Rows :meth:`_borrow_class` answers (their learner's point is replaced); ``codes``
        and ``pairs`` from :meth:`_design_class_codes`."""
        transfers = self._class_transfers()[0]
        hit = [pcl in transfers and self._class_never_measured(mm, pcl) for mm, pcl in pairs]
        if not any(hit):
            return np.zeros(len(codes), bool)
        return np.asarray(hit, bool)[codes] & ~np.asarray(seen, bool)

    def _borrow_class(self, codes: np.ndarray, pairs: list[tuple[str, str]],
                      seen: np.ndarray, point: np.ndarray,
                      reason: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Unmeasured targets of a pretraining class the design never measured.

        An absent target of a design trained on present targets only (XLM-R, T-ULRv6 on
        SumEval) is predicted from the class's position between chance and the design's
        present level, borrowed from designs that measured both classes, and its interval
        spans the donors' range. A target of unknown coverage keeps its (present-like,
        range-limited) point, but its interval reaches down to what an absent target would
        get: unknown coverage means either. With no design to borrow from, the lower bound
        reaches chance. Changes ``point`` and ``reason`` in place;
        returns (lower floor, upper ceiling) for the bounds (+inf / -inf where none applies).
        Worked out once per distinct (design, class): ``codes`` and ``pairs`` from
        :meth:`_design_class_codes`.
        """
        floor, ceil = np.full(len(codes), np.inf), np.full(len(codes), -np.inf)
        transfers, level_of, _ = self._class_transfers()
        unseen = ~np.asarray(seen, bool)
        for c, (mm, pcl) in enumerate(pairs):
            if not self._class_never_measured(mm, pcl):
                continue
            level = level_of[mm]
            sel = (codes == c) & unseen
            if not sel.any():
                continue
            tr = transfers.get(pcl)
            if tr is not None:
                point[sel] = tr.point(level)
                floor[sel], ceil[sel] = tr.bounds(level)
                _add_reason(reason, sel, f"predicted as {pcl} from pretraining: {tr.describe()}")
            elif pcl == "unknown" and "absent" in transfers:
                floor[sel] = transfers["absent"].bounds(level)[0]
                _add_reason(reason, sel, "the prediction assumes the target is in pretraining; "
                            "the lower bound is what an absent target would get")
            else:
                # no design of this predictor measured the class (e.g. one fitted on SumEval
                # alone): nothing to borrow, and nothing says the target is not near chance
                floor[sel] = CHANCE
                _add_reason(reason, sel, f"no design of this predictor measured a target "
                            f"{pcl} from pretraining: the prediction treats it like a present "
                            "one, and the lower bound reaches chance")
        return floor, ceil

    def _chance_floors(self, rows: pd.DataFrame, meta: pd.DataFrame, floor: np.ndarray,
                       reason: list[str]) -> None:
        """Lower bounds down to chance where the configuration is of a kind no training row
        had: a source language of a pretraining class no training source had (every
        shipped design was trained on the 15 XNLI languages, all present; a probe on
        Quechua text the encoder never saw is a situation the learners know nothing
        about), or fewer examples in every supervised language than the design's smallest
        per-language training size (the learners are flat below it: 50 English examples
        were predicted like 166). Worked out once per distinct (configuration, design)."""
        if not len(rows):
            return
        if self._source_classes is None:
            self._source_classes = {}
            for mm, m in self.seen.items():
                model = mm.split("|")[0]
                srcs = {k.rsplit("|", 1)[-1] for k in m.pairs_}
                self._source_classes[mm] = {pretraining_class(x, model) for x in srcs}
        sup = self.card.get("support", {})
        tcs = rows["train_config"].tolist()
        obj_idx, _ = distinct_objects(tcs)
        mm_code, mm_uniq = pd.factorize(meta["mm"].astype(str).to_numpy(dtype=object))
        combo, first = first_seen(obj_idx * len(mm_uniq) + mm_code)
        firsts = first.tolist()
        langs: set[str] = set().union(*(tcs[i].keys() for i in firsts))
        # per design: the source languages of a class its training sources never had
        odd_of: dict[str, dict[str, str]] = {}
        for mm in {str(m) for m in mm_uniq.tolist()}:
            known = self._source_classes.get(mm)
            model = mm.split("|")[0]
            cls = {lang: pretraining_class(lang, model) for lang in langs} if known else {}
            odd_of[mm] = {lang: c for lang, c in cls.items() if c not in known}
        lo_of = {str(m): sup.get(str(m), {}).get("n_per_language", [0, 0])[0]
                 for m in mm_uniq.tolist()}
        texts: list[str] = []
        for i in firsts:
            mm, tc = str(mm_uniq[mm_code[i]]), tcs[i]
            why = []
            known = self._source_classes.get(mm)
            odd_langs = odd_of[mm]
            if odd_langs and not odd_langs.keys().isdisjoint(tc):
                odd = [f"{lang} ({odd_langs[lang]})" for lang in tc
                       if lang in odd_langs and tc[lang] > 0]
                if odd:
                    why.append(f"source language {', '.join(odd)} from pretraining, while "
                               f"every training row's sources were {'/'.join(sorted(known))}: "
                               "the learners cannot tell what that costs, so the lower bound "
                               "reaches chance")
            if max(tc.values(), default=0) < lo_of[mm]:
                why.append("every supervised language has fewer examples than any training "
                           "row: the learning curve below that was not measured, so the "
                           "lower bound reaches chance")
            texts.append("; ".join(why) if why else "")
        hit = np.array([bool(t) for t in texts], dtype=bool)
        if not hit.any():
            return
        rows_hit = np.flatnonzero(hit[combo])
        floor[rows_hit] = np.minimum(floor[rows_hit], CHANCE)
        for i in rows_hit.tolist():
            text = texts[combo[i]]
            reason[i] = f"{reason[i]}; {text}" if reason[i] else text

    def _target_range(self, mm: str) -> tuple[float, float] | None:
        """(lowest, highest) mean score of the design's measured targets."""
        m = self.seen.get(str(mm))
        if m is None:
            return None
        for keys, table in m.means_.tables_:
            if tuple(keys) == ("mm", "target"):
                vals = [v for k, v in table.items() if k.startswith(f"{mm}|")]
                if vals:
                    return float(min(vals)), float(max(vals))
        return None

    def _predict_valid(self, rows: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(self._predict_columns(rows))

    def _predict_columns(self, rows: pd.DataFrame) -> dict[str, Any]:
        """:meth:`_predict_valid`'s columns as arrays (``recommend`` reads them directly)."""
        from predictor.models import row_meta
        rows = rows.reset_index(drop=True)
        meta = row_meta(rows)
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
            # the (design, pretraining class) of each row, for the class transfer below
            dc_codes, dc_pairs = self._design_class_codes(meta)
            X, imputed_lf = self._impute_profile(rows, X, names, meta, hp,
                                                 skip=self._borrowed(dc_codes, dc_pairs, seen))
            point = self._point(X, meta, seen)
        basis = np.where(seen, "measured-target", "unseen-target")
        calib = self.card["intervals"]
        # one calibration lookup per distinct (basis, design, class), gathered by code
        mm_list = meta["mm"].tolist()
        bmp: dict[tuple[str, str, str], int] = {}
        codes = np.fromiter((bmp.setdefault(key, len(bmp)) for key in zip(
            basis.tolist(), mm_list, meta["pclass"].tolist())), dtype=np.int64, count=len(rows))
        halves, groups = [], []
        for b, mm, pcl in bmp:
            c = calib.get(b) or calib["unseen-target"]
            h, g = intervals.quantile_for(c, mm, pcl)
            halves.append(h)
            groups.append(f"{b}:{g}")
        half = np.array(halves, dtype=float)[codes]
        group = np.array(groups, dtype=object)[codes]
        reason = self._support(rows, meta, seen, hp)
        _add_reason(reason, stand_in,
                    "a source language has no per-source probe in the target's profile (only "
                    "the 15 XNLI languages have one, and profiles made before schema 2 have "
                    "none): the English probe's label entropy stands in for it")
        _add_reason(reason, imputed_lf & ~seen,
                    "the target's profile has no label-free estimates (made without --pairs; "
                    "every training target's has them): its pretraining class's mean is used "
                    "for them")
        oos = np.array([bool(r) for r in reason])
        # outside the support a linear model extrapolates without limit (XLM-R on Yoruba,
        # absent from pretraining while every SumEval target is present, went below 0):
        # unmeasured targets there are kept within the range of the design's measured
        # target means
        ranges: dict[str, tuple[float, float] | None] = {}
        for i in np.flatnonzero(oos & ~seen).tolist():
            if mm_list[i] not in ranges:
                ranges[mm_list[i]] = self._target_range(mm_list[i])
            lo_hi = ranges[mm_list[i]]
            if lo_hi is not None:
                point[i] = min(max(point[i], lo_hi[0]), lo_hi[1])
        if oos.any():
            widest = {mm: intervals.widest_for_model(calib["unseen-target"], mm)
                      for mm in {mm_list[i] for i in np.flatnonzero(oos).tolist()}}
            half[oos] = [max(half[i], widest[mm_list[i]]) * intervals.OUT_OF_SUPPORT_WIDEN
                         for i in np.flatnonzero(oos).tolist()]
        floor, ceil = self._borrow_class(dc_codes, dc_pairs, seen, point, reason)
        self._chance_floors(rows, meta, floor, reason)
        pred, lo, hi = intervals.intervals(point, half)
        lo = np.clip(np.minimum(lo, floor), intervals.SCORE_MIN, intervals.SCORE_MAX)
        hi = np.clip(np.maximum(hi, ceil), intervals.SCORE_MIN, intervals.SCORE_MAX)
        return {"prediction": pred, "lower": lo, "upper": hi, "basis": basis,
                "out_of_support": np.array([bool(r) for r in reason], dtype=bool),
                "reason": reason, "interval_group": group,
                "pretraining": meta["pclass"].to_numpy(),
                "profile": hp if hp is not None else np.zeros(len(rows), bool)}

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
            for i, p in zip(where, pred):
                results[i] = _result(p)
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
                "interval_group": str(p["interval_group"]), "profile": bool(p["profile"])}

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
                resolve_target(code)
            except UnknownLanguageError as exc:
                raise PredictionInputError(str(exc)) from None
        dropped: list[str] = []
        if not include_targets:
            tiso = {resolve_target(t).iso639_3 for t in targets}
            dropped = [p for p in pool if resolve_target(p).iso639_3 in tiso]
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
        # one configuration dict per source set, shared by its T rows: the featurisation
        # and the measured-target memory key each configuration once (by object), not per row
        configs = [{c: n_per_language for c in combo} for combo in combos]
        n_rows = len(combos) * len(targets)
        rows = pd.DataFrame({"model": [model] * n_rows, "method": [method] * n_rows,
                             "train_config": [cfg for cfg in configs for _ in targets],
                             "target": targets * len(combos)})
        pred = self._predict_columns(rows)
        T = len(targets)
        P = np.asarray(pred["prediction"], dtype=float).reshape(len(combos), T)
        L = np.asarray(pred["lower"], dtype=float).reshape(len(combos), T)
        U = np.asarray(pred["upper"], dtype=float).reshape(len(combos), T)
        B = np.asarray(pred["basis"], dtype=object).reshape(len(combos), T)
        O = np.asarray(pred["out_of_support"], dtype=bool).reshape(len(combos), T)
        mean, worst = P.mean(axis=1), P.min(axis=1)
        obj = mean if objective == "mean" else worst
        order = np.argsort(-obj, kind="stable")[:max(1, top)]
        # ranking noise: two source sets for the same targets differ by more than the
        # predictor can resolve only when the gap exceeds 1.645 * sqrt(2) * the within-target
        # residual SD (held-out targets), divided by sqrt(T) when averaging over T targets
        sd = float(self.card.get("within_target_residual_sd", {}).get(f"{model}|{method}", 0.0))
        margin = 1.645 * math.sqrt(2) * sd / math.sqrt(T if objective == "mean" else 1)
        out = pd.DataFrame({"rank": np.arange(1, len(order) + 1),
                            "sources": [list(combos[i]) for i in order],
                            "objective": obj[order], "mean": mean[order], "worst": worst[order],
                            "within_noise_of_best": obj[order[0]] - obj[order] < margin,
                            "basis": [",".join(sorted(set(B[i]))) for i in order],
                            "out_of_support": [bool(O[i].any()) for i in order]})
        for j, t in enumerate(targets):
            out[t] = P[order, j]
            out[f"{t}_lower"] = L[order, j]
            out[f"{t}_upper"] = U[order, j]
        out.attrs.update({"model": model, "method": method, "objective": objective,
                          "k": k, "n_per_language": n_per_language, "targets": targets,
                          "pool": pool, "dropped_from_pool": dropped,
                          "n_combinations": n_comb, "noise_margin": margin,
                          "n_within_noise_of_best": int(out["within_noise_of_best"].sum())})
        return out


class FeatureModel:
    """``predict(X)`` of the unseen-target model from ``features.transform`` output: the
    design (model/method one-hots) and the pretraining class (coverage flags) are read back
    from the columns, so a column can be overwritten (partial dependence) or shuffled."""

    def __init__(self, predictor: Predictor) -> None:
        self.p = predictor
        self.names = [str(n) for n in predictor.features.get_feature_names_out()]

    def _meta(self, X: np.ndarray) -> pd.DataFrame:
        X = np.asarray(X, float)
        col = {n: j for j, n in enumerate(self.names)}
        models = [n.split("=", 1)[1] for n in self.names if n.startswith("model=")]
        methods = [n.split("=", 1)[1] for n in self.names if n.startswith("method=")]
        mo = np.array(models)[X[:, [col[f"model={m}"] for m in models]].argmax(axis=1)]
        me = np.array(methods)[X[:, [col[f"method={m}"] for m in methods]].argmax(axis=1)]
        pcl = np.full(len(X), "present", dtype=object)
        if "pretrain_coverage_unknown" in col:
            pcl[X[:, col["pretrain_coverage_unknown"]] > 0.5] = "unknown"
        if "target_absent_from_pretraining" in col:
            pcl[X[:, col["target_absent_from_pretraining"]] > 0.5] = "absent"
        return pd.DataFrame({"mm": np.char.add(np.char.add(mo.astype(str), "|"),
                                               me.astype(str)),
                             "pclass": pcl, "target": "", "config": [{}] * len(X)})

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, float)
        meta = self._meta(X)
        out = np.full(len(X), np.nan)
        with one_thread():
            for key in np.unique(meta["mm"]):
                sel = (meta["mm"] == key).to_numpy()
                out[sel] = self.p.unseen[str(key)].predict(X[sel],
                                                           meta[sel].reset_index(drop=True))
        return out

    def contributions(self, X: np.ndarray) -> np.ndarray | None:
        """Points per feature of the linear first stage (ridge, lasso): sd_mm * coef_j *
        standardised x_j; None when the first stage is a tree. A within-target stage adds
        :meth:`within_points` on top (together they sum to the deviation from the base)."""
        X = np.asarray(X, float)
        meta = self._meta(X)
        out = np.zeros_like(X)
        for key in np.unique(meta["mm"]):
            m = self.p.unseen[str(key)]
            if m.family not in ("ridge", "lasso"):
                return None
            sel = (meta["mm"] == key).to_numpy()
            reg = m.regs_.get("*", m.regs_.get(str(key)))
            if reg is None:
                continue
            Z = reg.named_steps["scale"].transform(X[sel])
            out[sel] = Z * reg.named_steps["reg"].coef_ * m.sd_.get(str(key), 1.0)
        return out

    def within_points(self, X: np.ndarray) -> np.ndarray | None:
        """Points the within-target stage adds to each row (sd_mm x its prediction; 0 for a
        design without the stage); None when no design has one."""
        X = np.asarray(X, float)
        meta = self._meta(X)
        out = np.zeros(len(X))
        found = False
        with one_thread():
            for key in np.unique(meta["mm"]):
                m = self.p.unseen[str(key)]
                reg = m.within_regs_.get(str(key))
                if reg is None:
                    continue
                found = True
                sel = (meta["mm"] == key).to_numpy()
                out[sel] = reg.predict(X[sel]) * m.sd_.get(str(key), 1.0)
        return out if found else None


def _result(p: Mapping[str, Any]) -> dict[str, Any]:
    """One batch/query result: numbers rounded, the basis, the support flag and its reason."""
    return {"prediction": round(float(p["prediction"]), 2), "lower": round(float(p["lower"]), 2),
            "upper": round(float(p["upper"]), 2), "basis": str(p["basis"]),
            "out_of_support": bool(p["out_of_support"]), "reason": str(p["reason"]) or None,
            "pretraining": str(p["pretraining"]), "profile": bool(p["profile"])}


def _isna(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(i.strip() for i in items if i.strip()))


def default_predictor_dir() -> Path:
    """``predictor/`` inside the default models directory (:mod:`measure.knowledge.paths`)."""
    try:
        return resolve_default(MODELS) / "predictor"
    except DefaultPathNotFound as exc:
        raise FileNotFoundError(str(exc)) from None


def _add_reason(reason: list[str], rows: np.ndarray, text: str) -> None:
    """Append ``text`` to the out-of-support reason of each row where ``rows`` is true."""
    for i in np.flatnonzero(rows):
        reason[i] = f"{reason[i]}; {text}" if reason[i] else text


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
    if not isinstance(obj, dict) or not {"features", "unseen", "seen"} <= set(obj):
        raise persist.ModelIntegrityError(
            f"{path}: unexpected model object layout (a predictor from before v2 has a "
            "single 'point' model): refit it with `xlt-predict fit`")
    p = Predictor(obj, card)
    sibling = Path(path).parent / "profiles"
    own = sibling if sibling.is_dir() else NO_PROFILES
    if profiles is not None and own != NO_PROFILES and \
            Path(profiles).resolve() != sibling.resolve():
        # a user's directory adds profiles: targets it lacks (and the peers an unprofiled
        # target is imputed from) still read the predictor's own
        p.base_features = copy.deepcopy(p.features)
        use_profiles(p.base_features, own)
    use_profiles(p.features, own if profiles is None else profiles)
    if profiles is not None:
        check_profiles(profiles)       # a bad --profiles DIR fails now, naming the file
    return p
