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

Feature families (``FEATURE_FAMILIES``) name the blocks an ablation removes at once:
URIEL distances, pretraining coverage, model-space profile, k and sizes, model/method.

Speed: rows are reduced to unique training configurations and unique (target,
configuration) pairs before any distance is computed, distances come from
``measure.knowledge.uriel`` through a per-process cache, and the aggregation is vectorised, so
tens of thousands of rows featurise in well under a second once distances are cached.

Distances: the typological kinds use lang2vec's kNN-imputed URIEL vectors by default
(see ``TransferFeatures.typology``); genetic and geographic distances are URIEL's own.

``FEATURES`` documents every column (the README prints it).
"""

from __future__ import annotations

import functools
import itertools
import math

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from measure.knowledge import uriel
from measure.knowledge.coverage import coverage, script_in_pretraining
from measure.knowledge.languages import resolve_target
from measure.knowledge.paths import MODELS, find_default
from predictor.arrays import distinct_objects

DISTANCE_KINDS: tuple[str, ...] = tuple(uriel.DISTANCE_KINDS)
DIST_STATS = ("min", "mean", "wmean")

_DIST_DOC = {
    "min": "smallest {kind} URIEL distance between the target and any supervised language "
           "(0 when the target itself is supervised)",
    "mean": "mean {kind} URIEL distance between the target and the supervised languages",
    "wmean": "{kind} URIEL distance between the target and the supervised languages, "
             "weighted by each language's number of training examples",
}


def _build_feature_docs() -> dict[str, str]:
    docs: dict[str, str] = {}
    for kind in DISTANCE_KINDS:
        for stat in DIST_STATS:
            docs[f"dist_{kind}_{stat}"] = _DIST_DOC[stat].format(kind=kind) + \
                "; unknown -> training median"
        docs[f"dist_{kind}_unknown"] = (f"1 when URIEL has no {kind} distance between the target "
                                        "and any supervised language (the dist_ values are imputed)")
        docs[f"diversity_{kind}"] = (f"source-set diversity: mean pairwise {kind} distance among "
                                     "the supervised languages (0 for a single language); "
                                     "unknown -> training median")
    docs.update({
        "diversity_unknown": "1 when some source-set diversity value was unknown and imputed",
        "k": "number of supervised (training) languages, those with n > 0",
        "log_total_examples": "log10(1 + total number of training examples over all languages)",
        "log_target_examples": "log10(1 + training examples in the target language itself); "
                               "0 in the zero-shot case",
        "target_in_pretraining": "1 when the target is in the model's pretraining corpus "
                                 "(measure.knowledge.coverage; 0 when absent or unknown)",
        "target_log_pretrain": "log10 bytes of the target in the model's pretraining corpus "
                               "(CC-100 for me5-small/xlmr/tulrv6); 0 when absent or unknown; "
                               "the corpus's smallest listed size when present but unlisted "
                               "(never a training statistic)",
        "target_size_unknown": "1 when the target's pretraining size is not listed (present but "
                               "unlisted, or coverage unknown)",
        "target_absent_from_pretraining": "1 when the target is known to be absent from the "
                                          "model's pretraining corpus (a complete list)",
        "pretrain_coverage_unknown": "1 when it is unknown whether the model saw the target "
                                     "(incomplete corpus table or unknown model)",
        "pretrain_corpus_undocumented": "1 when the model's corpus is undocumented and coverage "
                                        "rests on a stated assumption (T-ULRv6: CC-100)",
        "target_script_in_pretraining": "1 when some language of the model's corpus is written "
                                        "in the target's script (script-level table); 0 when "
                                        "none or unknown",
        "target_script_coverage_unknown": "1 when the script-level coverage is unknown (target "
                                          "script unknown, or incomplete corpus table)",
        "script_shared": "1 when some supervised language is written in the target's script; "
                         "unknown script -> training mean",
        "script_unknown": "1 when the target's script (or every source script) is unknown",
        "has_profile": "1 when a model-space profile (measure.profile) exists for the target; "
                       "0 -> every prof_ column is the placeholder 0",
        "profile_is_proxy": "1 when the profile was measured with a proxy model (PROFILE_PROXY: "
                            "xlmr/tulrv6 -> me5-small, same XLM-R sentencepiece vocabulary)",
        "prof_centroid_dist_min": "smallest cosine distance between the target's mean embedding "
                                  "and a supervised language's reference centroid (profile)",
        "prof_centroid_dist_mean": "mean of those centroid distances over the supervised languages",
        "prof_centroid_dist_wmean": "those centroid distances weighted by training examples",
        "prof_centroid_unknown": "1 when no supervised language has a reference centroid "
                                 "(or no profile): the prof_centroid_ values are 0",
        "prof_fertility": "subword pieces per whitespace word of the target text (profile)",
        "prof_unk_rate": "share of <unk> pieces in the target text (profile)",
        "prof_single_char_share": "share of pieces that are a single character (profile)",
        "prof_script_covered": "1 when the tokenizer covers the target's script: fewer than 1% "
                               "<unk> pieces (profile)",
        "has_label_free": "1 when the profile has label-free estimates (unlabelled pairs)",
        "prof_confidence": "English-trained reference probe's mean max-softmax confidence on "
                           "the target's unlabelled pairs (0-1)",
        "prof_label_entropy": "entropy (bits) of the probe's predicted-label distribution on the "
                              "target pairs (log2 3 = balanced)",
        "prof_atc": "Average Thresholded Confidence estimate of the probe's accuracy on the "
                    "target (Garg et al., 2022), 0-100",
        "prof_doc": "Difference-of-Confidences estimate of the probe's accuracy on the target "
                    "(Guillory et al., 2021): source accuracy - (source - target confidence), 0-100",
        "prof_src_entropy_max": "largest predicted-label entropy (bits) on the target's pairs "
                                "of a probe trained on one supervised language (per-source "
                                "probes of the profile; a collapsed probe -> low entropy -> "
                                "low macro-F1)",
        "prof_src_entropy_mean": "mean of those per-source entropies over the supervised "
                                 "languages that have a per-source probe",
        "prof_src_entropy_wmean": "those per-source entropies weighted by training examples",
        "prof_src_unknown": "1 when some supervised language has no per-source probe (not one "
                            "of the 15 XNLI languages), or the profile has no per-source "
                            "estimates (no pairs, schema 1, no profile); a source without "
                            "its own probe counts with the reference (English) probe's "
                            "entropy; 0 when the profile has no pairs (the predictor then "
                            "uses its pretraining class's mean)",
        "model=<id>": "one-hot of the multilingual model (learned categories)",
        "method=<id>": "one-hot of the training method, e.g. finetune or probe",
    })
    return docs


FEATURES: dict[str, str] = _build_feature_docs()

# Feature groups that `include` may name (a whole group, or a single column name).
GROUPS = {"distances": [f"dist_{k}_{s}" for k in DISTANCE_KINDS for s in DIST_STATS]
          + [f"dist_{k}_unknown" for k in DISTANCE_KINDS],
          "diversity": [f"diversity_{k}" for k in DISTANCE_KINDS] + ["diversity_unknown"],
          "sizes": ["k", "log_total_examples", "log_target_examples"],
          "pretraining": ["target_in_pretraining", "target_log_pretrain",
                          "target_size_unknown", "target_absent_from_pretraining",
                          "pretrain_coverage_unknown", "pretrain_corpus_undocumented"],
          "script": ["target_script_in_pretraining", "target_script_coverage_unknown",
                     "script_shared", "script_unknown"],
          "profile": ["has_profile", "profile_is_proxy", "prof_centroid_dist_min",
                      "prof_centroid_dist_mean", "prof_centroid_dist_wmean",
                      "prof_centroid_unknown", "prof_fertility", "prof_unk_rate",
                      "prof_single_char_share", "prof_script_covered", "has_label_free",
                      "prof_confidence", "prof_label_entropy", "prof_atc", "prof_doc",
                      "prof_src_entropy_max", "prof_src_entropy_mean", "prof_src_entropy_wmean",
                      "prof_src_unknown"],
          "identity": ["model=*", "method=*"]}

# Feature families for ablations: family -> its column names (``model=*``-style patterns for
# the one-hots). ``include`` accepts a family name as well as a group or column name.
FAMILY_GROUPS: dict[str, tuple[str, ...]] = {
    "uriel": ("distances", "diversity"),        # URIEL typological/genetic/geographic
    "coverage": ("pretraining", "script"),       # pretraining + script coverage (knowledge)
    "profile": ("profile",),                     # measured in the model's own space
    "sizes": ("sizes",),                         # k and data sizes
    "identity": ("identity",),                   # model / method one-hots
}
FEATURE_FAMILIES: dict[str, list[str]] = {
    fam: [c for g in groups for c in GROUPS[g]] for fam, groups in FAMILY_GROUPS.items()}

# Models whose profiles may stand in for another model's (same tokenizer vocabulary; the
# centroid and label-free values are then a related model's view). Flagged by
# ``profile_is_proxy``.
PROFILE_PROXY: dict[str, str] = {"xlmr": "me5-small", "tulrv6": "me5-small"}

# Columns whose unknown values (NaN) are imputed in transform with what fit learned; each
# has a flag column (dist_<kind>_unknown, diversity_unknown, target_size_unknown,
# script_unknown) that marks the imputed rows.
_IMPUTE_MEDIAN = ([f"dist_{k}_{s}" for k in DISTANCE_KINDS for s in DIST_STATS]
                  + [f"diversity_{k}" for k in DISTANCE_KINDS])
_IMPUTE_MEAN = ["script_shared"]


COVERAGE_COLUMNS = GROUPS["pretraining"] + ["target_script_in_pretraining",
                                             "target_script_coverage_unknown"]
PROFILE_COLUMNS = GROUPS["profile"]
# A tokenizer "covers" a script when fewer than this share of a text's pieces are <unk>
# (XLM-R's sentencepiece has no byte fallback: an unseen character becomes <unk>).
SCRIPT_COVERED_UNK = 0.01


def _config_matrix(configs: Sequence[Mapping[str, float]]
                   ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(membership, weights, the registry code of each column) of ``configs``: one column
    per language key as written (two keys of one language stay two columns, as two entries
    of a configuration count twice)."""
    keys = sorted({lang for c in configs for lang in c})
    col = {k: j for j, k in enumerate(keys)}
    member = np.zeros((len(configs), len(keys)), bool)
    weight = np.zeros((len(configs), len(keys)))
    for r, c in enumerate(configs):
        for lang, w in c.items():
            member[r, col[lang]] = True
            weight[r, col[lang]] = float(w)
    return member, weight, [_canonical_code(k) for k in keys]


def _aggregate_rows(out: dict[str, np.ndarray], idx: np.ndarray, prefix: str,
                    values: np.ndarray, mask: np.ndarray, weight: np.ndarray,
                    extreme: str) -> None:
    """``prefix``_``extreme`` ('min' or 'max'), _mean and _wmean over the masked languages
    of each row into rows ``idx`` of ``out`` (every row has at least one masked language)."""
    if not len(idx):
        return
    v = np.where(mask, values[None, :], 0.0)
    ext = np.where(mask, values[None, :], np.inf if extreme == "min" else -np.inf)
    out[f"{prefix}_{extreme}"][idx] = ext.min(axis=1) if extreme == "min" else ext.max(axis=1)
    out[f"{prefix}_mean"][idx] = v.sum(axis=1) / mask.sum(axis=1)
    w = np.where(mask, weight, 0.0)
    out[f"{prefix}_wmean"][idx] = (v * w).sum(axis=1) / w.sum(axis=1)


@functools.lru_cache(maxsize=16384)
def _canonical_code(code: str) -> str:
    """The registry's dataset code of a language ('swh' -> 'sw'), as profiles key sources.

    Memoised: ``recommend`` featurises thousands of source sets over the same few codes."""
    try:
        return resolve_target(code).code
    except ValueError:
        return code


_PROFILE_CACHE: dict[tuple[str, str], tuple[float, dict[str, dict]]] = {}


class ProfileError(ValueError):
    """A language profile file that cannot be read as one (the message names file and field)."""


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def check_profile(prof: Any, where: Path | str) -> dict:
    """The fields the features read, checked: a hand-edited or truncated profile fails here,
    naming the file and the field, instead of deep inside a prediction."""
    def bad(field: str, why: str) -> ProfileError:
        return ProfileError(f"profile {where}: {field} {why}; rebuild it with "
                            "'xlt-measure profile'")
    if not isinstance(prof, dict):
        raise bad("the file", "is not a JSON object")
    for code in ("language", "iso639_3"):
        if prof.get(code) is not None and not isinstance(prof[code], str):
            raise bad(code, "must be a language code (text)")
    tok = prof.get("tokenizer", {})
    if not isinstance(tok, dict):
        raise bad("tokenizer", "must be an object")
    for k in ("fertility", "unk_rate", "single_char_share"):
        if k in tok and not _number(tok[k]):
            raise bad(f"tokenizer.{k}", f"must be a finite number, got {tok[k]!r}")
    dist = prof.get("centroid_distance", {})
    if not isinstance(dist, dict) or not all(_number(v) for v in dist.values()):
        raise bad("centroid_distance", "must map language codes to finite numbers")
    lf = prof.get("label_free")
    if lf is not None:
        if not isinstance(lf, dict):
            raise bad("label_free", "must be an object or null")
        for k in ("mean_confidence", "label_entropy", "atc", "doc"):
            if not _number(lf.get(k)):
                raise bad(f"label_free.{k}", f"must be a finite number, got {lf.get(k)!r}")
    by_src = prof.get("label_free_by_source")
    if by_src is not None:
        if not isinstance(by_src, dict):
            raise bad("label_free_by_source", "must be an object or null")
        for src, st in by_src.items():
            if not isinstance(st, dict) or not _number(st.get("label_entropy")):
                raise bad(f"label_free_by_source.{src}.label_entropy", "must be a finite number")
    return prof


def check_profiles(root: str | Path | None) -> int:
    """Read and check every profile under ``root`` (``root/<model>/*.json``) now, so that a
    bad ``--profiles DIR`` fails at load time; returns how many profiles were read."""
    if root in (None, NO_PROFILES) or not Path(root).is_dir():
        return 0
    return sum(len({id(v) for v in _profiles_for(Path(root), d.name).values()})
               for d in sorted(Path(root).iterdir()) if d.is_dir())


def _profiles_for(root: Path, model: str) -> dict[str, dict]:
    """{code and ISO 639-3 code: profile} of ``root/model``, re-read when the folder changes."""
    folder = root / model
    if not folder.is_dir():
        return {}
    stamp = max([folder.stat().st_mtime] + [f.stat().st_mtime for f in folder.glob("*.json")])
    key = (str(folder.resolve()), model)
    hit = _PROFILE_CACHE.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    import json
    table: dict[str, dict] = {}
    for f in sorted(folder.glob("*.json")):
        if f.name.startswith("_"):
            continue
        try:
            prof = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ProfileError(f"profile {f} is not valid JSON ({exc}); rebuild it with "
                               "'xlt-measure profile'") from None
        check_profile(prof, f)
        for code in (prof.get("language"), prof.get("iso639_3")):
            if code:
                table.setdefault(str(code), prof)
    _PROFILE_CACHE[key] = (stamp, table)
    return table


def find_profile(root: Path, model: str, target: str,
                 tables: dict[str, dict[str, dict]] | None = None) -> tuple[dict | None, bool]:
    """(profile or None, measured with a proxy model?) for ``target`` under ``root``.

    Looks under ``root/model`` first, then ``root/PROFILE_PROXY[model]``; the target is
    matched by its code as given, its registry code and its ISO 639-3 code. ``tables``:
    a {model: profiles} memo for several look-ups in one request (each model's folder is
    then checked for changes once, not once per target).
    """
    try:
        lang = resolve_target(target)
        codes = [target, lang.code, lang.iso639_3]
    except ValueError:
        codes = [target]
    for m, proxy in ((model, False), (PROFILE_PROXY.get(model), True)):
        if not m:
            continue
        if tables is None:
            table = _profiles_for(root, m)
        else:
            table = tables[m] if m in tables else tables.setdefault(m, _profiles_for(root, m))
        for c in codes:
            if c in table:
                return table[c], proxy
    return None, False


# -- distance cache ------------------------------------------------------------------------
_PAIR_CACHE: dict[tuple[str, str, str, str], float] = {}
_PAIR_CACHE_MAX = 500_000  # (typology, kind, a, b) distances; ~60 MB at the bound, then reset


def pair_distances(targets: Sequence[str], sources: Sequence[str], kind: str,
                   typology: str = "knn") -> np.ndarray:
    """|targets| x |sources| URIEL distances (ISO 639-3 codes), NaN when unknown, cached.

    Missing pairs are computed in one vectorised ``uriel.distances_for_pairs`` call for
    every kind at once (the other kinds are asked for next anyway). The cache is bounded:
    a long-lived app or batch process that sees many languages resets it at the bound.
    """
    if len(_PAIR_CACHE) > _PAIR_CACHE_MAX:
        _PAIR_CACHE.clear()
    missing = sorted({(t, s) for t in targets for s in sources
                      if (typology, kind, t, s) not in _PAIR_CACHE})
    if missing:
        a, b = [m[0] for m in missing], [m[1] for m in missing]
        table = uriel.distances_for_pairs(a, b, DISTANCE_KINDS, typology=typology)
        for k in DISTANCE_KINDS:
            for t, s, d in zip(a, b, table[k].to_numpy(dtype=float)):
                _PAIR_CACHE[(typology, k, t, s)] = d
                _PAIR_CACHE[(typology, k, s, t)] = d
    out = np.empty((len(targets), len(sources)))
    for i, t in enumerate(targets):
        for j, s in enumerate(sources):
            out[i, j] = _PAIR_CACHE[(typology, kind, t, s)]
    return out


# -- input handling -------------------------------------------------------------------------
def as_rows(X: Any) -> pd.DataFrame:
    """A DataFrame (as is), or a list of dicts / one dict -> DataFrame of prediction rows."""
    if isinstance(X, pd.DataFrame):
        return X
    if isinstance(X, Mapping):
        return pd.DataFrame([X])
    if isinstance(X, Iterable):
        return pd.DataFrame(list(X))
    raise TypeError(f"expected a DataFrame or rows (dicts), got {type(X).__name__}")


def _config_key(tc: Any) -> tuple[tuple[str, float], ...]:
    if type(tc) is dict:
        # the common case, without the generic conversions' overhead (same result)
        items = [(k if type(k) is str else str(k), v if type(v) is float else float(v))
                 for k, v in tc.items() if v and v > 0]
        items.sort()
        return tuple(items)
    if isinstance(tc, str):
        import json
        tc = json.loads(tc)
    if not isinstance(tc, Mapping):
        raise ValueError(f"train_config must be a mapping {{language: n}}, got {tc!r}")
    return tuple(sorted((str(k), float(v)) for k, v in tc.items() if v and v > 0))


def _config_index(tcs: list[Any]) -> tuple[np.ndarray, list[tuple[tuple[str, float], ...]]]:
    """(index of each row's distinct configuration, the distinct ``_config_key`` tuples in
    order of first appearance). A configuration object seen before (``recommend`` shares
    one dict between a source set's targets) is not keyed again: ``tcs`` holds every object
    until the loop ends, so ``id`` is stable."""
    cfg_index: dict[tuple, int] = {}
    obj_idx, first = distinct_objects(tcs)
    of_obj = np.empty(len(first), dtype=np.int64)
    for j, i in enumerate(first.tolist()):
        key = _config_key(tcs[i])
        if not key:
            raise ValueError(f"row {i}: train_config has no language with n > 0")
        of_obj[j] = cfg_index.setdefault(key, len(cfg_index))
    return of_obj[obj_idx], list(cfg_index)


def _nan_safe(a: np.ndarray, fn: str, valid: np.ndarray | None = None,
              cnt: np.ndarray | None = None) -> np.ndarray:
    """Row-wise nanmin/nanmean without warnings for all-NaN rows (``valid``/``cnt``: the
    not-NaN mask and its row counts, when the caller has them)."""
    if valid is None:
        valid = ~np.isnan(a)
    if cnt is None:
        cnt = valid.sum(axis=1)
    if fn == "min":
        res = np.where(valid, a, np.inf).min(axis=1)
    else:
        res = np.where(valid, a, 0.0).sum(axis=1) / np.maximum(cnt, 1)
    return np.where(cnt > 0, res, np.nan)


class TransferFeatures(TransformerMixin, BaseEstimator):
    """Rows (model, method, train_config, target) -> the numeric features in ``FEATURES``.

    Parameters
    ----------
    kinds : URIEL distance kinds to use (default: all of ``measure.knowledge.uriel.DISTANCE_KINDS``).
    include : keep only these feature groups (``GROUPS`` keys) or column names; None = all.
    typology : "knn" (default: lang2vec's kNN-imputed typology vectors, no gaps) or
        "observed" (URIEL's published definition, NaN where URIEL has no data); see
        ``measure.knowledge.uriel``. Why kNN by default: with observed vectors a few XNLI languages
        (Arabic, Urdu) have no phonology distance, the "unknown" flag then identifies
        them, and under leave-one-target-out CV the flag carries one language's level to
        another (SumEval, leave-one-target-out MAE: ridge 2.18 observed vs 1.90 kNN, random
        forest 2.09 vs 1.94); held-out targets from the long tail are even sparser. Genetic and geographic distances are the same in both.

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

    # -- profiles ----------------------------------------------------------------------------
    def _profiles_root(self) -> Path | None:
        """``profiles_dir``, else ``<models>/profiles`` (``measure.knowledge.paths.MODELS``), else None."""
        given = getattr(self, "profiles_dir", None)   # models pickled before the parameter
        if given == NO_PROFILES:
            return None
        if given is not None:
            path = Path(given)
            if not path.is_dir():
                raise FileNotFoundError(f"profiles directory {path} does not exist: pass a "
                                        "directory made by 'xlt-measure profile --profiles DIR'")
            return path
        models = find_default(MODELS)
        return None if models is None else models / "profiles"

    def _profile_features(self, keys: list[tuple[str, str]],
                          configs: Sequence[Any], cfg: np.ndarray | None = None,
                          matrix: tuple[np.ndarray, np.ndarray, list[str]] | None = None
                          ) -> dict[str, np.ndarray]:
        """The ``profile`` group for each ((model, target), train_config) of ``keys``/``configs``.

        ``cfg``: row i's configuration is ``configs[cfg[i]]`` (distinct configurations, as
        mappings or ``_config_key`` tuples); without it, ``configs`` has one per row.
        ``matrix``: ``_config_matrix(configs)`` when the caller has it already."""
        n = len(keys)
        if cfg is None:
            cfg = np.arange(n)
        out = {c: np.zeros(n) for c in PROFILE_COLUMNS}
        out["prof_centroid_unknown"] = np.ones(n)
        out["prof_src_unknown"] = np.ones(n)
        root = self._profiles_root()
        if root is None or not root.is_dir():
            return out
        groups: dict[tuple[str, str], list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(key, []).append(i)
        # every distinct configuration's (membership, weight) row once; a group reads its rows
        # and the columns of the languages its configurations name (the same matrix as
        # ``_config_matrix`` of the group's configurations, built once for all groups)
        member_all, weight_all, codes_all = matrix if matrix is not None else _config_matrix(
            [dict(c) if not isinstance(c, Mapping) else c for c in configs])
        tables: dict[str, dict[str, dict]] = {}
        for key, rows in groups.items():
            prof, proxy = find_profile(root, *key, tables=tables)
            if prof is None:
                continue
            idx = np.asarray(rows)
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
            # the group's configurations as a (rows x languages) membership and weight matrix:
            # one target profile against thousands of source sets (recommend) in array ops
            ci = cfg[idx]
            used = np.flatnonzero(member_all[ci].any(axis=0))
            member, weight = member_all[np.ix_(ci, used)], weight_all[np.ix_(ci, used)]
            codes = [codes_all[j] for j in used.tolist()]
            dist = prof.get("centroid_distance", {})
            d = np.array([float(dist[c]) if c in dist else np.nan for c in codes])
            known_d = member & ~np.isnan(d)
            has_d = known_d.any(axis=1)
            _aggregate_rows(out, idx[has_d], "prof_centroid_dist", d, known_d[has_d],
                            weight[has_d], "min")
            out["prof_centroid_unknown"][idx[has_d]] = 0.0
            by_src = prof.get("label_free_by_source") or {}
            e = np.array([float(by_src[c]["label_entropy"]) if c in by_src else np.nan
                          for c in codes])
            known_e = member & ~np.isnan(e)
            n_unknown = member.sum(axis=1) - known_e.sum(axis=1)
            if lf:
                # a source without its own probe (not one of the reference languages, or a
                # schema-1 profile made before per-source probes): the reference (English)
                # probe's entropy stands in for it. Why not 0: every training row has all its
                # sources' probes, and 0 bits reads as "the probe collapses onto one label",
                # the strongest sign of failed transfer
                e = np.where(np.isnan(e), float(lf["label_entropy"]), e)
                known_e = member
            has_e = known_e.any(axis=1)
            _aggregate_rows(out, idx[has_e], "prof_src_entropy", e, known_e[has_e],
                            weight[has_e], "max")
            out["prof_src_unknown"][idx] = (n_unknown > 0).astype(float)
        return out

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
        rows = as_rows(X)
        out, index = self._raw_columns(rows)
        frame = pd.DataFrame({c: v for c, v in out.items() if not c.startswith("__")},
                             index=index)
        frame["__model"] = rows["model"].astype(str).to_numpy() if "model" in rows else ""
        frame["__method"] = rows["method"].astype(str).to_numpy() if "method" in rows else ""
        return frame

    def _raw_columns(self, X: Any, uriel: bool = True) -> tuple[dict[str, np.ndarray], pd.Index]:
        """``_raw`` as ({column: array}, the rows' index); ``transform`` stacks the arrays
        it needs without a DataFrame in between. ``uriel`` False skips the URIEL distance
        and diversity columns (the costliest part), for callers that need none of them."""

        rows = as_rows(X)
        for col in ("train_config", "target"):
            if col not in rows.columns:
                raise ValueError(f"prediction rows need a {col!r} column")
        n = len(rows)
        # unique configurations and targets
        c_idx, configs = _config_index(rows["train_config"].tolist())
        tgt_str = [str(t) for t in rows["target"].tolist()]
        t_idx, tgt_uniq = pd.factorize(np.array(tgt_str, dtype=object))
        t_idx = t_idx.astype(np.int64)
        targets = [resolve_target(t) for t in tgt_uniq.tolist()]
        # every (configuration, language as written, n) once, flat: the matrices below are
        # filled from these arrays instead of per-configuration loops
        pairs = list(itertools.chain.from_iterable(configs))
        flat_lang = [lang for lang, _ in pairs]
        flat_cnt = np.array([cnt for _, cnt in pairs], dtype=float)
        flat_cfg = np.repeat(np.arange(len(configs)),
                             np.fromiter(map(len, configs), dtype=np.int64, count=len(configs)))
        src_codes = sorted(set(flat_lang))
        src_pos = {c: j for j, c in enumerate(src_codes)}
        flat_src = np.fromiter(map(src_pos.__getitem__, flat_lang), dtype=np.int64,
                               count=len(flat_lang))
        sources = [resolve_target(c) for c in src_codes]

        # configuration x source weights (n examples), aggregated per ISO 639-3 code (added
        # in the configurations' order, as a loop of += would)
        src_iso = sorted({s.iso639_3 for s in sources})
        iso_pos = {c: j for j, c in enumerate(src_iso)}
        src_to_iso = np.array([iso_pos[s.iso639_3] for s in sources], dtype=np.int64)
        W = np.zeros((len(configs), len(src_iso)))
        np.add.at(W, (flat_cfg, src_to_iso[flat_src]), flat_cnt)
        # the same as languages are written (``_config_matrix`` of all configurations)
        as_written = np.zeros((len(configs), len(src_codes)), bool)
        as_written[flat_cfg, flat_src] = True
        weight_written = np.zeros((len(configs), len(src_codes)))
        weight_written[flat_cfg, flat_src] = flat_cnt
        M = W > 0
        Mf = M.astype(float)
        k_cfg = Mf.sum(axis=1)
        tgt_iso = [t.iso639_3 for t in targets]

        # unique (target, config) pairs
        pair_codes = t_idx * len(configs) + c_idx
        uniq, inverse = np.unique(pair_codes, return_inverse=True)
        pt, pc = uniq // len(configs), uniq % len(configs)
        out: dict[str, np.ndarray] = {}
        kinds = self._kinds() if uriel else ()
        Mp, Wp = M[pc], W[pc]
        for kind in kinds:
            Dt = pair_distances(tgt_iso, src_iso, kind, self.typology)   # targets x sources
            D = Dt[pt]                                                       # pairs x sources
            # a supervised source with a known distance; the values below read D only there
            # (where it equals the masked matrix np.where(Mp, D, nan) they were defined on)
            valid = Mp & ~np.isnan(Dt)[pt]
            wsum = np.where(valid, Wp, 0).sum(axis=1)
            WD = Wp * (D if not np.isinf(Dt).any() else np.nan_to_num(D))
            wmean = np.where(valid, WD, 0).sum(axis=1) / np.maximum(wsum, 1e-12)
            cnt = valid.sum(axis=1)
            out[f"dist_{kind}_min"] = _nan_safe(D, "min", valid, cnt)[inverse]
            out[f"dist_{kind}_mean"] = _nan_safe(D, "mean", valid, cnt)[inverse]
            out[f"dist_{kind}_wmean"] = np.where(wsum > 0, wmean, np.nan)[inverse]
            out[f"dist_{kind}_unknown"] = (~valid.any(axis=1)).astype(float)[inverse]
            # diversity per configuration: mean pairwise distance among its sources,
            # as matrix products over the source mask (NaN pairs left out of the mean)
            S = pair_distances(src_iso, src_iso, kind, self.typology)
            known = ~np.isnan(S)
            np.fill_diagonal(known, False)
            total = ((Mf @ np.where(known, S, 0.0)) * Mf).sum(axis=1)
            count = ((Mf @ known.astype(float)) * Mf).sum(axis=1)
            div = np.where(k_cfg < 2, 0.0,
                           np.where(count > 0, total / np.maximum(count, 1), np.nan))
            out[f"diversity_{kind}"] = div[c_idx]
        if kinds:
            out["diversity_unknown"] = np.isnan(
                np.column_stack([out[f"diversity_{k}"] for k in kinds])).any(axis=1).astype(float)

        # sizes
        total_cfg = W.sum(axis=1)
        out["k"] = k_cfg[c_idx]
        out["log_total_examples"] = np.log10(1 + total_cfg)[c_idx]
        tgt_col = np.array([iso_pos.get(t, -1) for t in tgt_iso], dtype=np.int64)[t_idx]
        tgt_n = np.where(tgt_col >= 0, W[c_idx, np.maximum(tgt_col, 0)], 0.0) \
            if len(src_iso) else np.zeros(n)
        out["log_target_examples"] = np.log10(1 + tgt_n)

        # pretraining coverage of the target, per (model, target): knowledge, never imputed
        model_str = [str(m) for m in rows["model"].tolist()] if "model" in rows else [""] * n
        m_idx, m_uniq = pd.factorize(np.array(model_str, dtype=object))
        mt_code, mt_first = np.unique(m_idx.astype(np.int64) * max(len(tgt_uniq), 1) + t_idx,
                                      return_index=True)
        mt_idx = np.searchsorted(mt_code, m_idx.astype(np.int64) * max(len(tgt_uniq), 1)
                                 + t_idx)
        mt_index = {(model_str[i], tgt_str[i]): j for j, i in enumerate(mt_first.tolist())}
        cov_rows = []
        for m, t in mt_index:
            info = coverage(m, t)
            cov = info.features
            sc = script_in_pretraining(m, info.script)
            cov["target_script_in_pretraining"] = 0.0 if sc is None else sc
            cov["target_script_coverage_unknown"] = float(sc is None)
            cov_rows.append(cov)
        for col in COVERAGE_COLUMNS:
            out[col] = np.array([c[col] for c in cov_rows], dtype=float)[mt_idx]

        # script overlap: config x script incidence, then one lookup per row
        scripts = sorted({x.script for x in sources + targets if x.script is not None})
        sc_pos = {sc: j for j, sc in enumerate(scripts)}
        CS = np.zeros((len(configs), len(scripts)), dtype=bool)
        src_script = np.array([sc_pos.get(next(x.script for x in sources if x.iso639_3 == c),
                                          -1) for c in src_iso], dtype=np.int64)
        for j in np.flatnonzero(src_script >= 0):
            CS[M[:, j], src_script[j]] = True
        t_script = np.array([sc_pos.get(t.script, -1) if t.script else -1 for t in targets],
                            dtype=np.int64)[t_idx]
        known_row = (t_script >= 0) & CS.any(axis=1)[c_idx]
        shared = np.where(known_row, CS[c_idx, np.maximum(t_script, 0)] if len(scripts)
                          else False, np.nan).astype(float)
        out["script_shared"] = shared
        out["script_unknown"] = np.isnan(shared).astype(float)

        # model-space profile of the target (placeholders + has_profile = 0 without one)
        triple = mt_idx * len(configs) + c_idx
        u3, inv3 = np.unique(triple, return_inverse=True)
        mt_keys = list(mt_index)
        pf = self._profile_features([mt_keys[u] for u in (u3 // len(configs)).tolist()],
                                    configs, u3 % len(configs),
                                    (as_written, weight_written,
                                     [_canonical_code(c) for c in src_codes]))
        inv3 = inv3.reshape(-1)
        out.update({c: v[inv3] for c, v in pf.items()})
        out["__model"] = np.array(model_str, dtype=object)
        out["__method"] = (np.array([str(m) for m in rows["method"].tolist()], dtype=object)
                           if "method" in rows else np.full(n, "", dtype=object))
        return out, rows.index

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


def describe(name: str) -> str:
    """The documentation of a feature column (one-hots resolve to their pattern)."""
    if name in FEATURES:
        return FEATURES[name]
    for prefix in ("model=", "method="):
        if name.startswith(prefix):
            return FEATURES[prefix + "<id>"] + f" ({name})"
    raise KeyError(f"undocumented feature {name!r}")


#: ``profiles_dir`` value meaning "this models directory has no profiles": no fallback search.
NO_PROFILES = "<none>"


def use_profiles(estimator: Any, profiles_dir: str | Path | None) -> int:
    """Point every ``TransferFeatures`` inside a (fitted) estimator at ``profiles_dir``.

    Why: a pipeline is fitted once with the default profiles, while ``xlt-predict batch
    --profiles DIR`` (or the app) must read a user's profiles at prediction time without
    refitting. Walks Pipelines, ColumnTransformers, meta-estimators and lists of them.
    Returns how many transformers were updated; fails early on a missing directory.
    """
    if profiles_dir not in (None, NO_PROFILES) and not Path(profiles_dir).is_dir():
        raise FileNotFoundError(f"profiles directory {profiles_dir} does not exist: pass a "
                                "directory made by 'xlt-measure profile --profiles DIR'")
    seen: set[int] = set()

    def walk(obj: Any) -> int:
        if id(obj) in seen:
            return 0
        seen.add(id(obj))
        if isinstance(obj, TransferFeatures):
            obj.profiles_dir = None if profiles_dir is None else str(profiles_dir)
            return 1
        if isinstance(obj, (list, tuple)):
            return sum(walk(x) for x in obj)
        if isinstance(obj, dict):
            return sum(walk(x) for x in obj.values())
        if isinstance(obj, BaseEstimator):
            return sum(walk(v) for k, v in vars(obj).items() if not k.startswith("__"))
        return 0

    return walk(estimator)
