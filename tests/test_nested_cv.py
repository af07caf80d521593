"""Honest validation: dedup, nested splits without leaks, train-fold-only baselines,
per-group target-level intervals, and the measured/unseen basis switch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from predictor.dataset import load_sumeval
from predictor.intervals import calibrate_groups, quantile_for, target_weighted_quantile
from predictor.models import GroupMean
from predictor.selection.protocols import FAIR_BASELINES
from predictor.selection import (BASIS, LeakError, SelectionSettings, Spec, assert_no_leak,
                                 bootstrap_diff, dedupe, inner_splits, nested_cv, prepare,
                                 protocol_report, protocol_splits, specs_for)


@pytest.fixture(scope="module")
def sumeval(published_dir: Path) -> pd.DataFrame:
    return load_sumeval(published_dir)


@pytest.fixture(scope="module")
def prepared(sumeval: pd.DataFrame) -> pd.DataFrame:
    return prepare(sumeval)[0]


def test_dedupe_drops_only_exact_duplicates(sumeval: pd.DataFrame) -> None:
    f = sumeval.iloc[:10]
    twice = pd.concat([f, f.iloc[:4], f.iloc[:2].assign(score=f.score.iloc[:2] + 0.5)],
                      ignore_index=True)
    out, dropped = dedupe(twice)
    assert dropped == 4 and len(out) == 12                 # a different score is not a duplicate
    # another seed with the same score is a duplicate (deterministic runs)
    out2, dropped2 = dedupe(pd.concat([f, f.assign(seed=7)], ignore_index=True))
    assert dropped2 == 10 and len(out2) == 10


@pytest.mark.parametrize("protocol", ["unseen_target", "unseen_config", "random"])
def test_inner_folds_stay_inside_the_outer_training_rows(prepared: pd.DataFrame,
                                                         protocol: str) -> None:
    groups = None if protocol == "random" else \
        prepared["target_iso3" if protocol == "unseen_target" else "config_id"].to_numpy()
    for train, test in protocol_splits(prepared, protocol):
        inner = inner_splits(prepared, train, protocol)
        seen = np.concatenate([b for _, b in inner])
        # inner folds use outer training rows only, cover each once, never a test row
        assert sorted(seen.tolist()) == sorted(train.tolist())
        assert not set(seen) & set(test)
        for a, b in inner:
            assert not set(a) & set(test)
            if groups is not None:   # no target (config) on both sides of an inner fold
                assert not set(groups[a]) & set(groups[b])
        if groups is not None:      # and the outer test target never reaches inner selection
            assert not set(groups[train]) & set(groups[test])


def test_inner_leave_one_target_out_when_asked(prepared: pd.DataFrame) -> None:
    (train, test), *_ = protocol_splits(prepared, "unseen_target")
    inner = inner_splits(prepared, train, "unseen_target", logo_max=25)
    g = prepared.target_iso3.to_numpy()
    assert len(inner) == 14 and all(len(set(g[b])) == 1 for _, b in inner)
    assert not set(g[test]) & set(np.concatenate([g[a] for a, _ in inner]))
    assert len(inner_splits(prepared, train, "unseen_target", logo_max=0)) == 4


def test_leave_family_out_holds_every_americasnli_target_out_at_once(prepared) -> None:
    assert protocol_splits(prepared, "unseen_family") == []   # SumEval: one family only
    extra = prepared[prepared.target.isin(["sw", "ur", "hi"])]
    fake = pd.concat([prepared, extra.assign(target_dataset="americas_nli",
                                             target_iso3=extra.target_iso3 + "_x")],
                     ignore_index=True)
    (train, test), = protocol_splits(fake, "unseen_family")
    assert set(fake.target_dataset.iloc[test]) == {"americas_nli"}
    assert set(fake.target_dataset.iloc[train]) == {"xnli"}
    # the same language in both families would leak: refused
    with pytest.raises(LeakError):
        protocol_splits(pd.concat([prepared, extra.assign(target_dataset="americas_nli")],
                                  ignore_index=True), "unseen_family")


def test_assert_no_leak_catches_a_leaky_split(prepared) -> None:
    g = prepared.target_iso3.to_numpy()
    with pytest.raises(LeakError, match="fold 0"):
        assert_no_leak([(np.arange(0, 600), np.arange(590, 700))], g)


def test_baselines_are_fitted_on_training_folds_only(prepared: pd.DataFrame) -> None:
    # give one target an absurd score: no baseline prediction for it may move with it
    d = prepared.copy()
    d.loc[d.target == "sw", "score"] = 1000.0
    res = nested_cv(d, "unseen_target", families=("ridge",),
                    fixed=Spec("ridge", {"alpha": 1000.0}))
    sw = (d.target == "sw").to_numpy()
    for b in ("mm_mean", "mm_class_mean", "target_mean"):
        assert res.oof[b][sw].max() < 100, b           # sw's own rows never trained its baseline
        assert res.oof[b][~sw].max() > 100, b          # ... but did train the others'
    # per design: xlmr rows get the xlmr mean of the other targets, exactly
    m = sw & (d.model == "xlmr").to_numpy()
    other = d[(d.model == "xlmr") & (d.target != "sw")].score.mean()
    assert res.oof["mm_mean"][m] == pytest.approx(np.full(m.sum(), other))
    # the target-mean lookup cannot know an unseen target: it falls back to the class mean
    assert res.oof["target_mean"][sw] == pytest.approx(res.oof["mm_class_mean"][sw])


def test_group_mean_backs_off_from_target_to_class_to_design() -> None:
    meta = pd.DataFrame({"mm": ["a|p"] * 4 + ["b|p"], "pclass": ["present", "present", "absent",
                                                                  "absent", "present"],
                         "target": ["x", "y", "z", "z", "x"]})
    y = np.array([10.0, 20.0, 40.0, 60.0, 80.0])
    m = GroupMean("target_mean").fit(None, y, meta)
    q = pd.DataFrame({"mm": ["a|p", "a|p", "a|p", "c|p"], "pclass": ["absent", "absent",
                                                                     "unknown", "present"],
                      "target": ["z", "new", "new", "x"]})
    # z seen -> its mean; new absent -> absent class mean; unknown class -> design mean;
    # unknown design -> global mean
    assert m.predict(None, q).tolist() == pytest.approx([50.0, 50.0, 32.5, 42.0])


def test_nested_cv_reports_per_dataset_with_target_bootstrap(prepared: pd.DataFrame) -> None:
    res = nested_cv(prepared, "unseen_target", families=("ridge",))
    assert res.basis == "unseen-target" and len(res.choices) == 15
    # one choice per design and outer fold, made on that design's inner rows
    for c in res.choices:
        parts = dict(x.split(": ") for x in c.split("; "))
        assert set(parts) == {"xlmr|finetune", "tulrv6|finetune"}
        assert all(v.startswith("ridge(") for v in parts.values())
    assert not np.isnan(res.oof["model"]).any()
    rep = {r["dataset"]: r for r in protocol_report(prepared, res)}
    assert set(rep) == {"sumeval2022:xlmr:xnli", "sumeval2022:tulrv6:xnli"}
    for r in rep.values():
        # the best of the group means and the reference predictors, all on the same folds
        assert r["targets"] == 15 and r["best_baseline"] in FAIR_BASELINES["unseen-target"]
        assert {"mae_relatives_geographic", "mae_litmus_gbm", "mae_class_config"} <= set(r)
        lo, hi = r["diff_ci"]
        assert lo <= r["diff"] <= hi and "mae_target_mean" not in r
    seen = nested_cv(prepared, "unseen_config", families=("ridge",))
    assert seen.basis == BASIS["unseen_config"] == "measured-target"
    assert all(v.startswith("target_mean+ridge") for c in seen.choices
               for v in dict(x.split(": ") for x in c.split("; ")).values())
    rep = protocol_report(prepared, seen)
    assert all(r["best_baseline"] in ("mm_mean", "mm_class_mean", "target_mean") for r in rep)
    # a seen target's configurations are far easier than an unseen target
    assert max(r["mae"] for r in rep) < 1.0


def test_grid_has_both_bases_and_scopes_for_ridge_only() -> None:
    names = [s.name for s in specs_for("unseen-target")]
    assert any("base=mm_class" in n and "per-design" in n for n in names)
    assert sum(n.startswith("hgb(") for n in names) == 1
    assert sum(n.startswith("lasso(") for n in names) == 4 * 2 * 2   # alphas x bases x scopes
    seen = specs_for("measured-target")
    assert all(s.seen for s in seen) and sum(s.family == "hgb" for s in seen) == 2


def test_seen_target_memory_uses_the_targets_own_rows(prepared: pd.DataFrame) -> None:
    from predictor.models import SeenTargetModel
    from predictor.selection import feature_matrix, meta_of
    d = prepared[prepared.model == "xlmr"].reset_index(drop=True)
    tf, X = feature_matrix(d, np.arange(len(d)))
    meta = meta_of(d)
    m = SeenTargetModel("ridge", {"alpha": 1e6}).fit(X, d.score.to_numpy(), meta)
    # a huge alpha leaves the within-target learner flat: the target's own mean remains
    own = d.groupby("target_iso3").score.mean()
    p = pd.Series(m.predict(X, meta)).groupby(d.target_iso3).mean()
    assert p.to_numpy() == pytest.approx(own.loc[p.index].to_numpy(), abs=0.05)
    assert m.is_seen(meta).all()
    other = meta.assign(target="xxx")
    assert not m.is_seen(other).any()
    # pair memory: per (design, target, source) mean deviation from the target's mean
    assert m.pairs_ and all(k.startswith("xlmr|finetune|") for k in m.pairs_)


def test_bootstrap_ci_is_over_targets() -> None:
    a = np.array([1.0, 2.0, 3.0, 4.0])
    d, lo, hi = bootstrap_diff(a, a + 1.0)
    assert d == lo == hi == -1.0
    d, lo, hi = bootstrap_diff(np.array([0.0, 2.0, 0.0, 2.0]), np.ones(4))
    assert d == 0.0 and lo < 0 < hi


# -- intervals --------------------------------------------------------------------------------
def _synthetic(rng: np.random.Generator, n_targets: int, sd_target: float, sd_row: float,
               rows: int = 40) -> tuple[np.ndarray, np.ndarray]:
    bias = rng.normal(0, sd_target, n_targets)
    r = np.concatenate([b + rng.normal(0, sd_row, rows) for b in bias])
    return r, np.repeat([f"t{i}" for i in range(n_targets)], rows)


def test_target_weighted_quantile_counts_each_target_once() -> None:
    # one target with 1000 tiny residuals must not dominate nine targets with large ones
    r = np.concatenate([np.full(1000, 0.1), np.repeat(np.arange(1, 10, dtype=float), 5)])
    t = np.concatenate([np.full(1000, "big"), np.repeat([f"t{i}" for i in range(9)], 5)])
    assert target_weighted_quantile(r, t, 0.2) >= 8.0
    assert np.quantile(r, 0.8) == pytest.approx(0.1)     # the row-pooled one would be 0.1


def test_per_group_calibration_on_synthetic_groups() -> None:
    rng = np.random.default_rng(0)
    easy, te = _synthetic(rng, 15, 1.0, 0.5)
    hard, th = _synthetic(rng, 8, 8.0, 2.0)
    r = np.concatenate([easy, hard])
    t = np.concatenate([te, np.char.add("h", th)])
    mm = np.full(len(r), "m|probe")
    pc = np.where(np.char.startswith(t.astype(str), "h"), "absent", "present")
    cal = calibrate_groups(r, np.zeros(len(r)), t, mm, pc, alpha=0.1)
    g_easy, g_hard = cal["groups"]["m|probe|present"], cal["groups"]["m|probe|absent"]
    assert g_hard["quantile"] > 3 * g_easy["quantile"]
    # each group covered near the nominal 90% on held-out targets, not just on average
    assert 0.8 <= g_easy["coverage"] <= 0.99
    assert 0.75 <= g_hard["coverage"] <= 1.0
    # the pooled quantile would under-cover the hard group
    pooled = cal["by_model"]["m|probe"]["quantile"]
    assert np.mean(np.abs(hard) <= pooled) < np.mean(np.abs(hard) <= g_hard["quantile"])
    assert quantile_for(cal, "m|probe", "absent") == (g_hard["quantile"], "m|probe|absent")
    # a class with no calibration targets borrows the model's, then the pooled one
    assert quantile_for(cal, "m|probe", "unknown") == (pooled, "m|probe")
    assert quantile_for(cal, "x|y", "present")[1] == "pooled"
    json.dumps(cal)   # goes into the model card as is


# -- selection rule -----------------------------------------------------------------------------
def _errs_table(per_spec: dict[str, np.ndarray], rows_per_target: int = 3):
    """Inner predictions whose per-target absolute error is ``per_spec[name][t]`` (y = 0),
    one design, one dataset, targets t0.., split over two inner folds."""
    n_t = len(next(iter(per_spec.values())))
    tg = np.repeat([f"t{i}" for i in range(n_t)], rows_per_target)
    y = np.zeros(len(tg))
    half = len(tg) // 2
    folds = [np.arange(half), np.arange(half, len(tg))]
    errs = {name: [(f, np.repeat(e, rows_per_target)[f]) for f in folds]
            for name, e in per_spec.items()}
    return errs, y, tg, np.full(len(tg), "d"), np.full(len(tg), "a|p")


def test_complexity_order_simplest_first() -> None:
    order = [s.name for s in sorted(specs_for("unseen-target"), key=Spec.complexity)]
    assert order[0] == "ridge(alpha=10000)|base=mm|pooled"
    assert order[1:4] == ["ridge(alpha=10000)|base=mm_class|pooled",
                          "ridge(alpha=10000)|base=mm|per-design",
                          "ridge(alpha=10000)|base=mm_class|per-design"]
    assert order[4].startswith("ridge(alpha=1000)") and order[11].startswith("ridge(alpha=100)")
    # then the lasso, the strongest penalty (fewest columns) first, and the trees last
    assert order[12].startswith("lasso(alpha=0.3)") and order[-2].startswith("lasso(alpha=0.01)")
    assert order[-1].startswith("hgb(")


def test_one_standard_error_rule_prefers_the_simpler_spec_within_one_se() -> None:
    from predictor.selection import choose_per_design, tw_mae
    specs = specs_for("unseen-target")
    rng = np.random.default_rng(0)
    hgb = next(s.name for s in specs if s.family == "hgb")
    simple = "ridge(alpha=10000)|base=mm|pooled"
    base = 2.0 + rng.normal(0, 0.5, 14).clip(-1.5, 1.5)
    per_spec = {s.name: base + 0.5 for s in specs}              # clearly worse
    per_spec[hgb] = base                                         # lowest inner MAE
    noise = rng.normal(0, 0.3, 14)
    per_spec[simple] = base + 0.05 + noise - noise.mean()        # +0.05, SE ~0.08
    errs, y, tg, ds, mm = _errs_table(per_spec)
    best_min, score = choose_per_design(specs, errs, y, tg, ds, mm, rule="min")
    info: dict = {}
    best_1se, score_1se = choose_per_design(specs, errs, y, tg, ds, mm, rule="1se", info=info)
    assert score == score_1se
    assert best_min["a|p"].name == hgb
    assert best_1se["a|p"].name == simple
    i = info["a|p"]
    assert i["rule"] == "1se" and i["lowest"] == hgb and i["chosen"] == simple
    assert i["chosen_mae"] - i["lowest_mae"] <= i["chosen_se_of_difference"]
    # the inner score is the target-weighted MAE of tw_mae
    p = np.concatenate([b for _, b in errs[simple]])
    assert score["a|p"][simple] == pytest.approx(tw_mae(y, p, tg, ds))


def test_one_standard_error_rule_keeps_a_clearly_better_complex_spec() -> None:
    from predictor.selection import choose_per_design
    specs = specs_for("unseen-target")
    rng = np.random.default_rng(1)
    hgb = next(s.name for s in specs if s.family == "hgb")
    base = 2.0 + rng.normal(0, 0.5, 14).clip(-1.5, 1.5)
    per_spec = {s.name: base + 0.6 + rng.normal(0, 0.1, 14) for s in specs}
    per_spec[hgb] = base
    errs, y, tg, ds, mm = _errs_table(per_spec)
    for rule in ("min", "1se"):
        best, _ = choose_per_design(specs, errs, y, tg, ds, mm, rule=rule)
        assert best["a|p"].name == hgb, rule
    with pytest.raises(ValueError, match="selection rule"):
        choose_per_design(specs, errs, y, tg, ds, mm, rule="lowest")


def test_rules_share_the_inner_predictions(prepared: pd.DataFrame) -> None:
    from predictor.selection import nested_cv_rules
    d = prepared[prepared.target_iso3.isin(prepared.target_iso3.unique()[:6])] \
        .reset_index(drop=True)
    both = nested_cv_rules(d, "unseen_target", families=("ridge",))
    one = nested_cv(d, "unseen_target", families=("ridge",),
                    settings=SelectionSettings(unseen_rule="min"))
    assert set(both) == {"min", "1se"} and one.rule == "min"
    assert both["min"].choices == one.choices
    assert np.allclose(both["min"].oof["model"], one.oof["model"])
    assert both["min"].inner == both["1se"].inner        # same inner numbers, two choices
    assert all(info[m]["rule"] == "1se" for info in both["1se"].selection for m in info)
    fixed = nested_cv(d, "unseen_target", fixed=Spec("ridge", {"alpha": 1000.0}))
    assert fixed.rule == "fixed" and not fixed.selection


def test_shifted_profiles_are_predicted_by_the_same_folds_and_pooled_in_calibration(
        prepared: pd.DataFrame) -> None:
    """With shifted profiles, each held-out target is predicted twice by its fold's models
    (its own profiles, the shifted ones); the intervals are calibrated on both residual sets
    and report the coverage of each provenance."""
    from predictor import intervals
    from predictor.features import NO_PROFILES
    from predictor.selection import SHIFTED_OOF
    s = SelectionSettings(shifted_profiles_dir=NO_PROFILES)
    res = nested_cv(prepared, "unseen_target", families=("ridge",), settings=s)
    own, shifted = res.oof["model"], res.oof[SHIFTED_OOF]
    assert not np.isnan(shifted).any() and not np.allclose(own, shifted)
    y, t = prepared["score"].to_numpy(float), prepared["target_iso3"].astype(str).to_numpy()
    mm, pc = prepared["mm"].to_numpy(), prepared["pclass"].to_numpy()
    both = intervals.calibrate_groups(np.r_[y, y], np.r_[own, shifted], np.r_[t, t],
                                      np.r_[mm, mm], np.r_[pc, pc])
    cov = intervals.provenance_coverage(both, {"own": (y - own, t, mm, pc),
                                               "shifted": (y - shifted, t, mm, pc)}, 0.1)
    for name in ("own", "shifted"):
        for g, rec in cov[name].items():
            assert 0 <= rec["coverage"] <= 1 and len(rec["per_target_coverage"]) == 15
    assert "mae_shifted_profiles" in protocol_report(prepared, res)[0]
