"""How numbers, intervals and target classes look wherever the predictor writes them (card
tables, the report, the app), so one figure reads the same on every page."""

from __future__ import annotations

import math
from typing import Any

#: what a missing or non-finite number prints as
MISSING = "–"

#: one colour per target class, in the report's figures and the app's charts
CLASS_COLOURS: dict[str, str] = {"absent": "#7570b3", "xnli-low": "#d95f02", "high": "#1b9e77"}


def number(x: Any, nd: int = 2, sign: bool = False) -> str:
    """``x`` with ``nd`` decimals (``sign``: always with + or -); :data:`MISSING` for None,
    NaN or infinity."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return MISSING
    return f"{x:+.{nd}f}" if sign else f"{x:.{nd}f}"


def signed(x: Any, nd: int = 2) -> str:
    """:func:`number` with a sign: an effect or a difference."""
    return number(x, nd, sign=True)


def interval(lo: Any, hi: Any, nd: int = 2) -> str:
    """'[-0.12, +0.34]': a confidence interval of an effect."""
    return f"[{signed(lo, nd)}, {signed(hi, nd)}]"


# -- words for internal names ------------------------------------------------------------------
# Why here: the card's tables, ``xlt-predict evaluate`` and the app's pages name the same
# protocols, baselines, fitted specs and features; one mapping keeps every page in the same
# words, and the internal names stay what the card stores.

#: validation protocols (the card's ``protocol``)
PROTOCOL_LABELS: dict[str, str] = {
    "unseen_target": "unseen target",
    "unseen_family": "all AmericasNLI left out",
    "unseen_config": "measured target, new configuration",
    "random": "random rows"}

#: what each protocol holds out, in one sentence (captions under the tables)
PROTOCOL_DOCS: dict[str, str] = {
    "unseen_target": "each target language left out in turn",
    "unseen_family": "every AmericasNLI target left out at once",
    "unseen_config": "source sets left out, their targets measured with other sets",
    "random": "ordinary K-fold over rows"}

#: the baselines every fit is compared with (the card's ``mae_<name>`` and ``best_baseline``)
BASELINE_LABELS: dict[str, str] = {
    "mm_mean": "design mean",
    "mm_class_mean": "design × pretraining-class mean",
    "target_mean": "target's own mean",
    "chance_absent": "chance for absent targets, class mean otherwise",
    "class_config": "class mean + the configuration's lookup",
    "relatives_geographic": "measured relatives (geographic)",
    "relatives_genetic": "measured relatives (genetic)",
    "relatives_featural": "measured relatives (featural)",
    "relatives_model": "measured relatives (model space)",
    "entropy_ols": "3-feature entropy OLS",
    "litmus_gbm": "LITMUS-style boosted trees",
    "shifted_profiles": "predictor, profiles from shifted pairs (validation)"}

_DATASETS = {"xnli": "XNLI", "americas_nli": "AmericasNLI"}
_ORIGINS = {"own": "own", "sumeval2022": "SumEval 2022"}
_FAMILIES = {"lasso": "Lasso", "ridge": "Ridge", "hgb": "gradient-boosted trees"}
_BASES = {"mm": "the design mean", "mm_class": "the design × pretraining-class mean"}

#: readable names of the feature columns people reason about (the rest: :func:`feature_label`)
FEATURE_LABELS: dict[str, str] = {
    "dist_genetic_min": "genetic distance to nearest source",
    "dist_syntactic_min": "syntactic distance to nearest source",
    "dist_geographic_min": "geographic distance to nearest source",
    "dist_featural_min": "typological (featural) distance to nearest source",
    "dist_phonological_min": "phonological distance to nearest source",
    "dist_inventory_min": "inventory distance to nearest source",
    "diversity_genetic": "genetic diversity of the source set",
    "diversity_syntactic": "syntactic diversity of the source set",
    "script_shared": "a source shares the target's script",
    "k": "supervised languages k",
    "log_total_examples": "log10 total training examples",
    "log_target_examples": "log10 examples in the target itself",
    "target_log_pretrain": "log10 target pretraining bytes",
    "target_in_pretraining": "target in the pretraining corpus",
    "target_absent_from_pretraining": "target absent from pretraining",
    "target_script_in_pretraining": "share of the corpus in the target's script",
    "has_profile": "target has a language profile",
    "profile_is_proxy": "profile measured with a related model",
    "has_label_free": "profile has label-free estimates",
    "prof_confidence": "English probe's confidence on the target",
    "prof_label_entropy": "English probe's predicted-label entropy on the target",
    "prof_atc": "English probe's ATC estimate on the target",
    "prof_doc": "English probe's DoC estimate on the target",
    "prof_src_entropy_max": "highest predicted-label entropy of a source's probe",
    "prof_src_entropy_mean": "mean predicted-label entropy of the sources' probes",
    "prof_src_entropy_wmean": "size-weighted predicted-label entropy of the sources' probes",
    "prof_fertility": "tokenizer pieces per word (target)",
    "prof_unk_rate": "tokenizer unknown-piece rate (target)",
    "prof_single_char_share": "share of single-character pieces (target)",
    "prof_script_covered": "tokenizer covers the target's script",
    "prof_centroid_dist_min": "embedding distance to the nearest source",
    "prof_centroid_dist_mean": "mean embedding distance to the sources",
    "prof_centroid_dist_wmean": "size-weighted embedding distance to the sources",
    "prof_centroid_unknown": "embedding distances unknown (imputed)",
    "prof_src_unknown": "a source has no probe of its own in the profile",
    "target_size_unknown": "target's pretraining size unknown",
    "pretrain_coverage_unknown": "target's pretraining coverage unknown",
    "pretrain_corpus_undocumented": "pretraining corpus undocumented",
    "target_script_coverage_unknown": "corpus share of the target's script unknown",
    "script_unknown": "target's script unknown",
    "diversity_unknown": "source-set diversity unknown (imputed)"}

_KIND_WORDS = {"min": "to nearest source", "mean": "mean over sources",
               "wmean": "size-weighted over sources", "unknown": "unknown (imputed)"}


def protocol_label(protocol: str) -> str:
    """'unseen_target' -> 'unseen target'; an unknown protocol as written."""
    return PROTOCOL_LABELS.get(protocol, protocol.replace("_", " "))


def baseline_label(name: str) -> str:
    """'mm_class_mean' -> 'design × pretraining-class mean'; else as written."""
    return BASELINE_LABELS.get(name, name)


def dataset_label(dataset: str) -> str:
    """'own:me5-small:americas_nli' -> 'me5-small · AmericasNLI (own)'; 'sumeval2022:xlmr:xnli'
    -> 'xlmr · XNLI (SumEval 2022)'; anything else as written."""
    parts = dataset.split(":")
    if len(parts) != 3:
        return dataset
    origin, model, ds = parts
    return f"{model} · {_DATASETS.get(ds, ds)} ({_ORIGINS.get(origin, origin)})"


def feature_label(name: str) -> str:
    """Words for a feature column: :data:`FEATURE_LABELS`, else built from the column's
    pattern ('dist_syntactic_mean' -> 'syntactic distance, mean over sources'), else the
    name."""
    if name in FEATURE_LABELS:
        return FEATURE_LABELS[name]
    head, _, kind = name.rpartition("_")
    if head.startswith("dist_") and kind in _KIND_WORDS:
        return f"{head.removeprefix('dist_')} distance, {_KIND_WORDS[kind]}"
    if name.startswith("diversity_"):
        return f"{name.removeprefix('diversity_')} diversity of the source set"
    for prefix, words in (("model=", "model is "), ("method=", "method is ")):
        if name.startswith(prefix):
            return words + name.removeprefix(prefix)
    return name.replace("_", " ")


def spec_label(spec: str) -> str:
    """A fitted spec as the card stores it, in words: 'lasso(alpha=0.03)|base=mm|per-design|
    +within-target hgb' -> 'Lasso (α = 0.03) on the deviation from the design mean, one per
    design, + within-target trees'; 'per design: A: spec; B: spec' -> one clause per design;
    a baseline's name -> :func:`baseline_label`."""
    if spec.startswith("per design: "):
        parts = [p.partition(": ") for p in spec.removeprefix("per design: ").split("; ")]
        return "; ".join(f"{d.replace('|', ' · ')}: {spec_label(s)}" for d, _, s in parts)
    if spec in BASELINE_LABELS:
        return BASELINE_LABELS[spec]
    prefix = ""
    if spec.startswith("target_mean+"):
        prefix, spec = "the target's own mean + ", spec.removeprefix("target_mean+")
    head, *rest = spec.split("|")
    family, _, params = head.partition("(")
    words = _FAMILIES.get(family, family)
    if family in ("lasso", "ridge") and params.startswith("alpha="):
        words += f" (α = {params.removeprefix('alpha=').rstrip(')')})"
    for part in rest:
        if part.startswith("base="):
            words += f" on the deviation from {_BASES.get(part[5:], part[5:])}"
        elif part == "per-design":
            words += ", one per design"
        elif part == "pooled":
            words += ", shared by all designs"
        elif part == "+within-target hgb":
            words += ", + within-target trees"
        else:
            words += f", {part}"
    return prefix + words
