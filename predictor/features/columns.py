"""The feature catalogue: every column ``TransferFeatures`` makes, its documentation, and
the groups and families that ``include`` and the ablations name.

Why a module of its own: the README, the model card, the app's Features page and the
ablation study read the catalogue without computing a feature, and the transformer
checks ``include`` against it.
"""

from __future__ import annotations

from measure.knowledge import uriel

DISTANCE_KINDS: tuple[str, ...] = tuple(uriel.DISTANCE_KINDS)
DIST_STATS = ("min", "mean", "wmean")

_DIST_DOC = {
    "min": "smallest {kind} URIEL distance between the target and any supervised language "
           "(0 when the target itself is supervised)",
    "mean": "mean {kind} URIEL distance between the target and the supervised languages",
    "wmean": "{kind} URIEL distance between the target and the supervised languages, "
             "weighted by each language's number of training examples",
}

# The documentation of every column that does not depend on a URIEL distance kind.
_FIXED_DOCS: dict[str, str] = {
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
    docs.update(_FIXED_DOCS)
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

COVERAGE_COLUMNS = GROUPS["pretraining"] + ["target_script_in_pretraining",
                                             "target_script_coverage_unknown"]
PROFILE_COLUMNS = GROUPS["profile"]


def describe(name: str) -> str:
    """The documentation of a feature column (one-hots resolve to their pattern)."""
    if name in FEATURES:
        return FEATURES[name]
    for prefix in ("model=", "method="):
        if name.startswith(prefix):
            return FEATURES[prefix + "<id>"] + f" ({name})"
    raise KeyError(f"undocumented feature {name!r}")
