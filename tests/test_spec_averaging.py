"""The spec-averaging study (#21): its arms come from one nested search, the averaging arms
are means of the inner CV's lowest specs, and the summary compares like with like."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from predictor.dataset import load_sumeval
from predictor.selection import SelectionSettings, nested_cv, prepare, specs_for
from predictor.selection.nested import _Rows, predict_per_design
from predictor.studies.spec_averaging import (ARMS, REFERENCE_ARM, oof_table, ranked_specs,
                                              summarise, table)


@pytest.fixture(scope="module")
def small(published_dir: Path) -> pd.DataFrame:
    d = prepare(load_sumeval(published_dir))[0]
    return d[d.target_iso3.isin(d.target_iso3.unique()[:6])].reset_index(drop=True)


def test_ranked_specs_orders_by_target_weighted_inner_mae() -> None:
    specs = specs_for("unseen-target", ("ridge",))
    idx = pd.MultiIndex.from_tuples([("a", "t1"), ("a", "t2"), ("b", "t3")])
    # dataset a's two targets average, then the two datasets average: spec 2 is lowest
    cols = {s.name: [3.0, 3.0, 3.0] for s in specs}
    cols[specs[2].name] = [1.0, 3.0, 1.0]          # (2 + 1) / 2 = 1.5
    cols[specs[5].name] = [0.0, 0.0, 4.0]          # (0 + 4) / 2 = 2.0
    ranked = ranked_specs(pd.DataFrame(cols, index=idx), specs)
    assert [s.name for s in ranked[:2]] == [specs[2].name, specs[5].name]
    assert len(ranked) == len(specs)


def test_arms_share_one_search_and_average_the_lowest_specs(small: pd.DataFrame) -> None:
    settings = SelectionSettings(within_stage=False)
    oof = oof_table(small, settings, families=("ridge",))
    assert set(ARMS) <= set(oof.columns) and oof[list(ARMS)].notna().all().all()
    # without the within-target stage, 'min' refitted here is the nested search's own choice
    nested = nested_cv(small, "unseen_target", settings=settings, families=("ridge",))
    assert np.allclose(oof["min"], oof["min+within"])
    assert np.allclose(oof["min"], nested.oof["model"])
    # mean-top3 is the mean of the three lowest inner specs, refitted on the outer fold
    inner: list = []
    from predictor.selection import nested_cv_rules
    nested_cv_rules(small, "unseen_target", rules=("min",), settings=settings,
                    families=("ridge",), inner_out=inner)
    rows, specs = _Rows.of(small), specs_for("unseen-target", ("ridge",))
    train, test = nested.splits[0]
    from predictor.selection.nested import feature_matrix
    _, X = feature_matrix(small, train)
    preds = []
    for j in range(3):
        chosen = {m: ranked_specs(t, specs)[j] for m, t in inner[0]["tables"].items()}
        preds.append(predict_per_design(chosen, X[train], rows.y[train], rows.meta.iloc[train],
                                        X[test], rows.meta.iloc[test]))
    assert np.allclose(oof["mean-top3"].to_numpy()[test], np.mean(preds, axis=0))
    assert not np.allclose(oof["mean-top3"], oof["min"])
    assert (oof["sd-top3"] >= 0).all() and (oof["sd-top5"] > 0).any()


def test_summary_compares_every_arm_with_the_reference_and_the_best_comparator() -> None:
    rng = np.random.default_rng(0)
    n = 60
    oof = pd.DataFrame({"dataset": "d", "target": np.repeat([f"t{i}" for i in range(6)], 10),
                        "y": rng.normal(50, 5, n)})
    for a in ARMS:
        oof[a] = oof["y"] + rng.normal(0, 1, n)
    oof["mean-top5"] = oof["y"]                          # perfect
    oof["sd-top5"] = 1.0                                 # a spread, not a comparator
    oof["cmp_good"] = oof["y"] + 0.5
    oof["cmp_bad"] = oof["y"] + 3.0
    s = summarise(oof)["d"]
    assert s["best_comparator"] == "cmp_good" and s["best_comparator_mae"] == pytest.approx(0.5)
    assert s["arms"]["mean-top5"]["mae"] == 0.0
    ref = s["arms"][REFERENCE_ARM]
    assert ref["vs_reference"]["diff"] == 0.0
    top5 = s["arms"]["mean-top5"]["vs_reference"]
    assert top5["diff"] == pytest.approx(-ref["mae"]) and top5["ci"][1] < 0
    assert "| d (6) | mean-top5 | 0.00 |" in table(summarise(oof))
