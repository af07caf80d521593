"""Language profiles: input validation, tokenizer statistics, label-free estimates, and an
end-to-end profile with the real encoder that the predictor then uses."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _profile_fakes import FakeEncoder

from measure.knowledge.languages import UnknownLanguageError
from measure.profile import profile_files, tokenizer_stats
from measure.profile_inputs import ProfileInputError, read_pairs, read_text_lines
from measure.profile_reference import REFERENCE_FILE, Reference, label_free

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "models" / "profiles"


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# -- input validation (no encoder needed) --------------------------------------------------
def test_text_file_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ProfileInputError, match="does not exist"):
        read_text_lines(tmp_path / "nope.txt")
    with pytest.raises(ProfileInputError, match="no non-blank line"):
        read_text_lines(write(tmp_path / "empty.txt", "\n  \n"))
    with pytest.raises(ProfileInputError, match=r"not UTF-8 \(byte 6, line 2\)"):
        read_text_lines(write(tmp_path / "latin1.txt", b"hello\n\xe9t\xe9\n"))
    with pytest.raises(ProfileInputError, match="has 3 non-blank lines; at least 10"):
        read_text_lines(write(tmp_path / "few.txt", "a\nb\nc\n"))
    with pytest.warns(UserWarning, match="only 12 lines"):
        assert len(read_text_lines(write(tmp_path / "ok.txt", "x y\n" * 12))) == 12


def test_pair_file_errors_name_the_line(tmp_path: Path) -> None:
    good = "a premise\ta hypothesis\n" * 11
    with pytest.raises(ProfileInputError, match=r"line 13: expected 'premise<TAB>hypothesis'.*"
                                                r"got 1 field"):
        read_pairs(write(tmp_path / "p.tsv", good + "\nno tab here\n"))
    with pytest.raises(ProfileInputError, match="line 2: .*got 3 field"):
        read_pairs(write(tmp_path / "p3.tsv", "a\tb\na\tb\tc\n"))
    with pytest.raises(ProfileInputError, match="line 1: .*two non-empty"):
        read_pairs(write(tmp_path / "p4.tsv", "\tb\n"))
    with pytest.raises(ProfileInputError, match="has 2 pairs; at least 10"):
        read_pairs(write(tmp_path / "p5.tsv", "a\tb\nc\td\n"))
    with pytest.warns(UserWarning, match="only 11 pairs"):
        assert read_pairs(write(tmp_path / "p6.tsv", good))[0] == ("a premise", "a hypothesis")


def test_unknown_language_and_model_fail_before_any_encoding(tmp_path: Path) -> None:
    text = write(tmp_path / "t.txt", "x y\n" * 200)
    with pytest.raises(UnknownLanguageError, match="closest known codes"):
        profile_files("qqx", text, profiles=tmp_path)
    with pytest.raises(ProfileInputError, match="profiles exist for me5-small only"):
        profile_files("sw", text, model="xlmr", profiles=tmp_path)


def test_cli_usage_errors_exit_2_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from measure.cli import main
    rc = main(["profile", "--language", "sw", "--text", str(tmp_path / "missing.txt"),
               "--profiles", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "xlt-measure profile: error:" in err and "does not exist" in err
    text = write(tmp_path / "t.txt", "x y\n" * 200)
    rc = main(["profile", "--language", "qqx", "--text", str(text), "--profiles", str(tmp_path)])
    assert rc == 2 and "unknown language code 'qqx'" in capsys.readouterr().err


# -- statistics -----------------------------------------------------------------------------
def test_tokenizer_stats_see_uncovered_scripts_and_unspaced_writing() -> None:
    from measure.encoders.encoder import load_tokenizer, resolve_model
    tok = load_tokenizer(resolve_model("me5-small"))
    latin = tokenizer_stats(tok, ["The cat sat on the mat.", "Another short sentence here."])
    assert latin["unk_rate"] == 0.0 and latin["whitespace_segmented"]
    assert 1.0 <= latin["fertility"] < 2.0
    # Inuktitut syllabics: no XLM-R language uses the script -> <unk> pieces
    syll = tokenizer_stats(tok, ["ᐃᓄᒃᑎᑐᑦ ᑎᑎᕋᐅᓯᖅ ᐅᖃᐅᓯᖅ"])
    assert syll["unk_rate"] > 0.2
    zh = tokenizer_stats(tok, ["这是一个没有空格的很长的中文句子，用来测试分词的情况。"])
    assert not zh["whitespace_segmented"] and zh["unk_rate"] == 0.0


def _toy_reference(acc: float = 0.6, conf: float = 0.7, threshold: float = 0.5) -> Reference:
    return Reference(["en"], np.zeros((1, 2)), np.zeros((3, 8)), np.zeros(3), threshold, acc,
                     conf, {})


def test_label_free_estimates_follow_their_definitions() -> None:
    probs = np.array([[0.9, 0.05, 0.05], [0.4, 0.3, 0.3], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    lf = label_free(_toy_reference(), probs)
    assert lf["mean_confidence"] == pytest.approx((0.9 + 0.4 + 0.8 + 0.6) / 4)
    assert lf["label_distribution"] == {"entailment": 0.5, "neutral": 0.25, "contradiction": 0.25}
    assert lf["label_entropy"] == pytest.approx(1.5)           # -(.5 log .5 + 2 * .25 log .25)
    assert lf["atc"] == pytest.approx(75.0)                    # 3 of 4 above 0.5
    assert lf["doc"] == pytest.approx(100 * (0.6 - (0.7 - 0.675)))
    one_label = label_free(_toy_reference(), np.tile([0.2, 0.7, 0.1], (5, 1)))
    assert one_label["label_entropy"] == 0.0


# -- per-source probes (a toy reference and a fake encoder: no model is loaded) -----------
def _toy_reference_with_sources() -> Reference:
    rng = np.random.default_rng(0)
    return Reference(["en", "sw"], rng.normal(size=(2, 4)), rng.normal(size=(3, 16)),
                     np.zeros(3), 0.5, 0.6, 0.7, {"model_fingerprint": "fp"},
                     src_languages=["en", "sw"],
                     src_coef=rng.normal(size=(2, 3, 16)).astype(np.float32),
                     src_intercept=rng.normal(size=(2, 3)),
                     src_scalars=np.array([[0.5, 0.6, 0.7], [0.45, 0.55, 0.65]]))


def test_reference_with_source_probes_round_trips_without_pickle(tmp_path: Path) -> None:
    ref = _toy_reference_with_sources()
    ref.save(tmp_path / "r.npz")
    back = Reference.load(tmp_path / "r.npz")                # np.load(allow_pickle=False)
    assert back.src_languages == ["en", "sw"] and back.src_coef.dtype == np.float32
    np.testing.assert_array_equal(back.src_coef, ref.src_coef)
    np.testing.assert_array_equal(back.src_scalars, ref.src_scalars)
    assert back.source_probe(1).atc_threshold == 0.45 and back.source_probe(1).source_accuracy == 0.55
    # a reference saved before per-source probes (no src_ arrays) still loads
    _toy_reference().save(tmp_path / "old.npz")
    old = Reference.load(tmp_path / "old.npz")
    assert old.src_languages == [] and old.src_coef is None


def test_profile_has_per_source_estimates_from_a_few_pairs() -> None:
    from measure.profile import PROFILE_SCHEMA, compute_profile, summary
    from measure.profile_reference import label_free_by_source
    ref = _toy_reference_with_sources()
    enc = FakeEncoder()
    lines = [f"una frase corta numero {i}" for i in range(12)]
    pairs = [(f"premisa {i} aaa", f"hipotesis {i}" + " a" * (i % 3)) for i in range(12)]
    prof = compute_profile("quy", lines, enc, ref, pairs)
    assert prof["schema"] == PROFILE_SCHEMA == 2
    by_src = prof["label_free_by_source"]
    assert set(by_src) == {"en", "sw"}
    for src, st in by_src.items():
        assert set(st) == {"atc", "doc", "mean_confidence", "label_entropy"}
        assert 0 <= st["atc"] <= 100 and 1 / 3 <= st["mean_confidence"] <= 1
        assert 0 <= st["label_entropy"] <= math.log2(3) + 1e-9
    # each source's numbers are label_free of that source's probe on the same pairs
    u, v = enc.encode([p for p, _ in pairs]), enc.encode([h for _, h in pairs])
    sw = ref.source_probe(1)
    assert by_src["sw"] == {k: label_free(sw, sw.probabilities(u, v))[k] for k in by_src["sw"]}
    assert "per-source probes" in summary(prof)
    # no pairs, or a reference without per-source probes: None
    assert compute_profile("quy", lines, enc, ref)["label_free_by_source"] is None
    assert label_free_by_source(_toy_reference(), u, v) is None


# -- end to end with the real encoder and the shipped reference ---------------------------
@pytest.mark.slow
@pytest.mark.skipif(not (SHIPPED / "me5-small" / REFERENCE_FILE).is_file(),
                    reason="shipped reference not built (python -m measure.profile build-shipped)")
def test_profile_a_few_lines_and_the_predictor_uses_it(tmp_path: Path, nli_dir: Path) -> None:
    from measure.data import load_parquet_split
    from predictor.features import TransferFeatures
    val = load_parquet_split(nli_dir, "americas_nli", "aym", "validation").head(12)
    text = write(tmp_path / "aym.txt", "\n".join(val["premise"]) + "\n")
    pairs = write(tmp_path / "aym.tsv", "".join(f"{p}\t{h}\n" for p, h in
                                                zip(val["premise"], val["hypothesis"])))
    profiles = tmp_path / "profiles"
    with pytest.warns(UserWarning):
        path = profile_files("aym", text, pairs, profiles=profiles)
    assert path == profiles / "me5-small" / "aym.json"
    prof = json.loads(path.read_text(encoding="utf-8"))
    assert prof["provenance"]["n_lines"] == 12 and len(prof["provenance"]["text_sha256"]) == 64
    assert prof["provenance"]["model_fingerprint"] and prof["provenance"]["xlt_version"]
    assert set(prof["centroid_distance"]) == set("ar bg de el en es fr hi ru sw th tr ur vi zh".split())
    assert all(0 < d < 1 for d in prof["centroid_distance"].values())
    assert prof["tokenizer"]["unk_rate"] < 0.01 and prof["tokenizer"]["fertility"] > 1
    lf = prof["label_free"]
    assert lf["n_pairs"] == 12 and 1 / 3 <= lf["mean_confidence"] <= 1
    assert 0 <= lf["label_entropy"] <= math.log2(3) + 1e-9 and 0 <= lf["atc"] <= 100
    rows = pd.DataFrame([{"model": "me5-small", "method": "probe", "train_config": tc,
                          "target": t} for tc, t in [({"en": 100, "es": 300}, "aym"),
                                                     ({"en": 100}, "bzd")]])
    f = TransferFeatures(profiles_dir=str(profiles)).fit(rows).transform_frame(rows)
    d = prof["centroid_distance"]
    assert f.loc[0, "has_profile"] == 1 and f.loc[1, "has_profile"] == 0
    assert f.loc[0, "prof_centroid_dist_min"] == pytest.approx(min(d["en"], d["es"]))
    assert f.loc[0, "prof_centroid_dist_wmean"] == pytest.approx((100 * d["en"] + 300 * d["es"]) / 400)
    assert f.loc[0, "prof_label_entropy"] == pytest.approx(lf["label_entropy"])
    assert f.loc[1, [c for c in f.columns if c.startswith("prof_") and
                     c not in ("prof_centroid_unknown", "prof_src_unknown")]].eq(0).all()
    assert f.loc[1, "prof_centroid_unknown"] == 1 and f.loc[1, "prof_src_unknown"] == 1
    by_src = prof["label_free_by_source"]
    assert set(by_src) == set(d) and prof["schema"] == 2
    assert f.loc[0, "prof_src_entropy_max"] == pytest.approx(
        max(by_src["en"]["label_entropy"], by_src["es"]["label_entropy"]))
    assert f.loc[0, "prof_src_unknown"] == 0
    # xlmr rows use the me5-small profile as a flagged proxy
    g = TransferFeatures(profiles_dir=str(profiles)).fit(rows.assign(model="xlmr"))
    assert g.transform_frame(rows.assign(model="xlmr")).loc[0, "profile_is_proxy"] == 1


def test_build_shipped_rejects_unknown_targets_before_loading_the_model(
        tmp_path: Path, nli_dir: Path, capsys: pytest.CaptureFixture) -> None:
    from measure.profile import main
    rc = main(["build-shipped", "--data-dir", str(nli_dir), "--profiles", str(tmp_path),
               "--languages", "sw,xx"])
    assert rc == 2 and "['xx'] are not shipped targets" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
