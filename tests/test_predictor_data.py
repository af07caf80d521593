"""The predictor's training table: SumEval 2022 XNLI and own measurements, validated."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from measure.store import CellRecord, ResultStore, TargetResult, export_results
from predictor.dataset import (COLUMNS, DataValidationError, build_dataset, fingerprint,
                               load_sumeval, model_catalogue)


def own_store(path: Path) -> Path:
    """A small, schema-correct store written through the real ResultStore API."""
    cells = [({"en": 2490}, 0, {"en": 80.0, "de": 70.5, "aym": 38.0}),
             ({"en": 2490}, 1, {"en": 81.0, "de": 71.5, "aym": 39.0}),
             ({"en": 1245, "de": 1245}, 0, {"en": 79.0, "de": 75.0, "aym": 40.0})]
    with ResultStore(path) as store:
        for tc, seed, scores in cells:
            cfg = {"model": "me5-small", "method": "probe", "train_dataset": "xnli",
                   "train_split": "validation", "regime": "per_language", "train_config": tc,
                   "seed": seed}
            res = [TargetResult("americas_nli" if t == "aym" else "xnli", t, "test", f1, f1, 100,
                                [[1, 0, 0], [0, 1, 0], [0, 0, 1]]) for t, f1 in scores.items()]
            store.put_cell(CellRecord(config=cfg, results=res))
    return path


def test_sumeval_rows_are_on_the_0_100_scale(published_dir: Path) -> None:
    df = load_sumeval(published_dir)
    assert list(df.columns) == COLUMNS
    assert len(df) == 1200                       # 2 models x 40 configs x 15 targets
    assert df.groupby("model").size().to_dict() == {"tulrv6": 600, "xlmr": 600}
    first = df[(df.model == "xlmr")].iloc[0]     # first record of XNLI_XLMR.json
    assert first.target == "ar" and first.score == pytest.approx(80.24)
    assert first.train_config == {"bg": 100000, "de": 1000, "el": 100000, "es": 100000,
                                  "hi": 100000, "ru": 10000, "sw": 100000, "th": 10000,
                                  "tr": 1000, "ur": 10000, "vi": 100000, "zh": 100000}
    assert first.k == 12 and first.total_examples == 732000
    assert bool(first.zero_shot) is True         # ar had 0 examples
    bg = df[(df.model == "xlmr") & (df.config_id == first.config_id) & (df.target == "bg")].iloc[0]
    assert bool(bg.zero_shot) is False and bg.score == pytest.approx(83.23)
    assert df.score.between(70, 91).all()
    assert set(df.metric) == {"accuracy"} and set(df.method) == {"finetune"}
    assert df.target_iso3[df.target == "sw"].iloc[0] == "swh"
    assert df.config_id.nunique() == 80


def test_own_measurements_from_store_and_export_agree(tmp_path: Path, published_dir: Path) -> None:
    store = own_store(tmp_path / "xlt.sqlite")
    with ResultStore(store, readonly=True) as s:
        export_results(s, tmp_path / "table.parquet")
    a = build_dataset([store], include_published=False)
    b = build_dataset([tmp_path / "table.parquet"], include_published=False)
    assert len(a) == 9 and set(a.origin) == {"own"} and set(a.metric) == {"macro_f1"}
    assert fingerprint(a) == fingerprint(b)
    aym = a[(a.target == "aym") & (a.seed == 1)].iloc[0]
    assert aym.score == 39.0 and aym.target_iso3 == "ayr" and bool(aym.zero_shot)
    assert aym.target_dataset == "americas_nli" and aym.regime == "per_language"
    de = a[(a.target == "de") & (a.k == 2)].iloc[0]
    assert not de.zero_shot and de.train_config == {"de": 1245, "en": 1245}
    both = build_dataset([store], published_dir=published_dir)
    assert len(both) == 1209
    cat = {(m["model"], m["method"]): m for m in model_catalogue(both)}
    assert cat[("me5-small", "probe")]["origin"] == "own"
    assert cat[("me5-small", "probe")]["typical_n_per_language"] == 2490
    assert cat[("xlmr", "finetune")]["metric"] == "accuracy"


def _export(tmp_path: Path, **override) -> Path:
    row = {"cell_hash": "h", "model": "me5-small", "method": "probe", "train_dataset": "xnli",
           "train_split": "validation", "regime": "per_language",
           "train_config": json.dumps({"en": 10}), "k": 1, "total_examples": 10, "seed": 0,
           "target_dataset": "xnli", "target_language": "de", "target_split": "test",
           "macro_f1": 50.0, "accuracy": 50.0, "n": 10}
    rows = [row, {**row, **override}]
    path = tmp_path / "bad.parquet"
    pd.DataFrame(rows).to_parquet(path)
    return path


def test_malformed_json_row_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match=r"row 1: train_config is not valid JSON"):
        build_dataset([_export(tmp_path, train_config='{"en": 10')], include_published=False)


def test_unknown_languages_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match=r"row 1.*unknown language code 'xq'"):
        build_dataset([_export(tmp_path, train_config='{"xq": 10}')], include_published=False)
    with pytest.raises(DataValidationError, match=r"row 1: target.*unknown language code 'qqq1'"):
        build_dataset([_export(tmp_path, target_language="qqq1")], include_published=False)


def test_bad_sizes_scores_and_columns_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="whole number"):
        build_dataset([_export(tmp_path, train_config='{"en": -3}')], include_published=False)
    with pytest.raises(DataValidationError, match="no language with n > 0"):
        build_dataset([_export(tmp_path, train_config='{"en": 0}')], include_published=False)
    with pytest.raises(DataValidationError, match="not in 0-100"):
        build_dataset([_export(tmp_path, macro_f1=0.8 * 1000)], include_published=False)
    path = tmp_path / "cols.parquet"
    pd.DataFrame([{"model": "x"}]).to_parquet(path)
    with pytest.raises(DataValidationError, match="missing columns"):
        build_dataset([path], include_published=False)
    with pytest.raises(FileNotFoundError, match="xlt-measure export"):
        build_dataset([tmp_path / "nope.parquet"], include_published=False)
    with pytest.raises(DataValidationError, match="no training data"):
        build_dataset([], include_published=False)


def test_single_pool_keeps_one_pool_per_design():
    from predictor.dataset import single_pool
    base = {"origin": "own", "model": "me5-small", "method": "probe", "target": "de",
            "score": 50.0}
    frame = pd.DataFrame([{**base, "pool": "xnli/validation"}] * 3
                         + [{**base, "pool": "xnli_mt9k/train"}] * 2
                         + [{**base, "model": "xlmr", "method": "finetune",
                             "pool": "published"}])
    kept, chosen, dropped = single_pool(frame)
    assert chosen == {"me5-small|probe": "xnli/validation", "xlmr|finetune": "published"}
    assert dropped == 2 and len(kept) == 4
    kept, chosen, dropped = single_pool(frame, {"me5-small|probe": "xnli_mt9k/train"})
    assert chosen["me5-small|probe"] == "xnli_mt9k/train" and dropped == 3
    with pytest.raises(DataValidationError, match="no rows"):
        single_pool(frame, {"me5-small|probe": "nope/train"})


def test_fit_rows_use_one_pool_per_design(capsys):
    """`xlt-predict fit`'s rows: the shipped table has two pools; only the largest is kept
    unless --pool says otherwise, and the card's training_data will say so."""
    import argparse

    from predictor.cli import pool_choice, training_frame
    repo = Path(__file__).resolve().parents[1]
    args = argparse.Namespace(measurements=[repo / "models/measurements/me5-small-probe.parquet"],
                              include_published=False, published_dir=None, candidates=None,
                              pool=None)
    frame, info = training_frame(args)
    assert set(frame["pool"]) == {"xnli/validation"}
    assert info["pools"] == {"me5-small|probe": "xnli/validation"}
    assert info["rows_other_pools_excluded"] > 0
    assert "never pooled" in capsys.readouterr().err
    args.pool = [pool_choice("me5-small|probe=xnli_mt9k/train")]
    frame, info = training_frame(args)
    assert set(frame["pool"]) == {"xnli_mt9k/train"}
    with pytest.raises(argparse.ArgumentTypeError):
        pool_choice("me5-small=xnli")


def test_one_split_keeps_whole_splits_unless_a_part_is_chosen() -> None:
    from predictor.dataset import DataValidationError, one_split
    f = pd.DataFrame({"target_dataset": ["xnli", "americas_nli", "americas_nli", "americas_nli"],
                      "target_split": ["test", "test", "test/A-of-2", "test/B-of-2"],
                      "score": [1.0, 2.0, 3.0, 4.0]})
    kept, chosen = one_split(f)
    assert kept["score"].tolist() == [1.0, 2.0] and chosen == {}
    kept, chosen = one_split(f, {"americas_nli": "test/B-of-2"})
    assert kept["score"].tolist() == [1.0, 4.0] and chosen == {"americas_nli": "test/B-of-2"}
    with pytest.raises(DataValidationError, match="no americas_nli rows scored on split"):
        one_split(f, {"americas_nli": "test/C-of-2"})
    with pytest.raises(DataValidationError, match="no target dataset"):
        one_split(f, {"nope": "test"})


def test_centred_probe_is_its_own_method_and_few_shot_cells_never_train() -> None:
    """A centred probe and a cell trained on labelled target pairs share model, method and
    train_config with plain zero-shot cells; the predictor must not pool them."""
    from predictor.dataset import tidy_own
    base = {"model": "me5-small", "method": "probe", "regime": "fixed_total",
            "train_config": json.dumps({"en": 2490}), "target_language": "sw",
            "target_dataset": "xnli", "macro_f1": 55.0, "seed": 0, "train_dataset": "xnli",
            "train_split": "validation", "target_split": "test"}
    plain = dict(base, config_json=json.dumps({"params": {"C": 1.0}}))
    centred = dict(base, config_json=json.dumps({"params": {"centre": "language"}}))
    shots = dict(base, config_json=json.dumps({"params": {},
                                               "target_shots": {"xnli/validation:sw": 25}}))
    rows = tidy_own(pd.DataFrame([plain, centred, shots]))
    assert sorted(rows["method"]) == ["probe", "probe-centred"]


def test_stored_options_read_centring_and_shots() -> None:
    from measure.cell import method_label, own_shots, stored_options
    assert stored_options(None) == ("none", {})
    assert stored_options("not json") == ("none", {})
    centre, shots = stored_options(json.dumps({"params": {"centre": "language"},
                                               "target_shots": {"xnli/validation:sw": 25,
                                                                "americas_nli/dev:aym": 100}}))
    assert method_label("probe", centre) == "probe-centred"
    assert method_label("probe", "none") == "probe"
    assert own_shots(shots, "sw") == 25 and own_shots(shots, "aym") == 100
    assert own_shots(shots, "ur") == 0
