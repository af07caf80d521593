"""The item bootstrap of the meta-analysis (#22): items reweighted jointly across the
targets that translate them, every interval widened for item sampling and never narrowed,
point estimates unchanged; the report says what was resampled."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from measure.items import ItemPredictions
from measure.store import CellRecord, ResultStore, TargetResult, export_items, export_results
from predictor.cli import main as predict_main
from predictor.dataset import build_dataset
from predictor.metaanalysis.items import (collect_points, load_items, read_item_sds,
                                          replicate_confusions, replicate_rows, scores_from,
                                          widen_with_sds)
from predictor.metaanalysis.prepare import load_tables
from predictor.metaanalysis.report import build_report

LANGS = ["ar", "bg", "el", "en", "es", "hi", "th", "tr", "vi", "zh"]
TARGETS = {"xnli": {"sw": 50, "ur": 48, "de": 58, "fr": 57, "ru": 56},
           "americas_nli": {"aym": 36, "bzd": 37}}
N_ITEMS = {"xnli": 300, "americas_nli": 150}


def _cells(rng: np.random.Generator) -> list[tuple[str, ...]]:
    sets = [(x,) for x in LANGS]
    sets += [tuple(sorted(rng.choice(LANGS, k, replace=False))) for k in (2, 4, 8)
             for _ in range(5)]
    return sorted(set(sets))


def _predict(gold: np.ndarray, acc: float, hard: np.ndarray, rng) -> np.ndarray:
    """Right with probability ``acc`` less the item's difficulty (shared by every target and
    cell: the correlated item noise the bootstrap is for), else another label."""
    right = rng.random(len(gold)) < np.clip(acc - hard, 0.05, 0.95)
    return np.where(right, gold, (gold + rng.integers(1, 3, len(gold))) % 3)


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A grid measured through the real store with item predictions, exported."""
    base = tmp_path_factory.mktemp("items")
    rng = np.random.default_rng(0)
    gold = {ds: np.tile([0, 1, 2], n // 3) for ds, n in N_ITEMS.items()}
    hard = rng.normal(0, 0.25, N_ITEMS["xnli"])         # item difficulty, per source item
    with ResultStore(base / "s.sqlite") as store:
        for s in _cells(rng):
            for seed in (0, 1):
                cfg = {"model": "me5-small", "method": "probe", "backend": "ort-int8",
                       "train_dataset": "xnli", "train_split": "validation",
                       "regime": "fixed_total", "seed": seed, "eval_cap": 0,
                       "train_config": {x: 2490 // len(s) for x in s},
                       "params": {"classifier": "logreg", "C": 1.0}}
                results = []
                for ds, targets in TARGETS.items():
                    ids = np.arange(N_ITEMS[ds])
                    for t, level in targets.items():
                        acc = (level + 2 * np.log2(len(s))) / 100 + 0.1
                        pred = _predict(gold[ds], acc, hard[:len(ids)], rng)
                        it = ItemPredictions.of(ids, gold[ds], pred)
                        f1 = scores_from(np.array([it.confusion()], float))["macro_f1"][0]
                        results.append(TargetResult(ds, t, "test", f1, f1, len(ids),
                                                    it.confusion(), 0.1, items=it))
                store.put_cell(CellRecord(config=cfg, results=results))
        table = export_results(store, base / "me5-small-probe.parquet")
        items, _ = export_items(store, base / "items")
    return base, table, items


def test_replicates_reweight_items_and_keep_rows_without_them(measured) -> None:
    _, table, items_dir = measured
    rows = load_tables([table])
    items = load_items([items_dir])
    conf, has = replicate_confusions(rows, items, reps=4, seed=1)
    assert has.all() and conf.shape == (4, len(rows), 3, 3)
    # each replicate's total weight is the same for every row of one item set (one weight
    # per source item, shared by all targets and cells that score it)
    tot = conf.sum(axis=(2, 3))
    xnli = (rows["target_dataset"] == "xnli").to_numpy()
    assert np.allclose(tot[:, xnli], tot[:, xnli][:, :1])
    assert not np.allclose(tot[0, xnli], N_ITEMS["xnli"])           # reweighted, not the same
    # AmericasNLI rows 0..149 translate XNLI test pairs: their weights come from the same draw
    again, _ = replicate_confusions(rows, items, reps=4, seed=1)
    assert np.array_equal(conf, again)
    rep = replicate_rows(rows, conf[0])
    assert np.allclose(rep["f1_above_null"], rep["macro_f1"] - rep["null_f1"])
    # a row with no items keeps its stored matrix in every replicate
    none, has_none = replicate_confusions(rows, items.iloc[:0], reps=2)
    assert not has_none.any()
    assert np.allclose(none[1], [json.loads(c) for c in rows["confusion"]])


def test_items_widen_every_interval_and_move_no_estimate(measured, tmp_path: Path) -> None:
    _, table, items_dir = measured
    frame = build_dataset([table], include_published=False)
    plain = build_report(frame, tmp_path / "plain", measurements=[table], reps=60)
    wide = build_report(frame, tmp_path / "wide", measurements=[table], reps=60,
                        items=[items_dir], item_reps=8)
    assert "item_bootstrap" not in plain
    ib = wide["item_bootstrap"]
    assert ib["rows_with_items"] == ib["rows"] > 0 and ib["intervals_widened"] > 20
    assert ib["source_items"] == N_ITEMS["xnli"]          # AmericasNLI items are XNLI items
    points_p: dict = {}
    points_w: dict = {}
    for res, out in ((plain, points_p), (wide, points_w)):
        collect_points({k: res[k] for k in ("scaling", "per_target", "member_gaps")}, (), out)
    assert points_p.keys() == points_w.keys()
    assert all(points_p[k] == pytest.approx(points_w[k]) for k in points_p)
    grew = 0
    for p, w in zip(plain["scaling"], wide["scaling"]):
        for a, b in zip(p["per_k_mean"], w["per_k_mean"]):
            assert b["ci_low"] <= a["ci_low"] + 1e-9 and b["ci_high"] >= a["ci_high"] - 1e-9
            grew += (b["ci_high"] - b["ci_low"]) > 1.1 * (a["ci_high"] - a["ci_low"])
        assert w["boot_ci_low"] <= p["boot_ci_low"] + 1e-9
        assert w["boot_ci_high"] >= p["boot_ci_high"] - 1e-9
    assert grew > 0                # levels share the item noise of every target: they widen
    text = (tmp_path / "wide" / "report.md").read_text()
    assert "widened for item sampling" in text and "item replicates" in text
    assert "optimistic about item sampling" in (tmp_path / "plain" / "report.md").read_text()


def test_report_cli_items_errors(measured, tmp_path: Path, capsys) -> None:
    base, table, items_dir = measured
    out = tmp_path / "r"
    common = ["report", "--no-include-published", "--out", str(out)]
    assert predict_main(["report", "--out", str(out), "--items", str(items_dir)]) == 2
    assert "pass them too" in capsys.readouterr().err
    assert predict_main(common + ["--measurements", str(table), "--items",
                                  str(base / "nope")]) == 2
    assert "not a directory" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert predict_main(common + ["--measurements", str(table), "--items", str(empty)]) == 2
    assert "xlt-measure export" in capsys.readouterr().err
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "predictions.parquet").write_bytes(b"not parquet")
    (garbage / "item_sets.parquet").write_bytes(b"not parquet")
    assert predict_main(common + ["--measurements", str(table), "--items", str(garbage)]) == 2
    assert "error:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        predict_main(common + ["--measurements", str(table), "--items", str(items_dir),
                               "--item-reps", "2"])
    assert e.value.code == 2
    assert predict_main(common + ["--measurements", str(table), "--items", str(items_dir),
                                  "--item-reps", "3"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["item_bootstrap"]["replicates"] == 3
    assert pd.read_parquet(items_dir / "predictions.parquet").shape[0] == \
        summary["item_bootstrap"]["rows_with_items"]


def test_item_sds_saved_and_borrowed_widen_like_the_items_themselves(measured,
                                                                      tmp_path: Path) -> None:
    """--item-sds-out saves what --items measured; --item-sds on the same tables without
    items gives the very same intervals, and the report says the SDs are borrowed."""
    _, table, items_dir = measured
    frame = build_dataset([table], include_published=False)
    sds_file = tmp_path / "sds.json"
    wide = build_report(frame, tmp_path / "wide", measurements=[table], reps=60,
                        items=[items_dir], item_reps=8, item_sds_out=sds_file)
    sds, info = read_item_sds(sds_file)
    assert len(sds) >= wide["item_bootstrap"]["intervals_widened"] > 20
    assert info["tables"] == [str(table)] and info["replicates"] == 8
    assert sds_file.stat().st_size < 200_000
    borrowed = build_report(frame, tmp_path / "borrowed", measurements=[table], reps=60,
                            item_sds=sds_file)
    ib = borrowed["item_bootstrap"]
    assert ib["intervals_widened"] == wide["item_bootstrap"]["intervals_widened"]
    assert ib["intervals"] >= ib["intervals_widened"]
    assert ib["borrowed_from"] == {"file": str(sds_file), "tables": [str(table)],
                                   "dirs": [str(items_dir)]}
    for w, b in zip(wide["scaling"], borrowed["scaling"]):
        assert (w["boot_ci_low"], w["boot_ci_high"]) == pytest.approx(
            (b["boot_ci_low"], b["boot_ci_high"]))
    text = (tmp_path / "borrowed" / "report.md").read_text()
    assert "item SDs are borrowed" in text and "In the re-measure" in text


def test_item_sd_files_are_checked(measured, tmp_path: Path, capsys) -> None:
    base, table, items_dir = measured
    out = tmp_path / "r"
    common = ["report", "--no-include-published", "--out", str(out), "--measurements",
              str(table)]
    bad = tmp_path / "bad.json"
    for text, why in (("{", "not a readable item-SD file"),
                      ('{"format": "other"}', "not an item-SD file"),
                      (json.dumps({"format": "xlt item-sampling SDs", "version": 1, "info": {},
                                   "sds": [[[], "slope", -1.0]]}), "entry 0"),
                      (json.dumps({"format": "xlt item-sampling SDs", "version": 1, "info": {},
                                   "sds": [[[["design", "nothing-like-it"]], "slope", 1.0]]}),
                       "none of its SDs matches")):
        bad.write_text(text)
        assert predict_main(common + ["--item-sds", str(bad)]) == 2
        assert why in capsys.readouterr().err
    assert predict_main(common + ["--item-sds", str(tmp_path / "missing.json")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert predict_main(common + ["--items", str(items_dir), "--item-sds", str(bad)]) == 2
    assert "give one" in capsys.readouterr().err
    assert predict_main(common + ["--item-sds-out", str(tmp_path / "x.json")]) == 2
    assert "pass --items too" in capsys.readouterr().err
    assert predict_main(common + ["--items", str(items_dir), "--item-sds-out",
                                  str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        predict_main(["report", "--help"])
    assert e.value.code == 0
    assert "--item-sds" in capsys.readouterr().out


def test_widening_stops_at_the_range_an_estimate_can_take() -> None:
    """The target pairs one source is worth is a count: its interval never goes below 0,
    while an unbounded estimate's widens on both sides."""
    res = {"few_shot": [{"design": "few-shot", "exchange_pairs": 6.0,
                         "exchange_pairs_ci": [0.0, 27.0], "gain_first_shots": 0.8,
                         "gain_first_shots_ci": [0.1, 1.9]}]}
    sds: dict = {}
    collect_points(res, (), sds)
    assert widen_with_sds(res, {k: 2.0 for k in sds}) == 2
    rec = res["few_shot"][0]
    assert rec["exchange_pairs_ci"][0] == 0.0 and rec["exchange_pairs_ci"][1] > 27.0
    assert rec["gain_first_shots_ci"][0] < 0.1 and rec["gain_first_shots_ci"][1] > 1.9
    assert widen_with_sds(res, {k: 0.0 for k in sds}) == 0        # an SD of 0 widens nothing
