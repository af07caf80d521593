"""Profile protocols (#21): which pairs a shipped target's profile reads, and the
build-shipped options. Nothing here loads a model (a fake encoder and a toy reference)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from _profile_fakes import ExplodingEncoder, FakeEncoder, toy_reference
from measure.methods.sampling import eval_indices, load_split, part_indices
from measure.profile import main
from measure.profile_inputs import ProfileInputError, read_pairs_sample, read_text_sample
from measure.profile_protocols import (AMERICAS, PAIRS_CONDITIONS, XNLI_TARGETS, ProfileProtocol,
                                       profile_pairs, profile_text, shipped_inputs)

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "models" / "profiles" / "me5-small"
DISJOINT_A = ProfileProtocol("disjoint-pairs", part="A")
DISJOINT_B = ProfileProtocol("disjoint-pairs", part="B")


def _test(nli_dir: Path, dataset: str, lang: str):
    return load_split(str(nli_dir), dataset, lang, "test")


@pytest.mark.parametrize("lang", XNLI_TARGETS + AMERICAS)
def test_shipped_profiles_reproduce_their_recorded_inputs(nli_dir: Path, tmp_path: Path,
                                                          lang: str) -> None:
    """Every shipped profile's inputs are rebuilt from the protocol its provenance names
    (disjoint-pairs, AmericasNLI from half A, since #21) and hash the same."""
    prof = SHIPPED / f"{lang}.json"
    if not prof.is_file():
        pytest.skip("shipped profiles not present")
    dataset = "americas_nli" if lang in AMERICAS else "xnli"
    prov = json.loads(prof.read_text(encoding="utf-8"))["provenance"]
    assert prov["protocol"] == "disjoint-pairs"
    protocol = ProfileProtocol(prov["protocol"], part=prov.get("part"))
    text, pairs = shipped_inputs(nli_dir, dataset, lang, tmp_path, protocol=protocol)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")             # Otomi has 82 lines: "noisy", not the point
        assert read_text_sample(text).sha256 == prov["text_sha256"]
    assert read_pairs_sample(pairs).sha256 == prov["pairs_sha256"]


@pytest.mark.parametrize("lang", ["en", "sw", "ur"])
def test_disjoint_xnli_pairs_share_no_pair_or_premise_with_the_scored_subset(
        nli_dir: Path, lang: str) -> None:
    test = _test(nli_dir, "xnli", lang)
    scored = test.iloc[eval_indices(test, 2000)]
    rows, what = profile_pairs(nli_dir, "xnli", lang, DISJOINT_A)
    assert len(rows) == 600 and "outside the scored 2000" in what
    assert not set(rows["pair_id"]) & set(scored["pair_id"])
    assert not set(rows["premise"]) & set(scored["premise"])
    # the scored subset is the same rows in every XNLI language: no profile pair translates
    # a scored pair of another target either
    de = _test(nli_dir, "xnli", "de")
    assert set(de.iloc[eval_indices(de, 2000)]["pair_id"]) == set(scored["pair_id"])
    assert profile_pairs(nli_dir, "xnli", lang, DISJOINT_B)[0].equals(rows)   # no part in XNLI


@pytest.mark.parametrize("lang", ["aym", "nah", "oto"])
def test_disjoint_americas_pairs_come_from_one_part_only(nli_dir: Path, lang: str) -> None:
    test = _test(nli_dir, "americas_nli", lang)
    part = {p: set(test["pair_id"].iloc[part_indices(test, p)]) for p in "AB"}
    for protocol, mine, other in ((DISJOINT_A, "A", "B"), (DISJOINT_B, "B", "A")):
        rows, what = profile_pairs(nli_dir, "americas_nli", lang, protocol)
        ids = set(rows["pair_id"])
        assert ids <= part[mine] and not ids & part[other]
        assert f"test/{mine}-of-2" in what
        assert len(rows) >= 350                                  # half a test set, non-empty rows
        assert not set(rows["premise"]) & set(test["premise"].iloc[part_indices(test, other)])


def test_shifted_text_only_and_bootstrap(nli_dir: Path, tmp_path: Path) -> None:
    shifted = ProfileProtocol("disjoint-pairs", pairs_source="validation")
    assert shifted.label == "shifted-pairs" and shifted.tag == "shifted-validation"
    rows, what = profile_pairs(nli_dir, "americas_nli", "aym", shifted)
    val = load_split(str(nli_dir), "americas_nli", "aym", "validation")
    assert set(rows["premise"]) <= set(val["premise"]) and "validation (shifted)" in what
    info: dict = {}
    text, pairs = shipped_inputs(nli_dir, "xnli", "sw", tmp_path, protocol=ProfileProtocol(
        "text-only"), info=info)
    assert pairs is None and text.is_file() and "pair_ids" not in info
    boot = ProfileProtocol("disjoint-pairs", part="A", bootstrap_seed=3)
    base, _ = profile_pairs(nli_dir, "americas_nli", "aym", DISJOINT_A)
    again, what = profile_pairs(nli_dir, "americas_nli", "aym", boot)
    assert len(again) == len(base) and set(again["pair_id"]) < set(base["pair_id"])
    assert again["pair_id"].duplicated().any() and "bootstrap resample seed 3" in what
    assert again.equals(profile_pairs(nli_dir, "americas_nli", "aym", boot)[0])
    other = ProfileProtocol("disjoint-pairs", part="A", bootstrap_seed=4)
    assert not again.equals(profile_pairs(nli_dir, "americas_nli", "aym", other)[0])
    assert boot.tag == "disjoint-A-boot3"


@pytest.mark.parametrize("dataset,lang,part", [("xnli", "ur", None), ("americas_nli", "tar", "A")])
def test_pair_conditions_break_one_condition_on_never_scored_pairs(
        nli_dir: Path, dataset: str, lang: str, part: str | None) -> None:
    """Skewed conditions: 80% one gold label, the same count as the size control; unrelated:
    the control's pairs with hypotheses moved to other premises; all from the candidates
    of the as-drawn protocol (never scored)."""
    drawn = {c: profile_pairs(nli_dir, dataset, lang, ProfileProtocol(
        "disjoint-pairs", part=part, pairs_condition=c))[0] for c in PAIRS_CONDITIONS}
    pool = set(profile_pairs(nli_dir, dataset, lang, ProfileProtocol(
        "disjoint-pairs", part=part), n_pairs=100_000)[0]["pair_id"])
    n = len(drawn["size-control"])
    assert 100 < n < len(drawn["as-drawn"])
    for label, name in enumerate(("entailment", "neutral", "contradiction")):
        rows = drawn[f"skew-{name}"]
        shares = rows["label"].value_counts(normalize=True)
        assert len(rows) == n and abs(shares[label] - 0.8) < 0.01
        assert set(rows["pair_id"]) <= pool
    control, unrelated = drawn["size-control"], drawn["unrelated"]
    assert set(unrelated["pair_id"]) == set(control["pair_id"]) <= pool
    assert list(unrelated["premise"]) == list(control["premise"])
    assert sorted(unrelated["hypothesis"]) == sorted(control["hypothesis"])
    # no premise keeps a hypothesis written about it (XNLI: 3 per premise)
    written = control.groupby("premise")["hypothesis"].agg(set)
    assert not any(h in written[p] for p, h in zip(unrelated["premise"], unrelated["hypothesis"]))
    tag = ProfileProtocol("disjoint-pairs", part=part, pairs_condition="unrelated").tag
    assert tag == "disjoint-unrelated" + (f"-{part}" if part else "")


def test_profile_text_drops_lines_a_scored_row_holds(nli_dir: Path) -> None:
    lines, dropped = profile_text(nli_dir, "xnli", "ur", DISJOINT_A, n_lines=10_000)
    same, none = profile_text(nli_dir, "xnli", "ur", ProfileProtocol(), n_lines=10_000)
    assert none == 0 and dropped > 0 and len(lines) == len(same) - dropped
    test = _test(nli_dir, "xnli", "ur")
    scored = test.iloc[eval_indices(test, 2000)]
    norm = {" ".join(t.split()) for t in (*scored["premise"], *scored["hypothesis"])}
    assert not {" ".join(t.split()) for t in lines} & norm


@pytest.mark.parametrize("kwargs,message", [
    ({"name": "disjoint-pairs"}, "needs --part A or --part B"),
    ({"name": "scored-pairs", "part": "A"}, "apply to --protocol disjoint-pairs only"),
    ({"name": "text-only", "bootstrap_seed": 1}, "text-only has none"),
    ({"name": "disjoint-pairs", "pairs_source": "validation", "part": "A"}, "leave out --part"),
    ({"name": "magic"}, "use one of"),
    ({"name": "disjoint-pairs", "part": "C"}, "use A or B"),
    ({"name": "disjoint-pairs", "pairs_condition": "skew-up"}, "use one of"),
    ({"name": "scored-pairs", "pairs_condition": "unrelated"}, "with test pairs only"),
    ({"name": "disjoint-pairs", "pairs_source": "validation", "pairs_condition": "unrelated"},
     "with test pairs only"),
])
def test_protocol_combinations_that_mean_nothing_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ProfileInputError, match=message):
        ProfileProtocol(**kwargs).check()
    ProfileProtocol("disjoint-pairs").check(("sw", "en"))      # XNLI only: no part needed


@pytest.mark.parametrize("args,message", [
    (["--protocol", "disjoint-pairs"], "needs --part A or --part B"),
    (["--protocol", "scored-pairs", "--part", "A"], "apply to --protocol disjoint-pairs only"),
    (["--protocol", "text-only", "--bootstrap-seed", "2"], "text-only has none"),
    (["--protocol", "disjoint-pairs", "--part", "A", "--languages", "sw,qq"],
     "are not shipped targets"),
])
def test_build_shipped_usage_errors_exit_2_before_the_model(
        args: list[str], message: str, tmp_path: Path, nli_dir: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr("measure.profile.MemoEncoder", ExplodingEncoder)
    rc = main(["build-shipped", "--data-dir", str(nli_dir), "--profiles", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_build_shipped_disjoint_profiles_record_their_protocol(
        tmp_path: Path, nli_dir: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr("measure.profile.MemoEncoder", FakeEncoder)
    monkeypatch.setattr("measure.profile.measure_stack_problem", lambda: None)
    toy_reference(tmp_path / "ref")
    ref = tmp_path / "ref" / "me5-small" / "_reference.npz"
    out = tmp_path / "profiles-disjoint-A"
    rc = main(["build-shipped", "--data-dir", str(nli_dir), "--profiles", str(out),
               "--protocol", "disjoint-pairs", "--part", "A", "--languages", "sw,aym",
               "--reference", str(ref)])
    assert rc == 0, capsys.readouterr().err
    assert (out / "me5-small" / "_reference.npz").is_file()
    aym = json.loads((out / "me5-small" / "aym.json").read_text(encoding="utf-8"))
    prov = aym["provenance"]
    assert (prov["protocol"], prov["part"], prov["protocol_tag"]) == ("disjoint-pairs", "A",
                                                                      "disjoint-A")
    assert prov["scored_against"].endswith("test/B-of-2")
    test = _test(nli_dir, "americas_nli", "aym")
    part_b = set(test["pair_id"].iloc[part_indices(test, "B")])
    assert prov["pair_ids"] and not set(prov["pair_ids"]) & part_b
    assert aym["label_free"]["n_pairs"] == len(prov["pair_ids"])
    sw = json.loads((out / "me5-small" / "sw.json").read_text(encoding="utf-8"))["provenance"]
    assert sw["part"] is None and sw["scored_against"] == "xnli test, eval_cap 2000"
    # one directory, one protocol: a partial rebuild under another protocol is refused
    rc = main(["build-shipped", "--data-dir", str(nli_dir), "--profiles", str(out),
               "--protocol", "disjoint-pairs", "--part", "B", "--languages", "aym",
               "--reference", str(ref)])
    err = capsys.readouterr().err
    assert rc == 2 and "a profiles directory holds one protocol" in err
    text_only = tmp_path / "profiles-text-only"
    assert main(["build-shipped", "--data-dir", str(nli_dir), "--profiles", str(text_only),
                 "--protocol", "text-only", "--languages", "oto", "--reference", str(ref)]) == 0
    oto = json.loads((text_only / "me5-small" / "oto.json").read_text(encoding="utf-8"))
    assert oto["label_free"] is None and oto["provenance"]["protocol"] == "text-only"


def test_default_directory_per_protocol(tmp_path: Path, nli_dir: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict = {}

    def fake_build(data_dir: Path, profiles: Path, **kw: object) -> list:
        seen["profiles"], seen["protocol"] = profiles, kw["protocol"]
        return []

    monkeypatch.setattr("measure.profile.build_shipped", fake_build)
    monkeypatch.setattr("measure.profile.measure_stack_problem", lambda: None)
    monkeypatch.setattr("measure.profile.shipped_profiles_dir",
                        lambda required=True: tmp_path / "p")
    assert main(["build-shipped", "--data-dir", str(nli_dir)]) == 0
    assert seen["profiles"] == tmp_path / "p"
    assert main(["build-shipped", "--data-dir", str(nli_dir), "--protocol", "disjoint-pairs",
                 "--part", "B", "--bootstrap-seed", "7"]) == 0
    assert seen["profiles"] == tmp_path / "profiles-disjoint-B-boot7"
    assert (seen["protocol"].part, seen["protocol"].bootstrap_seed) == ("B", 7)
