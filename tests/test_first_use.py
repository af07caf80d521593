"""A newcomer's path through the predictor (issue #24 item 3): a profile they measured is
read without a flag, a profile that carries no signal says so, and every answer shows its
basis, its support flag and its interval level.

Why: ``xlt-measure profile`` writes to the user's profiles directory; a predictor that only
read ``--profiles`` would silently ignore it, and one that read a text-only profile or
pairs of unrelated lines literally gave narrow, unflagged numbers (58.7 [54.6, 62.9]).
The profiles here are shipped ones relabelled, so no encoder runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main as app_main
from predictor.cli import main as predict_main
from predictor.serving import default_profiles_dir, load_predictor

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "models"
CONFIG = {"en": 2490}
POOL = "en,de,fr,es,ru,zh,ar,hi,tr"


def _profiles(tmp_path: Path, *, pairs: bool = True, nli: bool | None = True) -> Path:
    """A profiles directory holding only a Basque profile (Swahili's numbers relabelled):
    with or without label-free estimates, and with a pairs check saying whether its pairs
    looked like NLI pairs."""
    prof = json.loads((SHIPPED / "profiles" / "me5-small" / "sw.json").read_text("utf-8"))
    prof.update({"language": "eu", "iso639_3": "eus", "name": "Basque"})
    if not pairs:
        prof["label_free"] = None
        prof["pairs_check"] = None
    elif nli is not None:
        prof["pairs_check"] = {"looks_like_nli": nli, "pairing": 0.9 if nli else 0.5,
                               "why": "premises and hypotheses are unrelated" if not nli
                               else "premise/hypothesis similarity as in NLI pairs"}
    out = tmp_path / "profiles" / "me5-small"
    out.mkdir(parents=True)
    (out / "eu.json").write_text(json.dumps(prof), encoding="utf-8")
    return tmp_path / "profiles"


@pytest.fixture(scope="module")
def shipped():
    return load_predictor(SHIPPED / "predictor")


@pytest.fixture(autouse=True)
def _no_user_profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts with no user profiles directory (the machine's own is not read)."""
    monkeypatch.setenv("XLT_PROFILES_DIR", str(tmp_path / "no-such-dir"))


def _width(res: dict) -> float:
    return res["upper"] - res["lower"]


def test_the_user_profiles_directory_is_read_by_default(tmp_path: Path, capsys,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["query", "--predictor", str(SHIPPED / "predictor"), "--model", "me5-small",
            "--train-config", "en:2490", "--target", "eu", "--json"]
    assert default_profiles_dir() is None
    assert predict_main(argv) == 0
    before = json.loads(capsys.readouterr().out)
    assert before["profile"] is False and before["interval_level"] == 0.9
    monkeypatch.setenv("XLT_PROFILES_DIR", str(_profiles(tmp_path)))
    assert default_profiles_dir() == tmp_path / "profiles"
    assert predict_main(argv) == 0
    after = json.loads(capsys.readouterr().out)
    assert after["profile"] is True and after["basis"] == "unseen-target"
    # --profiles still overrides the default
    assert predict_main([*argv, "--profiles", str(_profiles(tmp_path / "other", pairs=False))]) == 0
    other = json.loads(capsys.readouterr().out)
    assert other["profile"] is True and "--pairs" in other["reason"]


def test_a_user_profile_never_moves_a_measured_target(tmp_path: Path, shipped) -> None:
    p = load_predictor(SHIPPED / "predictor", profiles=_profiles(tmp_path, nli=False))
    for target in ("sw", "bzd"):
        mine = p.predict_one("me5-small", "probe", CONFIG, target)
        ref = shipped.predict_one("me5-small", "probe", CONFIG, target)
        assert mine == pytest.approx(ref)


def test_pairs_that_do_not_look_like_nli_are_flagged_and_not_read(tmp_path: Path,
                                                                  shipped) -> None:
    bad = load_predictor(SHIPPED / "predictor",
                         profiles=_profiles(tmp_path / "bad", nli=False)).predict_one(
        "me5-small", "probe", CONFIG, "eu")
    good = load_predictor(SHIPPED / "predictor",
                          profiles=_profiles(tmp_path / "good", nli=True)).predict_one(
        "me5-small", "probe", CONFIG, "eu")
    text_only = load_predictor(SHIPPED / "predictor",
                               profiles=_profiles(tmp_path / "text", pairs=False)).predict_one(
        "me5-small", "probe", CONFIG, "eu")
    none = shipped.predict_one("me5-small", "probe", CONFIG, "eu")
    assert bad["profile"] is True and bad["out_of_support"]
    assert "do not look like NLI pairs" in bad["reason"] and "unrelated" in bad["reason"]
    assert "--pairs;" not in bad["reason"]          # not blamed on a missing --pairs
    assert not good["reason"] or "NLI pairs" not in good["reason"]
    # its label-free estimates are the class's, as for a text-only profile
    assert bad["prediction"] == pytest.approx(text_only["prediction"])
    assert _width(bad) >= _width(none) - 1e-9
    assert _width(bad) > _width(good)


def test_a_text_only_profile_says_so_and_is_no_narrower_than_none(tmp_path: Path,
                                                                   shipped) -> None:
    p = load_predictor(SHIPPED / "predictor", profiles=_profiles(tmp_path, pairs=False))
    for config in (CONFIG, {"en": 2490, "de": 2490, "fr": 2490}):
        eu = p.predict_one("me5-small", "probe", config, "eu")
        none = shipped.predict_one("me5-small", "probe", config, "eu")
        assert eu["out_of_support"] and "label-free estimates" in eu["reason"]
        assert _width(eu) >= _width(none) - 1e-9


def test_recommend_text_shows_basis_interval_level_and_flags(capsys) -> None:
    argv = ["recommend", "--predictor", str(SHIPPED / "predictor"), "--model", "xlmr",
            "--targets", "sw,ur", "--pool", POOL, "--top", "2"]
    assert predict_main([*argv, "--k", "3"]) == 0
    out = capsys.readouterr().out
    assert "90% interval" in out and "basis: sw measured-target" in out
    assert "]!" in out and "! outside the training support" in out and "k = 3" in out
    # the README's example: k inside the training range, no flag
    assert predict_main([*argv, "--k", "5"]) == 0
    out = capsys.readouterr().out
    assert "90% interval" in out and "basis:" in out and "!" not in out
    assert predict_main([*argv, "--k", "3", "--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert js["interval_level"] == 0.9
    top = js["ranking"][0]
    assert top["out_of_support"] and "k = 3" in top["reason"]
    assert top["per_target"]["sw"]["basis"] == "measured-target"
    assert "k = 3" in top["per_target"]["ur"]["reason"]


def test_xlt_app_refuses_a_profiles_path_that_is_not_a_directory(tmp_path: Path, capsys) -> None:
    f = tmp_path / "eu.json"
    f.write_text("{}", encoding="utf-8")
    assert app_main(["--models-dir", str(SHIPPED), "--profiles", str(f), "--headless"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--profiles" in err and "not a directory" in err


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
    text = heading.strip().lower()
    return "".join(c for c in text if c.isalnum() or c in " -_").replace(" ", "-")


def test_every_internal_link_of_the_readme_and_docs_resolves() -> None:
    """docs/predicting.md pointed to sections it lacks ("see 'Language profiles'"): every
    relative link (file and #anchor) of README.md and docs/*.md must land."""
    import re
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    anchors = {p: {_slug(h) for h in re.findall(r"^#+ (.+)$", p.read_text("utf-8"), re.MULTILINE)}
               for p in pages}
    bad = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text("utf-8")):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                bad.append(f"{page.name}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors.get(
                    dest, {_slug(h) for h in re.findall(r"^#+ (.+)$", dest.read_text("utf-8"),
                                                        re.MULTILINE)}):
                bad.append(f"{page.name}: {target} (no such section)")
    assert not bad, bad


def test_a_language_is_a_code_or_a_name(capsys) -> None:
    argv = ["query", "--predictor", str(SHIPPED / "predictor"), "--model", "me5-small",
            "--train-config", "en:2490", "--json", "--target"]
    assert predict_main([*argv, "Welsh"]) == 0
    assert json.loads(capsys.readouterr().out)["target"] == "cy"
    with pytest.raises(SystemExit) as exc:
        predict_main([*argv, "Welsch"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Welsh (cy)" in err and "Traceback" not in err
