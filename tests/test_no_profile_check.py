"""predictor.studies.no_profile_check: unprofiled AmericasNLI languages sit at their class."""

from pathlib import Path

from predictor.studies.no_profile_check import check

ROOT = Path(__file__).resolve().parents[1]


def test_unprofiled_languages_sit_at_the_measured_class_level(monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    r = check(n=5, seed=1, predictor_dir=str(ROOT / "models" / "predictor"))
    assert r["configs"] == 5
    # the same class (absent from pretraining): within a few points of the measured level
    assert abs(r["predicted"] - r["measured"]) < 5
    assert r["covered"] >= 4
