"""Which language profiles a loaded predictor reads, and what an unprofiled target gets.

Why: a models directory is one unit. The app serves ``--models-dir X`` while a user's
shell may sit in another checkout; the same predictor must read the profiles beside it
(or none), never whatever ``models/profiles`` the working directory happens to find.
And a target with no profile must not be placed among the high-resource targets just
because the profile family is missing (Quechua with English sources was predicted like
Swahili before).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from predictor.serving import load_predictor

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "models"


def test_a_models_directory_without_profiles_uses_none_whatever_the_cwd(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(SHIPPED / "predictor", tmp_path / "predictor")
    monkeypatch.chdir(REPO)  # the checkout's models/profiles is findable from here
    monkeypatch.delenv("XLT_MODELS_DIR", raising=False)
    bare = load_predictor(tmp_path / "predictor").predict_one("me5-small", "probe",
                                                              {"en": 2490}, "bzd")
    shipped = load_predictor(SHIPPED / "predictor").predict_one("me5-small", "probe",
                                                                {"en": 2490}, "bzd")
    assert shipped["profile"] is True
    assert bare["profile"] is False
    shutil.copytree(SHIPPED / "profiles", tmp_path / "profiles")
    beside = load_predictor(tmp_path / "predictor").predict_one("me5-small", "probe",
                                                                {"en": 2490}, "bzd")
    assert beside["profile"] is True
    assert beside["prediction"] == pytest.approx(shipped["prediction"])


def test_an_unprofiled_absent_language_is_placed_with_its_pretraining_class() -> None:
    p = load_predictor(SHIPPED / "predictor")
    config = {"en": 2490}
    quy = p.predict_one("me5-small", "probe", config, "quy")  # Quechua: no data, no profile
    assert quy["profile"] is False and quy["pretraining"] == "absent"
    assert quy["out_of_support"] and "profile" in quy["reason"]
    absent = [p.predict_one("me5-small", "probe", config, t)["prediction"]
              for t in ("aym", "bzd", "cni", "hch", "nah", "oto", "tar")]
    present = [p.predict_one("me5-small", "probe", config, t)["prediction"]
               for t in ("sw", "ur", "hi", "de")]
    # nearer the measured absent languages than the measured present ones
    assert abs(quy["prediction"] - sum(absent) / len(absent)) < \
        abs(quy["prediction"] - sum(present) / len(present))
    assert quy["upper"] - quy["lower"] > max(
        p.predict_one("me5-small", "probe", config, t)["upper"]
        - p.predict_one("me5-small", "probe", config, t)["lower"] for t in ("aym", "sw"))


@pytest.mark.parametrize("kind", ["file", "missing"])
def test_a_profiles_path_that_is_not_a_directory_says_what_it_is(tmp_path: Path,
                                                                 kind: str) -> None:
    """``--profiles <file>`` used to say "does not exist"; the API and the CLI now say it
    is a file (the CLI exits 2: tests/test_hardening_predictor.py)."""
    path = tmp_path / "profiles.json"
    if kind == "file":
        path.write_text("{}", encoding="utf-8")
    words = "is a file, not a directory" if kind == "file" else "does not exist"
    with pytest.raises(FileNotFoundError, match=words):
        load_predictor(SHIPPED / "predictor", profiles=path)
