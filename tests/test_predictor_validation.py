"""Grouped CV protocols (no leaks), baselines vs learned models, conformal intervals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from predictor.dataset import load_sumeval
from predictor.intervals import calibrate, conformal_quantile, intervals
from predictor.models import PerTargetMean, make_candidates
from predictor.validation import (LeakError, assert_no_leak, cross_validate, protocol_splits,
                                  select_model)

FAST = ("global_mean", "target_mean", "k_only", "ridge")


@pytest.fixture(scope="module")
def sumeval(published_dir: Path) -> pd.DataFrame:
    return load_sumeval(published_dir)


@pytest.fixture(scope="module")
def cv(sumeval: pd.DataFrame):
    cands = make_candidates()
    return cross_validate(sumeval, {n: cands[n] for n in FAST})


def test_unseen_target_folds_never_share_a_target(sumeval: pd.DataFrame) -> None:
    splits = protocol_splits(sumeval, "unseen_target")
    assert len(splits) == 15
    covered = np.zeros(len(sumeval), dtype=int)
    for train, test in splits:
        train_t, test_t = set(sumeval.target.iloc[train]), set(sumeval.target.iloc[test])
        assert len(test_t) == 1 and not train_t & test_t
        covered[test] += 1
    assert (covered == 1).all()


def test_unseen_config_folds_never_share_a_config(sumeval: pd.DataFrame) -> None:
    splits = protocol_splits(sumeval, "unseen_config")
    assert len(splits) == 10
    for train, test in splits:
        assert not set(sumeval.config_id.iloc[train]) & set(sumeval.config_id.iloc[test])
        # the same source set under the other model is a different config (group = model+config)
        assert set(sumeval.model.iloc[test]) <= {"xlmr", "tulrv6"}


def test_random_folds_cover_every_row_once(sumeval: pd.DataFrame) -> None:
    splits = protocol_splits(sumeval, "random")
    assert len(splits) == 5
    assert sorted(np.concatenate([t for _, t in splits]).tolist()) == list(range(len(sumeval)))


def test_assert_no_leak_catches_a_leaky_split(sumeval: pd.DataFrame) -> None:
    groups = sumeval.target_iso3.to_numpy()
    leaky = [(np.arange(0, 600), np.arange(590, 700))]
    with pytest.raises(LeakError, match="fold 0"):
        assert_no_leak(leaky, groups)
    assert_no_leak(protocol_splits(sumeval, "unseen_target"), groups)


def test_cv_table_has_every_protocol_and_candidate(cv) -> None:
    t = cv.table.set_index(["protocol", "model"])
    assert len(t) == 12
    unseen = t.loc["unseen_target"]
    # an unseen target has no mean of its own: the per-target baseline falls back to the
    # global mean, so identical numbers prove no target leaked into its training folds
    assert unseen.loc["target_mean", "mae"] == pytest.approx(unseen.loc["global_mean", "mae"])
    assert unseen.loc["global_mean", "mae"] == pytest.approx(2.769, abs=0.01)
    # features beat every baseline on unseen targets, and the choice follows
    assert unseen.loc["ridge", "mae"] < 0.8 * unseen.loc["global_mean", "mae"]
    assert unseen.loc["ridge", "spearman_within_target"] > 0.6
    assert select_model(cv.table) == "ridge"
    # a seen target's mean is far better when targets are not held out
    assert t.loc[("random", "target_mean"), "mae"] < t.loc[("random", "global_mean"), "mae"] - 1
    assert not np.isnan(cv.oof[("unseen_target", "ridge")]).any()


def test_per_target_mean_falls_back_to_the_global_mean() -> None:
    X = pd.DataFrame({"target": ["sw", "swh", "de"]})
    m = PerTargetMean().fit(X, [60.0, 70.0, 80.0])
    assert m.predict(pd.DataFrame({"target": ["sw", "de", "fr"]})).tolist() == \
        pytest.approx([65.0, 80.0, 70.0])


def test_conformal_quantile_is_the_finite_sample_one() -> None:
    s = np.arange(1, 20, dtype=float)                 # n = 19
    assert conformal_quantile(s, 0.1) == 18.0         # ceil(20 * 0.9) = 18th smallest
    assert conformal_quantile(s[:5], 0.1) == np.inf   # too few to cover 90 %
    p, lo, hi = intervals(np.array([50.0, 99.0]), 2.0)
    assert lo.tolist() == [48.0, 97.0] and hi.tolist() == [52.0, 100.0]


def test_interval_coverage_on_held_out_targets_is_sane(sumeval: pd.DataFrame, cv) -> None:
    y = sumeval.score.to_numpy()
    calib = calibrate(y, cv.oof[("unseen_target", "ridge")], sumeval.target_iso3.to_numpy(),
                      alpha=0.1)
    # each language calibrated without its own residuals: near the 90 % nominal overall,
    # far from it for the hardest language (its errors are one shared bias)
    assert 0.75 <= calib.heldout_coverage <= 0.97
    assert calib.heldout_coverage_min_group < calib.heldout_coverage
    assert 2.0 < calib.quantile < 8.0
    assert calib.mean_width == pytest.approx(2 * calib.quantile)
    wide = calibrate(y, cv.oof[("unseen_target", "ridge")], sumeval.target_iso3.to_numpy(),
                     alpha=0.02)
    assert wide.quantile > calib.quantile and wide.heldout_coverage > calib.heldout_coverage
    scaled = calibrate(y, cv.oof[("unseen_target", "ridge")], sumeval.target_iso3.to_numpy(),
                       alpha=0.1, scale=np.full(len(y), 2.0))
    assert scaled.quantile == pytest.approx(calib.quantile / 2) and scaled.normalized
