"""Features of a (model, method, training configuration, target) row, as a scikit-learn transformer.

Why these features: the predictor must work for source sets and target languages that
appear in none of the training data, so every feature is a property that *any*
language has -- URIEL typological/genetic/geographic distances, data and pretraining
sizes, script overlap -- rather than an identity. The only identities are the model and
method one-hots (the user always names a model the predictor was trained on).

Missing values are never silently zero: an unknown URIEL distance is imputed with the
median of the training rows and a flag column says so. Pretraining coverage is never
imputed: it is *knowledge* per model family (``measure.knowledge.coverage``): a language missing
from a complete corpus list is absent (size 0, its own flag); "unknown" is reserved for
undocumented corpora and is flagged. A target with a model-space profile
(``measure.profile``, ``models/profiles/<model>/<code>.json``) gets the profile family;
one without gets ``has_profile = 0`` and fixed placeholders (0), never values borrowed
from other languages. Profiles with unlabelled pairs (schema 2) also hold, per XNLI source
language, how a probe trained on that source behaves on the target
(``label_free_by_source``); ``prof_src_entropy_*`` aggregate its predicted-label entropy
over the row's supervised languages -- the only profile features that vary with the
source set (why entropy: ``measure.profile``'s docstring; it ranks single sources within a
target far better than URIEL distances do).

Speed: rows are reduced to their distinct configurations, targets and (model, target)
pairs first (``rows.index_rows``), each family computes its values once per distinct
input in array operations, and distances come through a per-process cache
(``distances.pair_distances``), so tens of thousands of rows featurise in well under a
second once distances are cached.

Distances: the typological kinds use lang2vec's kNN-imputed URIEL vectors by default
(see ``TransferFeatures.typology``); genetic and geographic distances are URIEL's own.

``columns.FEATURES`` documents every column (the README prints it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from measure.knowledge.coverage import coverage, script_in_pretraining
from predictor.features.columns import (COVERAGE_COLUMNS, DIST_STATS, DISTANCE_KINDS,
                                        FEATURE_FAMILIES, GROUPS, PROFILE_COLUMNS)
from predictor.features.distances import pair_distances
from predictor.features.profiles import (SCRIPT_COVERED_UNK, find_profile, profile_code,
                                         profiles_root)
from predictor.features.rows import (RowIndex, aggregate_rows, as_rows, index_rows,
                                     masked_reduce)

# Columns whose unknown values (NaN) are imputed in transform with what fit learned; each
# has a flag column (dist_<kind>_unknown, diversity_unknown, script_unknown) that marks the
# imputed rows.
_IMPUTE_MEDIAN = ([f"dist_{k}_{s}" for k in DISTANCE_KINDS for s in DIST_STATS]
                  + [f"diversity_{k}" for k in DISTANCE_KINDS])
_IMPUTE_MEAN = ["script_shared"]


class TransferFeatures(TransformerMixin, BaseEstimator):
    """Rows (model, method, train_config, target) -> the numeric features in ``FEATURES``.

    Parameters
    ----------
    kinds : URIEL distance kinds to use (default: all of ``measure.knowledge.uriel.DISTANCE_KINDS``).
    include : keep only these feature groups (``GROUPS`` keys), families
        (``FEATURE_FAMILIES`` keys) or column names; None = all.
    typology : "knn" (default: lang2vec's kNN-imputed typology vectors, no gaps) or
        "observed" (URIEL's published definition, NaN where URIEL has no data); see
        ``measure.knowledge.uriel``. Why kNN by default: with observed vectors a few XNLI
        languages (Arabic, Urdu) have no phonology distance, the "unknown" flag then
        identifies them, and under leave-one-target-out CV the flag carries one language's
        level to another (SumEval, leave-one-target-out MAE: ridge 2.18 observed vs 1.90
        kNN); held-out targets from the long tail are even sparser. Genetic and geographic
        distances are the same in both.
    profiles_dir : the profiles folder (``profiles.profiles_root``); ``NO_PROFILES`` for none.

    Learned in ``fit``: ``impute_values_`` (medians/means used for unknowns),
    ``models_`` and ``methods_`` (one-hot categories), ``feature_names_out_``.
    """

    def __init__(self, kinds: Sequence[str] | None = None,
                 include: Sequence[str] | None = None, typology: str = "knn",
                 profiles_dir: str | None = None) -> None:
        self.kinds = kinds
        self.include = include
        self.typology = typology
        self.profiles_dir = profiles_dir

    # -- raw computation -------------------------------------------------------------------
    def _kinds(self) -> tuple[str, ...]:
        kinds = DISTANCE_KINDS if self.kinds is None else tuple(self.kinds)
        bad = [k for k in kinds if k not in DISTANCE_KINDS]
        if bad:
            raise ValueError(f"unknown URIEL distance kinds {bad}; choose from {DISTANCE_KINDS}")
        return kinds

    def raw_features(self, X: Any) -> pd.DataFrame:
        """The features before imputation (NaN where unknown), one row per input row.

        Why public: the report correlates the raw features with the score, and an unfitted
        transformer is enough for that (no imputation statistics are needed)."""
        return self._raw(X)

    def _raw(self, X: Any) -> pd.DataFrame:
        """Numeric columns with NaN for unknowns (before imputation), one row per input row."""
        out, index = self._raw_columns(X)
        frame = pd.DataFrame({c: v for c, v in out.items() if not c.startswith("__")},
                             index=index)
        frame["__model"] = out["__model"]
        frame["__method"] = out["__method"]
        return frame

    def _raw_columns(self, X: Any, uriel: bool = True) -> tuple[dict[str, np.ndarray], pd.Index]:
        """``_raw`` as ({column: array}, the rows' index); ``transform`` stacks the arrays
        it needs without a DataFrame in between. ``uriel`` False skips the URIEL distance
        and diversity columns (the costliest part), for callers that need none of them."""
        rows = as_rows(X)
        ix = index_rows(rows)
        out: dict[str, np.ndarray] = {}
        if uriel:
            out.update(self._uriel_columns(ix))
        out.update(self._size_columns(ix))
        out.update(self._coverage_columns(ix))
        out.update(self._script_columns(ix))
        out.update(self._profile_columns(ix))
        out["__model"] = ix.models
        out["__method"] = ix.methods
        return out, rows.index

    def _uriel_columns(self, ix: RowIndex) -> dict[str, np.ndarray]:
        """``distances`` (target to the supervised languages, per distinct (target,
        configuration) pair) and ``diversity`` (among the supervised languages, per
        configuration), for each URIEL kind."""
        kinds = self._kinds()
        n_cfg = len(ix.configs)
        M, W = ix.supervised, ix.weights
        Mf = M.astype(float)
        k_cfg = Mf.sum(axis=1)
        uniq, inverse = np.unique(ix.target_of_row * n_cfg + ix.config_of_row,
                                  return_inverse=True)
        pt, pc = uniq // n_cfg, uniq % n_cfg
        Mp, Wp = M[pc], W[pc]
        tgt_iso = ix.target_iso
        out: dict[str, np.ndarray] = {}
        for kind in kinds:
            Dt = pair_distances(tgt_iso, ix.source_iso, kind, self.typology)
            D = Dt[pt]                                                       # pairs x sources
            # a supervised source with a known distance; the values below read D only there
            valid = Mp & ~np.isnan(Dt)[pt]
            wsum = np.where(valid, Wp, 0).sum(axis=1)
            WD = Wp * (D if not np.isinf(Dt).any() else np.nan_to_num(D))
            wmean = np.where(valid, WD, 0).sum(axis=1) / np.maximum(wsum, 1e-12)
            cnt = valid.sum(axis=1)
            out[f"dist_{kind}_min"] = masked_reduce(D, "min", valid, cnt)[inverse]
            out[f"dist_{kind}_mean"] = masked_reduce(D, "mean", valid, cnt)[inverse]
            out[f"dist_{kind}_wmean"] = np.where(wsum > 0, wmean, np.nan)[inverse]
            out[f"dist_{kind}_unknown"] = (~valid.any(axis=1)).astype(float)[inverse]
            # diversity per configuration: mean pairwise distance among its sources,
            # as matrix products over the source mask (NaN pairs left out of the mean)
            S = pair_distances(ix.source_iso, ix.source_iso, kind, self.typology)
            known = ~np.isnan(S)
            np.fill_diagonal(known, False)
            total = ((Mf @ np.where(known, S, 0.0)) * Mf).sum(axis=1)
            count = ((Mf @ known.astype(float)) * Mf).sum(axis=1)
            div = np.where(k_cfg < 2, 0.0,
                           np.where(count > 0, total / np.maximum(count, 1), np.nan))
            out[f"diversity_{kind}"] = div[ix.config_of_row]
        if kinds:
            out["diversity_unknown"] = np.isnan(
                np.column_stack([out[f"diversity_{k}"] for k in kinds])).any(axis=1).astype(float)
        return out

    @staticmethod
    def _size_columns(ix: RowIndex) -> dict[str, np.ndarray]:
        """``sizes``: k, total training examples and the target's own training examples."""
        W, c_idx = ix.weights, ix.config_of_row
        iso_pos = {c: j for j, c in enumerate(ix.source_iso)}
        tgt_col = np.array([iso_pos.get(t, -1) for t in ix.target_iso],
                           dtype=np.int64)[ix.target_of_row]
        tgt_n = np.where(tgt_col >= 0, W[c_idx, np.maximum(tgt_col, 0)], 0.0) \
            if len(ix.source_iso) else np.zeros(ix.n)
        return {"k": ix.supervised.astype(float).sum(axis=1)[c_idx],
                "log_total_examples": np.log10(1 + W.sum(axis=1))[c_idx],
                "log_target_examples": np.log10(1 + tgt_n)}

    @staticmethod
    def _coverage_columns(ix: RowIndex) -> dict[str, np.ndarray]:
        """``pretraining`` and the script-level coverage, per (model, target): knowledge
        (``measure.knowledge.coverage``), never imputed."""
        cov_rows = []
        for m, t in ix.pairs:
            info = coverage(m, t)
            cov = info.features
            sc = script_in_pretraining(m, info.script)
            cov["target_script_in_pretraining"] = 0.0 if sc is None else sc
            cov["target_script_coverage_unknown"] = float(sc is None)
            cov_rows.append(cov)
        return {col: np.array([c[col] for c in cov_rows], dtype=float)[ix.pair_of_row]
                for col in COVERAGE_COLUMNS}

    @staticmethod
    def _script_columns(ix: RowIndex) -> dict[str, np.ndarray]:
        """Script overlap of the target and the supervised languages: a configuration x
        script incidence matrix, then one look-up per row."""
        sources, targets, c_idx = ix.sources, ix.targets, ix.config_of_row
        scripts = sorted({x.script for x in sources + targets if x.script is not None})
        sc_pos = {sc: j for j, sc in enumerate(scripts)}
        CS = np.zeros((len(ix.configs), len(scripts)), dtype=bool)
        # the script of each ISO 639-3 source: that of its first code as written
        src_script = np.array([sc_pos.get(next(x.script for x in sources if x.iso639_3 == c),
                                          -1) for c in ix.source_iso], dtype=np.int64)
        M = ix.supervised
        for j in np.flatnonzero(src_script >= 0):
            CS[M[:, j], src_script[j]] = True
        t_script = np.array([sc_pos.get(t.script, -1) if t.script else -1 for t in targets],
                            dtype=np.int64)[ix.target_of_row]
        known_row = (t_script >= 0) & CS.any(axis=1)[c_idx]
        shared = np.where(known_row, CS[c_idx, np.maximum(t_script, 0)] if len(scripts)
                          else False, np.nan).astype(float)
        return {"script_shared": shared, "script_unknown": np.isnan(shared).astype(float)}

    def _profile_columns(self, ix: RowIndex) -> dict[str, np.ndarray]:
        """The ``profile`` family, computed once per distinct (model, target, configuration)
        (placeholders and ``has_profile`` = 0 for a target without a profile)."""
        n_cfg = len(ix.configs)
        u3, inv3 = np.unique(ix.pair_of_row * n_cfg + ix.config_of_row, return_inverse=True)
        pf = self._profile_features([ix.pairs[u] for u in (u3 // n_cfg).tolist()], u3 % n_cfg,
                                    (ix.written, ix.written_weights,
                                     [profile_code(c) for c in ix.source_codes]))
        inv3 = inv3.reshape(-1)
        return {c: v[inv3] for c, v in pf.items()}

    def _profile_features(self, keys: list[tuple[str, str]], cfg: np.ndarray,
                          matrix: tuple[np.ndarray, np.ndarray, list[str]]
                          ) -> dict[str, np.ndarray]:
        """The ``profile`` group for each (model, target) of ``keys`` with configuration
        ``cfg[i]``: a row of ``matrix`` = (membership, weights, each column's profile code)
        over the configurations' source languages as written."""
        n = len(keys)
        out = {c: np.zeros(n) for c in PROFILE_COLUMNS}
        out["prof_centroid_unknown"] = np.ones(n)
        out["prof_src_unknown"] = np.ones(n)
        root = profiles_root(self.profiles_dir)
        if root is None or not root.is_dir():
            return out
        groups: dict[tuple[str, str], list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(key, []).append(i)
        member_all, weight_all, codes_all = matrix
        tables: dict[str, dict[str, dict]] = {}
        for key, rows in groups.items():
            prof, proxy = find_profile(root, *key, tables=tables)
            if prof is None:
                continue
            idx = np.asarray(rows)
            _target_profile(out, idx, prof, proxy)
            # the group's configurations as a (rows x languages) membership and weight
            # matrix: one target profile against thousands of source sets (recommend)
            ci = cfg[idx]
            used = np.flatnonzero(member_all[ci].any(axis=0))
            _source_profile(out, idx, prof, member_all[np.ix_(ci, used)],
                            weight_all[np.ix_(ci, used)], [codes_all[j] for j in used.tolist()])
        return out

    def _selected(self, names: list[str]) -> list[str]:
        if self.include is None:
            return names
        keep: list[str] = []
        for item in self.include:
            if item in FEATURE_FAMILIES:
                pats = FEATURE_FAMILIES[item]
            elif item in GROUPS:
                pats = GROUPS[item]
            else:
                pats = [item]
            for p in pats:
                if p.endswith("=*"):
                    keep += [c for c in names if c.startswith(p[:-1])]
                elif p in names:
                    keep.append(p)
                # a distance column of a kind left out by `kinds` is simply absent
                elif not any(p.startswith(f"{x}_") for x in ("dist", "diversity")):
                    raise ValueError(f"include: unknown feature or group {p!r}; groups are "
                                     f"{sorted(GROUPS)}, families {sorted(FEATURE_FAMILIES)}")
        return [c for c in names if c in set(keep)]

    # -- sklearn API ----------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None) -> "TransferFeatures":
        raw = self._raw(X)
        self.models_ = sorted(raw["__model"].unique().tolist())
        self.methods_ = sorted(raw["__method"].unique().tolist())
        imputes: dict[str, float] = {}
        for col in _IMPUTE_MEDIAN + _IMPUTE_MEAN:
            if col not in raw:
                continue
            vals = raw[col].to_numpy(dtype=float)
            known = vals[~np.isnan(vals)]
            fn = np.median if col in _IMPUTE_MEDIAN else np.mean
            # no known value at all: 0.0, and the flag column marks every row as imputed
            imputes[col] = float(fn(known)) if len(known) else 0.0
        self.impute_values_ = imputes
        numeric = [c for c in raw.columns if not c.startswith("__")]
        names = numeric + [f"model={m}" for m in self.models_] + \
            [f"method={m}" for m in self.methods_]
        self.feature_names_out_ = np.array(self._selected(names), dtype=object)
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "impute_values_")
        return self._stack(X, [str(c) for c in self.feature_names_out_])

    def transform_columns(self, X: Any, columns: Sequence[str]) -> np.ndarray:
        """``transform(X)[:, j]`` for the output ``columns`` only, in that order.

        Why: imputing an unprofiled target's profile columns featurises every source set
        for every measured target of its class (tens of thousands of rows in a Recommend
        request) and needs none of the URIEL distances, which are most of the cost."""
        check_is_fitted(self, "impute_values_")
        known = {str(c) for c in self.feature_names_out_}
        bad = [c for c in columns if c not in known]
        if bad:
            raise ValueError(f"not output columns of this transformer: {bad}")
        return self._stack(X, [str(c) for c in columns])

    def _stack(self, X: Any, names: list[str]) -> np.ndarray:
        uriel = any(n.startswith(("dist_", "diversity_")) for n in names)
        raw, _ = self._raw_columns(X, uriel=uriel)
        n = len(raw["__model"])
        cols = []
        for name in names:
            if name in self.impute_values_:
                v = np.asarray(raw[name], dtype=float)
                cols.append(np.where(np.isnan(v), float(self.impute_values_[name]), v))
            elif name.startswith("model=") and name[6:] in self.models_:
                cols.append((raw["__model"] == name[6:]).astype(float))
            elif name.startswith("method=") and name[7:] in self.methods_:
                cols.append((raw["__method"] == name[7:]).astype(float))
            else:
                cols.append(np.asarray(raw[name], dtype=float))
        if not cols:
            return np.zeros((n, 0))
        return np.column_stack(cols).astype(float, copy=False)

    def transform_frame(self, X: Any) -> pd.DataFrame:
        """``transform`` with column names (for reports and the app)."""
        rows = as_rows(X)
        return pd.DataFrame(self.transform(rows), columns=self.get_feature_names_out(),
                            index=rows.index)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "feature_names_out_")
        return np.asarray(self.feature_names_out_, dtype=object)


def _target_profile(out: dict[str, np.ndarray], idx: np.ndarray, prof: dict,
                    proxy: bool) -> None:
    """The profile columns that describe the target alone (tokenizer and the reference
    probe's label-free estimates) into rows ``idx`` of ``out``."""
    tok = prof.get("tokenizer", {})
    out["has_profile"][idx] = 1.0
    out["profile_is_proxy"][idx] = float(proxy)
    out["prof_fertility"][idx] = float(tok.get("fertility", 0.0))
    out["prof_unk_rate"][idx] = float(tok.get("unk_rate", 0.0))
    out["prof_single_char_share"][idx] = float(tok.get("single_char_share", 0.0))
    out["prof_script_covered"][idx] = float(tok.get("unk_rate", 1.0) < SCRIPT_COVERED_UNK)
    lf = prof.get("label_free")
    if lf:
        out["has_label_free"][idx] = 1.0
        out["prof_confidence"][idx] = float(lf["mean_confidence"])
        out["prof_label_entropy"][idx] = float(lf["label_entropy"])
        out["prof_atc"][idx] = float(lf["atc"])
        out["prof_doc"][idx] = float(lf["doc"])


def _source_profile(out: dict[str, np.ndarray], idx: np.ndarray, prof: dict,
                    member: np.ndarray, weight: np.ndarray, codes: list[str]) -> None:
    """The profile columns that vary with the source set (centroid distances and per-source
    probe entropies over each row's supervised languages) into rows ``idx`` of ``out``;
    ``member``/``weight``: those rows x ``codes``."""
    dist = prof.get("centroid_distance", {})
    d = np.array([float(dist[c]) if c in dist else np.nan for c in codes])
    known_d = member & ~np.isnan(d)
    has_d = known_d.any(axis=1)
    aggregate_rows(out, idx[has_d], "prof_centroid_dist", d, known_d[has_d],
                   weight[has_d], "min")
    out["prof_centroid_unknown"][idx[has_d]] = 0.0
    by_src = prof.get("label_free_by_source") or {}
    e = np.array([float(by_src[c]["label_entropy"]) if c in by_src else np.nan
                  for c in codes])
    known_e = member & ~np.isnan(e)
    n_unknown = member.sum(axis=1) - known_e.sum(axis=1)
    lf = prof.get("label_free")
    if lf:
        # a source without its own probe (not one of the reference languages, or a
        # schema-1 profile made before per-source probes): the reference (English) probe's
        # entropy stands in for it. Why not 0: every training row has all its sources'
        # probes, and 0 bits reads as "the probe collapses onto one label", the strongest
        # sign of failed transfer
        e = np.where(np.isnan(e), float(lf["label_entropy"]), e)
        known_e = member
    has_e = known_e.any(axis=1)
    aggregate_rows(out, idx[has_e], "prof_src_entropy", e, known_e[has_e],
                   weight[has_e], "max")
    out["prof_src_unknown"][idx] = (n_unknown > 0).astype(float)
