"""Feature correctness on known pairs, flags for unknown/absent targets, and speed."""

from __future__ import annotations

import math
import random
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from measure.knowledge import uriel
from predictor.features import DISTANCE_KINDS, FEATURES, TransferFeatures, describe

TRAIN = pd.DataFrame([
    {"model": "xlmr", "method": "finetune", "train_config": {"en": 1000}, "target": "de"},
    {"model": "xlmr", "method": "finetune", "train_config": {"en": 1000, "hi": 3000},
     "target": "sw"},
    {"model": "tulrv6", "method": "finetune", "train_config": {"de": 100, "ru": 100},
     "target": "ur"},
    {"model": "tulrv6", "method": "finetune", "train_config": {"fr": 10}, "target": "hi"},
])


def featurise(rows: list[dict], fitted: TransferFeatures | None = None) -> pd.DataFrame:
    tf = fitted or TransferFeatures().fit(TRAIN)
    return tf.transform_frame(pd.DataFrame(rows))


def row(tc: dict, target: str, model: str = "xlmr") -> dict:
    return {"model": model, "method": "finetune", "train_config": tc, "target": target}


def test_single_source_distances_equal_the_direct_uriel_distance() -> None:
    f = featurise([row({"en": 1000}, "sw")]).iloc[0]
    for kind in DISTANCE_KINDS:
        d = uriel.distance("swh", "eng", kind, typology="knn")   # sw -> swh, en -> eng
        assert not math.isnan(d)
        for stat in ("min", "mean", "wmean"):
            assert f[f"dist_{kind}_{stat}"] == pytest.approx(d, abs=1e-12), (kind, stat)
        assert f[f"diversity_{kind}"] == 0.0          # one source has no diversity
        assert f[f"dist_{kind}_unknown"] == 0.0


def test_two_sources_min_mean_weighted_mean_and_diversity() -> None:
    f = featurise([row({"en": 1000, "hi": 3000}, "ur")]).iloc[0]
    for kind in ("syntactic", "genetic", "geographic"):
        d_en = uriel.distance("urd", "eng", kind, typology="knn")
        d_hi = uriel.distance("urd", "hin", kind, typology="knn")
        assert f[f"dist_{kind}_min"] == pytest.approx(min(d_en, d_hi))
        assert f[f"dist_{kind}_mean"] == pytest.approx((d_en + d_hi) / 2)
        assert f[f"dist_{kind}_wmean"] == pytest.approx((1000 * d_en + 3000 * d_hi) / 4000)
        assert f[f"diversity_{kind}"] == pytest.approx(
            uriel.distance("eng", "hin", kind, typology="knn"))
    # Hindi and Urdu: same genus, so the genetic minimum is far below the English distance
    assert f["dist_genetic_min"] < uriel.distance("urd", "eng", "genetic")


def test_k_and_log_sizes_zero_and_few_shot() -> None:
    f = featurise([row({"en": 1000, "hi": 3000, "de": 0}, "ur"),
                   row({"en": 9999, "sw": 100}, "sw")])
    assert f.loc[0, "k"] == 2 and f.loc[1, "k"] == 2              # n = 0 does not count
    assert f.loc[0, "log_total_examples"] == pytest.approx(math.log10(4001))
    assert f.loc[0, "log_target_examples"] == 0.0                 # zero-shot
    assert f.loc[1, "log_target_examples"] == pytest.approx(math.log10(101))
    assert f.loc[1, "dist_syntactic_min"] == 0.0                  # the target is a source
    # ISO 639-1 and 639-3 spellings are the same language
    g = featurise([row({"en": 9999, "swh": 100}, "sw")])
    assert g.loc[0, "log_target_examples"] == pytest.approx(math.log10(101))


def test_pretraining_size_flags_for_absent_present_and_unlisted_targets() -> None:
    tf = TransferFeatures().fit(TRAIN)
    f = featurise([row({"en": 1000}, "sw"), row({"en": 1000}, "aym"),
                   row({"en": 1000}, "quy"), row({"en": 1000}, "hr")], tf)
    cols = ["target_size_unknown", "target_absent_from_pretraining", "target_in_pretraining"]
    assert f.loc[0, "target_log_pretrain"] == pytest.approx(math.log10(1717986918))
    assert f.loc[0, cols].tolist() == [0, 0, 1]
    # Aymara and Ayacucho Quechua: not among XLM-R's CC-100 languages -> 0, absent flag;
    # never the training median (Quechua used to get ~30 GB, like Swahili)
    for i in (1, 2):
        assert f.loc[i, "target_log_pretrain"] == 0.0
        assert f.loc[i, cols].tolist() == [0, 1, 0]
    assert "target_log_pretrain" not in tf.impute_values_
    # Croatian: in XLM-R but its size is unlisted -> the corpus floor, flagged
    assert f.loc[3, cols].tolist() == [1, 0, 1]
    assert 7 < f.loc[3, "target_log_pretrain"] < f.loc[0, "target_log_pretrain"]


def test_script_shared_and_unknown_script_imputed_with_flag() -> None:
    tf = TransferFeatures().fit(TRAIN)
    f = featurise([row({"en": 1000}, "de"), row({"en": 1000}, "hi"),
                   row({"en": 10, "ru": 10}, "bg"), row({"en": 1000}, "shp")], tf)
    assert f.script_shared.tolist()[:3] == [1.0, 0.0, 1.0]       # Latn; Deva vs Latn; Cyrl
    # Shipibo-Konibo: outside the registry and CLDR's likely scripts, so unknown
    assert f.script_unknown.tolist() == [0, 0, 0, 1]
    # training rows: de<-en shares, sw<-en,hi shares, ur<-de,ru does not, hi<-fr does not
    assert tf.impute_values_["script_shared"] == pytest.approx(0.5)
    assert f.loc[3, "script_shared"] == pytest.approx(0.5)


def test_one_hots_names_documentation_and_sklearn_conventions() -> None:
    tf = TransferFeatures(include=None)
    assert clone(tf).get_params() == {"include": None, "kinds": None, "typology": "knn",
                                      "profiles_dir": None}
    tf.fit(TRAIN)
    names = list(tf.get_feature_names_out())
    assert names[-3:] == ["model=tulrv6", "model=xlmr", "method=finetune"]
    X = tf.transform(TRAIN)
    assert X.shape == (4, len(names)) and not np.isnan(X).any()
    assert X[:, names.index("model=xlmr")].tolist() == [1, 1, 0, 0]
    for name in names:
        assert describe(name)
    assert "target_size_unknown" in FEATURES and "dist_genetic_wmean" in FEATURES
    k_only = TransferFeatures(include=("k",)).fit(TRAIN)
    assert list(k_only.get_feature_names_out()) == ["k"]
    assert k_only.transform(TRAIN).ravel().tolist() == [1, 2, 2, 1]
    with pytest.raises(ValueError, match="unknown URIEL distance kinds"):
        TransferFeatures(kinds=["nope"]).fit(TRAIN)


def test_fifty_thousand_rows_featurise_in_seconds() -> None:
    rng = random.Random(0)
    langs = "ar bg de el en es fr hi ru sw th tr ur vi zh".split()
    targets = langs + "aym bzd cni hch nah oto tar quy as".split()
    rows = [row({lg: rng.choice([1000, 10000, 100000]) for lg in rng.sample(langs, rng.randint(1, 6))},
                rng.choice(targets), rng.choice(["xlmr", "tulrv6"])) for _ in range(50_000)]
    frame = pd.DataFrame(rows)
    tf = TransferFeatures().fit(frame.iloc[:2000])
    t0 = time.perf_counter()
    X = tf.transform(frame)
    elapsed = time.perf_counter() - t0
    assert X.shape[0] == 50_000 and not np.isnan(X).any()


def _profile(code: str, iso3: str, dist: dict[str, float], label_free: dict | None) -> dict:
    return {"schema": 1, "model": "me5-small", "language": code, "iso639_3": iso3,
            "tokenizer": {"fertility": 2.5, "unk_rate": 0.002, "single_char_share": 0.2},
            "centroid_distance": dist, "label_free": label_free}


def test_profile_family_from_a_profiles_directory(tmp_path) -> None:
    import json
    folder = tmp_path / "me5-small"
    folder.mkdir()
    lf = {"mean_confidence": 0.55, "label_entropy": 1.2, "atc": 40.0, "doc": 45.0}
    (folder / "quy.json").write_text(json.dumps(
        _profile("quy", "quy", {"en": 0.30, "es": 0.20}, lf)), encoding="utf-8")
    (folder / "sw.json").write_text(json.dumps(
        _profile("sw", "swh", {"en": 0.25}, None)), encoding="utf-8")
    (folder / "_reference.npz").write_bytes(b"not read by the features")
    tf = TransferFeatures(profiles_dir=str(tmp_path)).fit(TRAIN)
    f = featurise([{**row({"en": 100, "es": 300}, "quy"), "model": "me5-small"},
                   {**row({"en": 100}, "swh"), "model": "me5-small"},      # ISO 639-3 lookup
                   {**row({"de": 100}, "sw"), "model": "me5-small"},       # no centroid for de
                   {**row({"en": 100}, "aym"), "model": "me5-small"},      # no profile
                   row({"en": 100, "es": 300}, "quy")], tf)                # xlmr -> proxy
    assert f["has_profile"].tolist() == [1, 1, 1, 0, 1]
    assert f["profile_is_proxy"].tolist() == [0, 0, 0, 0, 1]
    assert f.loc[0, "prof_centroid_dist_min"] == pytest.approx(0.20)
    assert f.loc[0, "prof_centroid_dist_mean"] == pytest.approx(0.25)
    assert f.loc[0, "prof_centroid_dist_wmean"] == pytest.approx((100 * 0.30 + 300 * 0.20) / 400)
    assert f.loc[0, ["prof_atc", "prof_doc", "prof_label_entropy"]].tolist() == [40.0, 45.0, 1.2]
    assert f.loc[0, "prof_script_covered"] == 1 and f.loc[0, "prof_fertility"] == 2.5
    assert f.loc[1, "has_label_free"] == 0 and f.loc[1, "prof_confidence"] == 0
    assert f.loc[1, "prof_centroid_dist_min"] == pytest.approx(0.25)
    assert f.loc[2, "prof_centroid_unknown"] == 1 and f.loc[2, "prof_centroid_dist_min"] == 0
    flags = ("prof_centroid_unknown", "prof_src_unknown")
    prof_cols = [c for c in f.columns if c.startswith("prof_") and c not in flags]
    assert (f.loc[3, prof_cols] == 0).all() and (f.loc[3, list(flags)] == 1).all()
    # schema-1 profiles (no label_free_by_source): the per-source family is unknown; with
    # pairs the English probe's entropy stands in for every source, without them 0
    assert f["prof_src_unknown"].tolist() == [1, 1, 1, 1, 1]
    src = f[["prof_src_entropy_max", "prof_src_entropy_mean", "prof_src_entropy_wmean"]]
    assert (src.loc[[0, 4]] == 1.2).all().all()          # quy has label_free (entropy 1.2)
    assert (src.loc[[1, 2, 3]] == 0).all().all()         # sw: no pairs; aym: no profile
    assert not f.isna().any().any()


def test_per_source_entropy_features_aggregate_the_supervised_languages(tmp_path) -> None:
    import json
    folder = tmp_path / "me5-small"
    folder.mkdir()
    by_src = {src: {"atc": 50.0, "doc": 50.0, "mean_confidence": 0.6, "label_entropy": e}
              for src, e in [("en", 1.2), ("es", 1.5), ("sw", 0.9)]}
    prof = {**_profile("quy", "quy", {"en": 0.30, "es": 0.20, "sw": 0.4},
                       {"mean_confidence": 0.55, "label_entropy": 1.2, "atc": 40.0, "doc": 45.0}),
            "schema": 2, "label_free_by_source": by_src}
    (folder / "quy.json").write_text(json.dumps(prof), encoding="utf-8")
    nopairs = {**_profile("aym", "aym", {"en": 0.3}, None), "schema": 2,
               "label_free_by_source": None}
    (folder / "aym.json").write_text(json.dumps(nopairs), encoding="utf-8")
    tf = TransferFeatures(profiles_dir=str(tmp_path)).fit(TRAIN)
    cols = ["prof_src_entropy_max", "prof_src_entropy_mean", "prof_src_entropy_wmean",
            "prof_src_unknown"]
    f = featurise([{**row({"en": 100, "es": 300}, "quy"), "model": "me5-small"},
                   {**row({"swh": 100}, "quy"), "model": "me5-small"},        # ISO 639-3 source
                   {**row({"es": 100, "aym": 100}, "quy"), "model": "me5-small"},  # aym: no probe
                   {**row({"ja": 100}, "quy"), "model": "me5-small"},         # none known
                   {**row({"en": 100}, "aym"), "model": "me5-small"},         # profile w/o pairs
                   {**row({"en": 100}, "bzd"), "model": "me5-small"}], tf)    # no profile
    assert f.loc[0, cols].tolist() == pytest.approx([1.5, 1.35, (100 * 1.2 + 300 * 1.5) / 400, 0])
    assert f.loc[1, cols].tolist() == pytest.approx([0.9, 0.9, 0.9, 0])
    # aym has no per-source probe: the reference (English) probe's entropy, 1.2, stands in
    assert f.loc[2, cols].tolist() == pytest.approx([1.5, 1.35, 1.35, 1])
    # ja alone: the stand-in too, never 0 bits (which reads as a collapsed probe)
    assert f.loc[3, cols].tolist() == pytest.approx([1.2, 1.2, 1.2, 1])
    for i in (4, 5):
        assert f.loc[i, cols].tolist() == [0, 0, 0, 1]
    assert all(c in FEATURES for c in cols)
    from predictor.features import FEATURE_FAMILIES
    assert set(cols) <= set(FEATURE_FAMILIES["profile"])


def test_profiles_dir_errors_name_the_fix(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="profiles directory .* does not exist"):
        TransferFeatures(profiles_dir=str(tmp_path / "nope")).fit(TRAIN)
    (tmp_path / "xlmr").mkdir()
    (tmp_path / "xlmr" / "de.json").write_text("{broken", encoding="utf-8")
    with pytest.raises(ValueError, match="is not valid JSON"):
        TransferFeatures(profiles_dir=str(tmp_path)).fit(TRAIN)


