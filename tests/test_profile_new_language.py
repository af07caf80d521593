"""A user's profile of a language xlt has no data for, read with ``--profiles DIR``.

Why: ``xlt-measure profile --text FILE`` without ``--pairs`` writes a profile with no
label-free estimates, while every shipped training target's profile has them. Left as
placeholder zeros (ATC 0, DoC 0) they put the target far outside the fitted data: Basque
from 400 sentences of UI messages was predicted at 14.1 macro-F1 (below chance) with a
narrow interval and no flag. And ``--profiles DIR`` used to *replace* the shipped profiles:
a measured target then lost its profile and an unprofiled target was imputed from peers
with no profiles (Quechua 30.1 -> 23.1 just by passing a directory of other languages).

The profiles here are shipped ones relabelled, so no encoder runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from predictor.cli import main as predict_main
from predictor.serving import load_predictor

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "models"
CONFIG = {"en": 2490}


def _user_profiles(tmp_path: Path, *, pairs: bool) -> Path:
    """A --profiles directory holding only a Basque profile (Swahili's numbers relabelled),
    with or without label-free estimates."""
    prof = json.loads((SHIPPED / "profiles" / "me5-small" / "sw.json").read_text("utf-8"))
    prof.update({"language": "eu", "iso639_3": "eus", "name": "Basque"})
    if not pairs:
        prof["label_free"] = None
    out = tmp_path / "profiles" / "me5-small"
    out.mkdir(parents=True)
    (out / "eu.json").write_text(json.dumps(prof), encoding="utf-8")
    return tmp_path / "profiles"


@pytest.fixture(scope="module")
def shipped():
    return load_predictor(SHIPPED / "predictor")


def test_a_text_only_profile_gets_its_class_label_free_values_and_is_flagged(
        tmp_path: Path, shipped) -> None:
    p = load_predictor(SHIPPED / "predictor", profiles=_user_profiles(tmp_path, pairs=False))
    eu = p.predict_one("me5-small", "probe", CONFIG, "eu")
    assert eu["profile"] is True and eu["basis"] == "unseen-target"
    assert eu["out_of_support"] and "--pairs" in eu["reason"]
    # not the placeholder-zero extrapolation (14 macro-F1): near an unprofiled present
    # target's answer, which is itself the class mean
    unprofiled = shipped.predict_one("me5-small", "probe", CONFIG, "eu")
    assert eu["prediction"] > 40
    assert abs(eu["prediction"] - unprofiled["prediction"]) < 10

    with_pairs = load_predictor(SHIPPED / "predictor",
                                profiles=_user_profiles(tmp_path / "lf", pairs=True))
    full = with_pairs.predict_one("me5-small", "probe", CONFIG, "eu")
    assert full["profile"] is True
    assert not full["out_of_support"] or "--pairs" not in full["reason"]


def test_a_profiles_directory_adds_to_the_shipped_profiles(tmp_path: Path, shipped) -> None:
    p = load_predictor(SHIPPED / "predictor", profiles=_user_profiles(tmp_path, pairs=True))
    for target in ("el", "bzd", "quy"):          # measured, measured absent, unprofiled
        mine = p.predict_one("me5-small", "probe", CONFIG, target)
        ref = shipped.predict_one("me5-small", "probe", CONFIG, target)
        assert mine["profile"] == ref["profile"]
        assert mine["prediction"] == pytest.approx(ref["prediction"])
        assert mine["reason"] == ref["reason"]


def test_batch_with_profiles_uses_the_users_profile(tmp_path: Path) -> None:
    profiles = _user_profiles(tmp_path, pairs=False)
    req = tmp_path / "req.jsonl"
    req.write_text("".join(json.dumps({"id": t, "model": "me5-small", "task": "xnli",
                                       "train_config": CONFIG, "target": t}) + "\n"
                           for t in ("eu", "el")), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert predict_main(["batch", "--predictor", str(SHIPPED / "predictor"), "--profiles",
                         str(profiles), "--input", str(req), "--output", str(out)]) == 0
    eu, el = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert eu["profile"] is True and eu["out_of_support"] and eu["prediction"] > 40
    assert el["profile"] is True and el["basis"] == "measured-target"


def test_a_measured_target_keeps_the_profile_it_was_fitted_with(tmp_path: Path, shipped) -> None:
    """A user's profile of a measured language (other text, other numbers) does not move
    the measured-target answer: the target's rows were fitted with the shipped profile."""
    prof = json.loads((SHIPPED / "profiles" / "me5-small" / "el.json").read_text("utf-8"))
    prof["centroid_distance"] = {k: 4 * v for k, v in prof["centroid_distance"].items()}
    prof["label_free"] = None
    out = tmp_path / "profiles" / "me5-small"
    out.mkdir(parents=True)
    (out / "el.json").write_text(json.dumps(prof), encoding="utf-8")
    p = load_predictor(SHIPPED / "predictor", profiles=tmp_path / "profiles")
    mine = p.predict_one("me5-small", "probe", CONFIG, "el")
    ref = shipped.predict_one("me5-small", "probe", CONFIG, "el")
    assert mine["basis"] == ref["basis"] == "measured-target"
    assert mine["prediction"] == pytest.approx(ref["prediction"])


def test_a_source_without_its_own_probe_is_named(tmp_path: Path, shipped) -> None:
    """Japanese has no per-source probe: the English probe stands in and the answer says
    so; a text-only profile is not blamed on the sources."""
    ja = shipped.predict_one("me5-small", "probe", {"en": 2490, "ja": 2490}, "sw")
    assert ja["out_of_support"] and "per-source probe" in ja["reason"]
    en = shipped.predict_one("me5-small", "probe", CONFIG, "sw")
    assert not en["reason"] or "per-source probe" not in en["reason"]
    p = load_predictor(SHIPPED / "predictor", profiles=_user_profiles(tmp_path, pairs=False))
    eu = p.predict_one("me5-small", "probe", CONFIG, "eu")
    assert "--pairs" in eu["reason"] and "per-source probe" not in eu["reason"]


def test_a_schema_1_profile_with_pairs_is_not_read_as_a_collapsed_probe(tmp_path: Path,
                                                                       shipped) -> None:
    """A profile made before per-source probes (schema 1) has the English probe's estimates
    but no ``label_free_by_source``: the English entropy stands in for every source (0 bits
    would read as a probe collapsed onto one label), and the answer says so."""
    prof = json.loads((SHIPPED / "profiles" / "me5-small" / "sw.json").read_text("utf-8"))
    new = dict(prof, language="eu", iso639_3="eus", name="Basque")
    old = dict(new, schema=1)
    old.pop("label_free_by_source", None)
    for name, p in (("new", new), ("old", old)):
        d = tmp_path / name / "me5-small"
        d.mkdir(parents=True)
        (d / "eu.json").write_text(json.dumps(p), encoding="utf-8")
    a = load_predictor(SHIPPED / "predictor", profiles=tmp_path / "new").predict_one(
        "me5-small", "probe", CONFIG, "eu")
    b = load_predictor(SHIPPED / "predictor", profiles=tmp_path / "old").predict_one(
        "me5-small", "probe", CONFIG, "eu")
    assert "per-source probe" in b["reason"] and "per-source probe" not in (a["reason"] or "")
    assert abs(a["prediction"] - b["prediction"]) < 5


@pytest.mark.parametrize("edit, field", [
    (lambda p: p.update(label_free_by_source={"en": {}}), "label_free_by_source.en"),
    (lambda p: p["label_free"].update(atc="high"), "label_free.atc"),
    (lambda p: p.update(centroid_distance={"en": None}), "centroid_distance"),
    (lambda p: p["tokenizer"].update(fertility=float("nan")), "tokenizer.fertility"),
    (lambda p: p.update(tokenizer=[1, 2]), "tokenizer"),
])
def test_a_tampered_profile_fails_at_load_naming_file_and_field(tmp_path: Path, capsys,
                                                               edit, field) -> None:
    prof = json.loads((SHIPPED / "profiles" / "me5-small" / "sw.json").read_text("utf-8"))
    prof.update({"language": "eu", "iso639_3": "eus", "name": "Basque"})
    edit(prof)
    d = tmp_path / "profiles" / "me5-small"
    d.mkdir(parents=True)
    (d / "eu.json").write_text(json.dumps(prof), encoding="utf-8")
    for cmd in (["query", "--model", "me5-small", "--train-config", "en:2490", "--target", "eu"],
                ["batch", "--input", str(tmp_path / "none.jsonl"), "--output",
                 str(tmp_path / "out.jsonl")]):
        (tmp_path / "none.jsonl").write_text("", encoding="utf-8")
        rc = predict_main([cmd[0], "--predictor", str(SHIPPED / "predictor"), "--profiles",
                           str(tmp_path / "profiles"), *cmd[1:]])
        err = capsys.readouterr().err
        assert rc == 2, err
        assert "eu.json" in err and field in err and "Traceback" not in err


def test_label_skewed_pairs_of_a_present_language_get_a_note(tmp_path: Path, capsys) -> None:
    """Pairs whose per-source probes all predict skewed labels (as 80%-entailment pairs
    do) make a present language's prediction too low: the answer says so, in the API, the
    query's words and batch; balanced pairs and absent languages get no note."""
    base = _user_profiles(tmp_path, pairs=True)
    balanced = load_predictor(SHIPPED / "predictor", profiles=base)
    assert "profile_note" not in balanced.predict_one("me5-small", "probe", CONFIG, "eu")
    path = base / "me5-small" / "eu.json"
    prof = json.loads(path.read_text(encoding="utf-8"))
    for v in prof["label_free_by_source"].values():
        v["label_entropy"] -= 0.15                 # what an 80% entailment set does to sw
    quy = dict(prof, language="quy", iso639_3="quy", name="Quechua")
    path.write_text(json.dumps(prof), encoding="utf-8")
    (base / "me5-small" / "quy.json").write_text(json.dumps(quy), encoding="utf-8")
    skewed = load_predictor(SHIPPED / "predictor", profiles=base)
    eu = skewed.predict_one("me5-small", "probe", CONFIG, "eu")
    assert eu["pretraining"] == "present" and "balanced pairs" in eu["profile_note"]
    assert "profile_note" not in skewed.predict_one("me5-small", "probe", CONFIG, "quy")
    assert "profile_note" not in skewed.predict_one("me5-small", "probe", CONFIG, "de")
    assert predict_main(["query", "--model", "me5-small", "--train-config", "en:2490",
                         "--target", "eu", "--profiles", str(base)]) == 0
    assert "note: the profile's per-source probes all predict skewed labels" in \
        capsys.readouterr().out
