"""The app's data layer and services without a page: target classes, language options,
measured tables as the pages read them, and the service's computations.

Why apart from tests/test_app.py: none of these needs a fitted fixture predictor or a page
run, so they answer in seconds.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from app import data
from app.services import ModelChoice, PredictorService, slope_per_doubling
from measure.knowledge.coverage import RESOURCE_CLASSES, resource_class
from measure.knowledge.nli import AMERICAS_NLI, XNLI_15
from measure.knowledge.train_config import TrainConfig
from predictor.dataset import DataValidationError, train_config
from predictor.metaanalysis.prepare import LOW_RESOURCE_XNLI
from predictor.serving import load_predictor

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "predictor"
ROW = {"cell_hash": "h", "model": "me5-small", "method": "probe", "train_dataset": "xnli",
       "train_split": "validation", "regime": "per_language", "k": 1, "total_examples": 10,
       "seed": 0, "target_dataset": "xnli", "target_language": "sw", "target_split": "test",
       "macro_f1": 50.0, "accuracy": 50.0, "n": 10, "zero_shot": True,
       "train_config": '{"en":10}'}


def test_a_language_is_named_one_way_whatever_code_a_table_holds() -> None:
    """The card's ISO 639-3 codes ('ayr', 'swh') read like every other language on a page."""
    assert data.label_of("ayr") == data.label_of("aym") == "Aymara (aym)"
    assert data.label_of("swh") == data.label_of("sw") == "Swahili (sw)"
    assert data.label_of("not-a-language") == "not-a-language"


def test_target_classes_are_the_meta_analysis_ones() -> None:
    groups = data.resource_groups()
    assert set(groups) == set(XNLI_15) | set(AMERICAS_NLI)
    assert all(groups[c] == resource_class(c) for c in groups)
    assert data.TARGET_CLASSES == RESOURCE_CLASSES
    absent, low, _ = data.TARGET_CLASSES
    assert {c for c, g in groups.items() if g == absent} == set(AMERICAS_NLI)
    assert {c for c, g in groups.items() if g == low} == set(LOW_RESOURCE_XNLI) == {"sw", "ur"}


def test_language_options_cover_lang2vec_with_names() -> None:
    opts = data.language_options()
    assert opts["code"].is_unique and len(opts) > 3900
    assert data.label_of("quy") == "Ayacucho Quechua (quy)"
    assert data.label_of("aym") == "Aymara (aym)"


def test_unreadable_measurement_file_is_reported_not_raised(tmp_path: Path) -> None:
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    m = data.read_measurement_files(tmp_path)
    assert m.empty and len(m.problems) == 2
    assert "missing columns" in m.problems[1]


def test_model_method_default_is_the_scaling_grid() -> None:
    """A single-source table (the GPU fine-tuning one) sorts first but is not the default."""
    df = pd.DataFrame({"model": ["me5-small"] * 5, "method": ["finetune"] * 2 + ["probe"] * 3,
                       "k": [1, 1, 1, 2, 3]})
    combos, default = data.model_method_choices(df)
    assert combos == [("me5-small", "finetune"), ("me5-small", "probe")] and default == 1


def test_train_config_strict_for_training_rows_and_tolerant_for_tables() -> None:
    """One type (TrainConfig): strict for the predictor's rows, tolerant for the app."""
    # both modes: zeros dropped, sorted, whole floats to int
    assert train_config({"en": 0, "de": 5}, "row 1") == {"de": 5}
    assert TrainConfig.read({"sw": 10.0, "en": 3}) == {"en": 3, "sw": 10}
    # strict: anything malformed raises, naming where it came from
    for bad in ('{"en": 1}', {"en": 0}, {"en": -1}, {"en": 1.5}, {"en": "x"}, {3: 1},
                {"xx-not-a-language": 5}, None):
        with pytest.raises(DataValidationError, match="row 7"):
            train_config(bad, "row 7")
    # tolerant: the store's JSON text is read; nothing raises; no language is looked up
    assert TrainConfig.read('{"es":2490,"en":2490,"de":0}') == {"en": 2490, "es": 2490}
    assert TrainConfig.read({"xx-not-a-language": 5}) == {"xx-not-a-language": 5}
    assert TrainConfig.read({"en": 0}) == {}
    for bad in ("{not json", "[1, 2]", {"en": -1}, {"en": 1.5}, {"en": "x"}, {3: 1}, None,
                float("nan")):
        assert TrainConfig.read(bad) is None


def test_measured_table_tolerates_an_unreadable_train_config() -> None:
    df = pd.DataFrame([{**ROW, "train_config": '{"en":10,"de":0}'},
                       {**ROW, "cell_hash": "g", "train_config": "{broken"}])
    out = data.enrich(df)
    assert out["config_key"].tolist() == ['{"en":10}', "{broken"]
    assert out["sources"].tolist() == ["en", ""]
    assert out["source_language"].iloc[0] == "en" and pd.isna(out["source_language"].iloc[1])
    assert data.config_key({"en": 10, "de": 0}) == '{"en":10}'
    assert out["pool"].tolist() == ["xnli/validation"] * 2


def test_pages_tell_the_centred_probe_and_few_shot_cells_apart() -> None:
    """A centred probe is shown as its own method; a few-shot cell (trained on labelled
    target pairs) is left to the report: keyed by train_config it would pass for the plain
    zero-shot cell of the same sources."""
    import json
    df = pd.DataFrame([{**ROW, "config_json": json.dumps({"params": {}})},
                       {**ROW, "cell_hash": "c",
                        "config_json": json.dumps({"params": {"centre": "language"}})},
                       {**ROW, "cell_hash": "f", "config_json": json.dumps(
                           {"params": {}, "target_shots": {"xnli/validation:sw": 25}})}])
    out = data.enrich(df)
    assert out["cell_hash"].tolist() == ["h", "c"]
    assert out["method"].tolist() == ["probe", "probe-centred"]


def test_scaling_best_source_toggle_and_curve_intervals() -> None:
    from app import analysis
    summary = {"scaling": [
        {"model": "me5-small", "method": "probe", "pool": "xnli/validation", "design": "grid",
         "regime": "fixed_total", "metric": "macro_f1", "target_class": "absent",
         "slope_given_contains_best": {"best_sources": {"aym": "sw"}},
         "per_k_mean": [{"k": 1, "mean": 30.0, "ci_low": 28.0, "ci_high": 32.0},
                        {"k": 2, "mean": 31.0, "ci_low": 29.0, "ci_high": 33.0}]},
        {"model": "me5-small", "method": "probe", "pool": "xnli/validation", "design": "grid",
         "regime": "fixed_total", "metric": "kappa", "target_class": "absent",
         "slope_given_contains_best": {"best_sources": {"aym": "en"}}, "per_k_mean": []}]}
    mm = ("me5-small", "probe")
    best = analysis.best_sources(summary, mm, "xnli/validation")
    assert best == {"aym": "sw"}
    rows = pd.DataFrame({"target_language": ["aym", "aym", "bzd"],
                         "sources": ["de+sw", "de+en", "sw"]})
    assert analysis.holds_best_source(rows, best).tolist() == [True, False, False]
    km = analysis.k_mean_intervals(summary, mm, "xnli/validation", ["fixed_total"])
    assert km["k"].tolist() == [1, 2] and (km["ci_low"] <= km["mean"]).all()
    assert analysis.k_mean_intervals(summary, mm, "other", ["fixed_total"]).empty


def test_measured_by_pool_counts_a_repeated_score_once() -> None:
    """measure.store.repeated_scores: the same score of the same target in the same pool is
    one measurement (k = 1 cells repeat across regimes and seeds); another pool is another
    experiment."""
    rows = [{**ROW, "cell_hash": h, "seed": seed, "macro_f1": f1, "train_dataset": ds}
            for h, seed, f1, ds in [("a", 0, 50.0, "xnli"), ("b", 1, 50.0000001, "xnli"),
                                    ("c", 2, 52.0, "xnli"), ("d", 0, 50.0, "xnli_mt9k")]]
    table = data.enrich(pd.DataFrame(rows))
    choice = ModelChoice("me5-small", "probe", "own", "macro_f1", 10, 1, ("sw",))
    svc = PredictorService(SimpleNamespace(card={}), Path("unused"))
    got = svc.measured_by_pool(table, choice, {"en": 10}, ["sw"]).set_index("pool")
    assert got.loc["xnli/validation", "measured_runs"] == 2
    assert got.loc["xnli/validation", "measured"] == pytest.approx(51.0)
    assert got.loc["xnli_mt9k/validation", "measured_runs"] == 1


def test_permutation_importance_of_the_shipped_model() -> None:
    """Against the model's own predictions (MAE 0 before shuffling) every importance is the
    MAE a shuffle causes: never negative, some positive; constant columns are left out."""
    svc = PredictorService(load_predictor(SHIPPED), SHIPPED)
    rows = [{"model": "me5-small", "method": "probe", "train_config": {s: n}, "target": t}
            for s in ("en", "de", "hi") for n in (500, 2490) for t in ("sw", "quy", "ur", "fr")]
    X = svc.features(rows)
    y = svc.feature_model.predict(X.to_numpy(float))
    imp = svc.permutation_importance(rows, y, repeats=2)
    assert list(imp.columns) == ["feature", "importance", "std"]
    varying = set(X.columns[X.nunique() > 1])
    assert set(imp["feature"]) == varying
    assert "k" not in varying and "log_total_examples" in varying   # k = 1 on every row
    assert (imp["importance"] >= 0).all() and imp["importance"].iloc[0] > 0
    assert imp["importance"].is_monotonic_decreasing


def test_permutation_importance_is_bounded_and_reports_progress() -> None:
    """All 21,692 measured rows x 3 shuffles took 124 s with no warning: the page samples
    rows (seeded) and reports each column as it goes."""
    svc = PredictorService(load_predictor(SHIPPED), SHIPPED)
    rows = [{"model": "me5-small", "method": "probe", "train_config": {s: n}, "target": t}
            for s in ("en", "de", "hi", "fr") for n in (500, 1000, 2490)
            for t in ("sw", "quy", "ur", "fr", "aym")]
    y = np.linspace(30, 60, len(rows))
    seen: list[tuple[int, int]] = []
    imp = svc.permutation_importance(rows, y, max_rows=20,
                                     progress=lambda i, n: seen.append((i, n)))
    assert len(imp) == seen[-1][1] == len(seen) and seen[-1][0] == seen[-1][1]
    again = svc.permutation_importance(rows, y, max_rows=20)
    assert imp.equals(again)                          # the sample is seeded


def test_k_scaling_moves_whole_sets_and_gives_a_slope_per_class() -> None:
    svc = PredictorService(load_predictor(SHIPPED), SHIPPED)
    choice = [c for c in svc.models if c.model == "me5-small"][0]
    curve = svc.k_scaling(choice, ["sw", "aym", "de"], XNLI_15, 2490, [1, 2, 4], sets_per_k=4)
    assert set(curve["k"]) == {1, 2, 4}
    assert set(curve["target_class"]) == {"xnli-low", "absent", "high"}
    slopes = slope_per_doubling(curve)
    assert set(slopes) == {"xnli-low", "absent", "high"}
    assert all(np.isfinite(v) for v in slopes.values())
