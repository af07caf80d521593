"""Pretraining coverage is knowledge per model family: present, absent or unknown, never a median."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from measure.knowledge.languages import UnknownLanguageError
from measure.knowledge.coverage import (CORPORA, MODEL_CORPUS, coverage, coverage_table,
                                script_in_pretraining)
from predictor.features import FAMILY_GROUPS, FEATURE_FAMILIES, GROUPS, TransferFeatures


def test_table_matches_the_published_sizes_and_xlmr_language_list() -> None:
    table = coverage_table()
    cc = table[table.corpus == "cc100"]
    # 87 listed sizes + 6 languages with unlisted size = XLM-R's 93 languages (its 100
    # entries count 7 variants: romanised bn/hi/my/ta/te/ur and traditional-script zh)
    assert (cc.status == "present").sum() == 87
    assert sorted(cc.loc[cc.status == "present_size_unlisted", "code"]) == \
        ["eo", "hr", "la", "mn", "sa", "sr"]
    assert int(cc.set_index("code").loc["sw", "bytes"]) == 1717986918
    assert CORPORA["cc100"].complete and not CORPORA["wikipedia"].complete


@pytest.mark.parametrize("model", ["me5-small", "xlmr"])
def test_absent_languages_get_size_zero_and_the_absent_flag(model: str) -> None:
    for code in ["aym", "quy", "yo", "yor", "tar"]:
        c = coverage(model, code)
        assert c.status == "absent", code
        f = c.features
        assert f["target_log_pretrain"] == 0.0 and f["target_absent_from_pretraining"] == 1.0
        assert f["target_in_pretraining"] == 0.0 and f["target_size_unknown"] == 0.0
        assert f["pretrain_coverage_unknown"] == 0.0 and f["pretrain_corpus_undocumented"] == 0.0


def test_present_languages_and_macrolanguage_codes_map_to_the_listed_size() -> None:
    for code in ["sw", "swh", "swa"]:
        c = coverage("me5-small", code)
        assert c.status == "present" and c.table_code == "sw"
        assert c.log_bytes == pytest.approx(math.log10(1717986918))
    assert coverage("xlmr", "cmn").table_code == "zh"
    assert coverage("xlmr", "arb").table_code == "ar"


def test_present_but_unlisted_uses_the_corpus_floor_with_the_size_flag() -> None:
    floor = math.log10(coverage_table().query("corpus == 'cc100'")["bytes"].dropna().min())
    for code in ["hr", "hrv", "khk", "arz"]:
        c = coverage("me5-small", code)
        assert c.status == "present_size_unlisted", code
        assert c.features["target_log_pretrain"] == pytest.approx(floor)
        assert c.features["target_size_unknown"] == 1.0
        assert c.features["target_in_pretraining"] == 1.0


def test_unknown_only_for_undocumented_corpora_or_incomplete_tables() -> None:
    # mBERT's Wikipedia table is incomplete: missing -> unknown, not absent
    c = coverage("mbert", "aym")
    assert c.status == "unknown" and c.features["pretrain_coverage_unknown"] == 1.0
    assert c.features["target_absent_from_pretraining"] == 0.0
    assert coverage("mbert", "yo").status == "present"       # Yoruba Wikipedia is listed
    # a model nobody documented
    c = coverage("some-new-model", "sw")
    assert c.status == "unknown" and c.corpus is None
    assert c.features["pretrain_corpus_undocumented"] == 1.0
    # T-ULRv6: corpus unpublished; CC-100 is a stated assumption, flagged on every row
    t = coverage("tulrv6", "quy")
    assert t.status == "absent" and t.features["pretrain_corpus_undocumented"] == 1.0
    assert not MODEL_CORPUS["tulrv6"][1]


def test_unknown_code_fails_with_help() -> None:
    with pytest.raises(UnknownLanguageError, match="closest known codes"):
        coverage("me5-small", "qqx")


def test_script_level_table() -> None:
    assert script_in_pretraining("me5-small", "Latn") == 1.0
    assert script_in_pretraining("me5-small", "Hant") == 1.0       # zh-Hant is in XLM-R
    assert script_in_pretraining("me5-small", "Cans") == 0.0       # no CC-100 language
    assert script_in_pretraining("mbert", "Cans") is None          # incomplete table
    assert script_in_pretraining("me5-small", None) is None


def test_features_never_impute_a_median_size() -> None:
    train = pd.DataFrame([{"model": "me5-small", "method": "probe", "train_config": {"en": 10},
                           "target": t} for t in ["de", "sw", "ur", "hi"]])
    tf = TransferFeatures(profiles_dir=None).fit(train)
    assert "target_log_pretrain" not in tf.impute_values_
    f = tf.transform_frame(pd.DataFrame([{"model": m, "method": "probe",
                                          "train_config": {"en": 10}, "target": t}
                                         for m, t in [("me5-small", "yo"), ("me5-small", "quy"),
                                                      ("me5-small", "hr"), ("other", "sw")]]))
    assert f["target_log_pretrain"].tolist()[:2] == [0.0, 0.0]
    assert f["target_absent_from_pretraining"].tolist() == [1, 1, 0, 0]
    assert f["target_size_unknown"].tolist() == [0, 0, 1, 1]
    assert f["pretrain_coverage_unknown"].tolist() == [0, 0, 0, 1]
    # hr: script known from the coverage table even though the registry lacks it; quy:
    # Latin from CLDR's likely scripts (its macrolanguage qu), a script CC-100 covers
    assert f["target_script_in_pretraining"].tolist() == [1, 1, 1, 0]
    assert f["target_script_coverage_unknown"].tolist() == [0, 0, 0, 1]


def test_feature_families_cover_every_group_once() -> None:
    groups = [g for fam in FAMILY_GROUPS.values() for g in fam]
    assert sorted(groups) == sorted(GROUPS)
    cols = [c for fam in FEATURE_FAMILIES.values() for c in fam]
    assert sorted(cols) == sorted(c for g in GROUPS.values() for c in g)
    assert "has_profile" in FEATURE_FAMILIES["profile"]
    assert "target_absent_from_pretraining" in FEATURE_FAMILIES["coverage"]
    train = pd.DataFrame([{"model": "xlmr", "method": "finetune", "train_config": {"en": 10},
                           "target": "sw"}])
    cols = TransferFeatures(include=("coverage",)).fit(train).get_feature_names_out()
    assert "target_absent_from_pretraining" in cols and "dist_genetic_min" not in cols


def test_coverage_csv_is_what_build_languages_produces(published_dir) -> None:
    import io

    from measure.build_languages import COVERAGE_OUT, build, build_coverage
    shared = published_dir.parent
    buf = io.StringIO()
    build_coverage(shared, build(shared)).to_csv(buf, index=False)
    assert buf.getvalue() == COVERAGE_OUT.read_text(encoding="utf-8"), (
        "measure/resources/coverage.csv is stale or hand-edited: regenerate it with "
        "`python -m measure.build_languages --shared ../shared/data`")
