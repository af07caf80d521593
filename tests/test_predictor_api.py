"""Fit/save/load, the public API, the CLI (exit codes, batch format) and tamper refusal."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from predictor import persist
from predictor.cli import main
from predictor.dataset import fingerprint, load_sumeval
from predictor.models import BASELINES
from predictor.serving import PredictionInputError, load_predictor

CANDIDATES = "ridge"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, published_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("predictor") / "model"
    rc = main(["fit", "--published-dir", str(published_dir), "--candidates", CANDIDATES,
               "--no-ablation", "--out", str(out), "--json"])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def predictor(model_dir: Path):
    return load_predictor(model_dir)


def test_card_records_checksum_data_features_cv_and_intervals(model_dir: Path,
                                                              published_dir: Path) -> None:
    card = json.loads((model_dir / persist.CARD_FILE).read_text())
    assert card["model_sha256"] == persist.sha256_file(model_dir / persist.MODEL_FILE)
    assert card["training_data"]["fingerprint_sha256"] == fingerprint(load_sumeval(published_dir))
    assert card["training_data"]["rows"] == 1200 and "ridge(" in card["selected_model"]
    assert "target_mean+ridge(" in card["seen_target_model"]
    assert set(card["selected_per_design"]["unseen-target"]) == {"xlmr|finetune", "tulrv6|finetune"}
    # every protocol, the nested learner and the three baselines (no SumEval family to leave out)
    assert {(r["protocol"], r["model"] in BASELINES) for r in card["cv"]} == \
        {(p, b) for p in ("unseen_target", "unseen_config", "random") for b in (True, False)}
    assert {r["dataset"] for r in card["cv_by_dataset"]} == {"sumeval2022:xlmr:xnli",
                                                           "sumeval2022:tulrv6:xnli"}
    assert {f["name"] for f in card["features"]} >= {"k", "dist_genetic_min", "model=xlmr"}
    iv = card["intervals"]
    assert iv["alpha"] == 0.1 and set(iv["coverage"]) == {"unseen-target", "measured-target"}
    for rec in iv["coverage"]["unseen-target"]:
        assert rec["group"] in ("xlmr|finetune|present", "tulrv6|finetune|present")
        assert rec["targets"] == 15 and 0.75 <= rec["coverage"] <= 0.99
    assert card["support"]["xlmr|finetune"]["k"] == [5, 14]
    assert card["library_versions"]["scikit-learn"]


def test_predict_one_is_fast_and_inside_its_interval(predictor) -> None:
    assert {(m["model"], m["method"], m["origin"]) for m in predictor.models} == \
        {("xlmr", "finetune", "sumeval2022"), ("tulrv6", "finetune", "sumeval2022")}
    predictor.predict_one("xlmr", None, {"en": 10000}, "sw")           # warm caches
    # speed is measured by the benchmarks, not asserted here (a loaded CI machine flakes)
    r = predictor.predict_one("xlmr", "finetune", {"en": 10000, "hi": 1000}, "ur")
    assert 0 <= r["lower"] < r["prediction"] < r["upper"] <= 100
    assert 60 < r["prediction"] < 90
    # k = 2 is below SumEval's k range (5-14): flagged and widened
    assert r["out_of_support"] and "k = 2 outside" in r["reason"]
    # a measured target: its own rows, calibrated on held-out configurations
    five = {"en": 100000, "hi": 10000, "de": 10000, "fr": 10000, "es": 10000}
    r = predictor.predict_one("xlmr", "finetune", five, "ur")
    assert r["basis"] == "measured-target" and r["pretraining"] == "present"
    cal = predictor.card["intervals"]["measured-target"]["groups"]["xlmr|finetune|present"]
    assert r["upper"] - r["prediction"] == pytest.approx(cal["quantile"])
    assert not r["out_of_support"] and r["reason"] is None
    # an unmeasured target: the unseen-target model and the unseen-target calibration
    u = predictor.predict_one("xlmr", "finetune", five, "am")
    assert u["basis"] == "unseen-target" and u["interval_group"].startswith("unseen-target:")
    # a large pretraining language scores above a language absent from pretraining
    assert predictor.predict_one("xlmr", None, {"en": 100000}, "de")["prediction"] > \
        predictor.predict_one("xlmr", None, {"en": 100000}, "aym")["prediction"] + 5
    # tulrv6 is the stronger model in SumEval and the predictor knows it
    assert predictor.predict_one("tulrv6", None, {"en": 100000}, "fr")["prediction"] > \
        predictor.predict_one("xlmr", None, {"en": 100000}, "fr")["prediction"]


def test_predict_many_rows_and_clear_errors(predictor) -> None:
    rows = [{"model": "xlmr", "train_config": {"en": 100000}, "target": t} for t in ("sw", "quy")]
    out = predictor.predict(rows)
    assert list(out.columns)[:5] == ["prediction", "lower", "upper", "basis", "out_of_support"]
    assert len(out) == 2 and out.basis.tolist() == ["measured-target", "unseen-target"]
    # Quechua: absent from CC-100 (a complete list), never a median size; k = 1 is outside
    # SumEval's k range -> flagged, with a reason, and a wider interval than Swahili's
    assert out.pretraining.tolist() == ["present", "absent"]
    assert out.out_of_support.all() and "k = 1 outside" in out.reason.iloc[1]
    five = {"en": 100000, "hi": 10000, "de": 10000, "fr": 10000, "es": 10000}
    inside = predictor.predict_one("xlmr", None, five, "sw")
    assert ((out.upper - out.lower) > inside["upper"] - inside["lower"]).all()
    assert (out.lower <= out.prediction).all() and (out.prediction <= out.upper).all()
    with pytest.raises(PredictionInputError, match="row 1: unknown model 'gpt'"):
        predictor.predict(pd.DataFrame([rows[0], {**rows[0], "model": "gpt"}]))
    with pytest.raises(PredictionInputError, match="no method 'probe'"):
        predictor.predict_one("xlmr", "probe", {"en": 1}, "sw")


def test_recommend_ranks_source_sets(predictor) -> None:
    pool = ["en", "de", "hi", "ar", "ru", "sw"]
    best = predictor.recommend("xlmr", ["sw", "ur"], pool, 2, objective="worst", top=3)
    assert best.attrs["dropped_from_pool"] == ["sw"] and best.attrs["n_combinations"] == 10
    assert best.attrs["n_per_language"] == 100000
    assert len(best) == 3 and best["rank"].tolist() == [1, 2, 3]
    assert best.objective.is_monotonic_decreasing
    assert (best.worst == best[["sw", "ur"]].min(axis=1)).all()
    assert (best.worst <= best["mean"]).all()
    mean = predictor.recommend("xlmr", ["sw", "ur"], pool, 2, objective="mean", top=10)
    assert len(mean) == 10 and mean.objective.iloc[0] == pytest.approx(mean["mean"].max())
    with pytest.raises(PredictionInputError, match=r"exceed the cap of 5"):
        predictor.recommend("xlmr", ["sw"], pool, 2, max_combinations=5)
    with pytest.raises(PredictionInputError, match="k must be between 1 and the pool size"):
        predictor.recommend("xlmr", ["sw"], pool, 9)


def test_tampered_model_file_is_refused(model_dir: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    data = bytearray((bad / persist.MODEL_FILE).read_bytes())
    data[len(data) // 2] ^= 0x01                       # flip one bit
    (bad / persist.MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(persist.ModelIntegrityError, match="does not match the card"):
        load_predictor(bad)
    rc = main(["query", "--predictor", str(bad), "--model", "xlmr", "--train-config", "en:10",
               "--target", "sw"])
    assert rc == 1 and "was modified or replaced" in capsys.readouterr().err


def test_types_outside_the_allow_list_are_refused(model_dir: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(persist, "TRUSTED_TYPES", frozenset(
        t for t in persist.TRUSTED_TYPES if not t.endswith(".TransferFeatures")))
    with pytest.raises(persist.UntrustedModelError, match=r"predictor\.features\..*TransferFeatures"):
        load_predictor(model_dir)


def test_cli_usage_errors_exit_2(model_dir: Path, capsys: pytest.CaptureFixture) -> None:
    base = ["query", "--predictor", str(model_dir), "--model", "xlmr", "--target", "sw"]
    for bad in ("en-2490", "en:many", "en:0", "en:10,en:20"):
        with pytest.raises(SystemExit) as exc:
            main([*base, "--train-config", bad])
        assert exc.value.code == 2
        assert "--train-config" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:       # the configuration is checked at parse time
        main([*base, "--train-config", "xx:10"])
    assert exc.value.code == 2 and "unknown language code 'xx'" in capsys.readouterr().err
    assert main(["query", "--predictor", str(model_dir), "--model", "gpt", "--target", "sw",
                 "--train-config", "en:10"]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0


def test_cli_query_evaluate_recommend(model_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["query", "--predictor", str(model_dir), "--model", "xlmr", "--train-config",
                 "en:100000,de:10000", "--target", "sw", "--json"]) == 0
    q = json.loads(capsys.readouterr().out)
    assert q["method"] == "finetune" and q["lower"] <= q["prediction"] <= q["upper"]
    assert main(["evaluate", "--predictor", str(model_dir), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert "ridge(" in ev["selected_model"] and len(ev["cv"]) == 12
    assert main(["evaluate", "--predictor", str(model_dir)]) == 0
    text = capsys.readouterr().out
    assert "unseen target" in text and "vs best baseline" in text and "coverage" in text
    assert main(["recommend", "--predictor", str(model_dir), "--model", "xlmr", "--targets",
                 "sw", "--pool", "en,de,hi", "--k", "2", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert len(rec["ranking"]) == 3 and rec["ranking"][0]["rank"] == 1
    assert rec["ranking"][0]["within_noise_of_best"] and rec["noise_margin"] > 0
    assert main(["query", "--predictor", str(model_dir), "--model", "xlmr", "--train-config",
                 "en:100000", "--target", "quy"]) == 0
    text = capsys.readouterr().out
    assert "basis unseen-target" in text and "outside the training support" in text


def test_cli_batch_per_line_results_and_errors(model_dir: Path, tmp_path: Path) -> None:
    lines = [
        {"id": "a", "model": "xlmr", "task": "xnli", "train_config": {"en": 10000, "hi": 1000},
         "target": "as"},
        {"id": "b", "model": "tulrv6", "train_config": {"en": 100000}, "target": "quy"},  # lang2vec only
        {"id": "c", "model": "xlmr", "train_config": {"en": 100}, "target": "qqqq"},
        {"id": "d", "model": "bert", "train_config": {"en": 100}, "target": "sw"},
        {"id": "e", "model": "xlmr", "task": "ner", "train_config": {"en": 100}, "target": "sw"},
        {"id": "f", "model": "xlmr", "train_config": {"en": -1}, "target": "sw"},
    ]
    text = "\n".join(json.dumps(x) for x in lines[:2]) + "\n{not json\n\n" + \
        "\n".join(json.dumps(x) for x in lines[2:]) + "\n"
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text(text)
    assert main(["batch", "--predictor", str(model_dir), "--input", str(src),
                 "--output", str(dst)]) == 0
    out = [json.loads(x) for x in dst.read_text().splitlines()]
    # the blank line keeps its position with an error of its own (see test_cli_batch)
    assert [o["id"] for o in out] == ["a", "b", None, None, "c", "d", "e", "f"]
    out = out[:3] + out[4:]
    for o in out[:2]:
        assert set(o) - {"interval_note"} == {
            "id", "prediction", "lower", "upper", "basis", "out_of_support", "reason",
            "pretraining", "profile", "interval_level", "interval_coverage"}
        # a class whose held-out coverage fell short says so in the answer
        assert ("interval_note" in o) == (o["interval_coverage"] < 0.85)
        assert 0 <= o["lower"] <= o["prediction"] <= o["upper"] <= 100
    assert out[0]["basis"] == "unseen-target" and out[1]["basis"] == "unseen-target"
    assert out[1]["pretraining"] == "absent" and out[1]["out_of_support"] \
        and "k = 1" in out[1]["reason"]
    assert "malformed JSON" in out[2]["error"]
    assert "unknown language code 'qqqq'" in out[3]["error"]
    assert "unknown model 'bert'" in out[4]["error"]
    assert "unknown task 'ner'" in out[5]["error"]
    assert "whole number" in out[6]["error"]


def test_every_learner_round_trips_within_the_allow_list(published_dir: Path,
                                                        tmp_path: Path) -> None:
    from predictor.models import SeenTargetModel, ZModel
    from predictor.selection import feature_matrix, meta_of, prepare, specs_for
    frame = prepare(load_sumeval(published_dir).sample(300, random_state=0))[0]
    y = frame.score.to_numpy()
    tf, X = feature_matrix(frame, np.arange(len(frame)))
    meta = meta_of(frame)
    with threadpool_limits(limits=1):  # OpenMP threads stall on a busy CI machine
        for spec in specs_for("unseen-target") + specs_for("measured-target"):
            est = spec.build().fit(X, y, meta)
            name = spec.name.replace("|", "_").replace("(", "_").replace(")", "")
            persist.save({"features": tf, "model": est.to_state()}, tmp_path / name,
                         {"selected_model": spec.name})
            loaded, card = persist.load(tmp_path / name)
            back = (SeenTargetModel if spec.seen else ZModel).from_state(loaded["model"])
            assert card["selected_model"] == spec.name
            assert back.predict(X[:20], meta.iloc[:20]).tolist() == \
                pytest.approx(est.predict(X[:20], meta.iloc[:20]).tolist())


def test_an_absent_target_without_donors_reaches_chance(predictor) -> None:
    """A predictor fitted on SumEval alone has no design that measured an absent target:
    nothing to borrow, so the lower bound reaches chance and the reason says why."""
    from measure.knowledge.nli import CHANCE
    assert predictor.class_policy.transfers == {}
    out = predictor.predict([{"model": "xlmr", "train_config": {"en": 10000, "de": 10000},
                              "target": t} for t in ("quy", "ha")])
    quy, ha = out.iloc[0], out.iloc[1]
    assert quy["pretraining"] == "absent" and quy["lower"] <= CHANCE < quy["prediction"]
    assert "no design of this predictor measured a target absent" in quy["reason"]
    assert ha["pretraining"] == "present" and ha["lower"] > CHANCE
