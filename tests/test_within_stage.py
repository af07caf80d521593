"""The unseen-target model's within-target stage: it learns how configurations rank within a
target from the other targets, leaves the target's level alone, survives a save/load, and
the nested CV decides on it from the outer training rows only."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from predictor import persist
from predictor.dataset import load_sumeval
from predictor.models import WITHIN_HGB, ZModel
from predictor.selection import Spec, choose_within, feature_matrix, prepare, protocol_splits


def _synthetic(n_targets: int = 12, n_configs: int = 80, seed: int = 0
               ) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Targets differ in level through x0; within a target the score follows
    |x1 - x2| (a source's distance to the target: an interaction no linear slope has)."""
    rng = np.random.default_rng(seed)
    rows, X, y = [], [], []
    for t in range(n_targets):
        level = rng.normal(0, 1)
        # the target's place on x2; the held-out t0 in the middle, where no single slope
        # on the source's x1 can order its configurations
        pos = 0.5 if t == 0 else rng.uniform(0, 1)
        for _ in range(n_configs):
            src = rng.uniform(0, 1)
            X.append([level, src, pos])
            y.append(50 + 10 * level - 4 * abs(src - pos) + rng.normal(0, 0.2))
            rows.append({"mm": "m|p", "pclass": "present", "target": f"t{t}"})
    return np.asarray(X), np.asarray(y), pd.DataFrame(rows)


def test_the_stage_orders_configurations_within_a_new_target() -> None:
    X, y, meta = _synthetic()
    test = (meta["target"] == "t0").to_numpy()
    plain = ZModel("ridge", {"alpha": 1.0}).fit(X[~test], y[~test], meta[~test])
    both = ZModel("ridge", {"alpha": 1.0}, within=WITHIN_HGB).fit(X[~test], y[~test],
                                                                    meta[~test])
    rho_plain = spearmanr(plain.predict(X[test], meta[test]), y[test]).statistic
    rho_both = spearmanr(both.predict(X[test], meta[test]), y[test]).statistic
    assert rho_both > rho_plain + 0.3 and rho_both > 0.8
    # the first stage is the same fit: within=False gives the plain model's predictions
    assert both.predict(X[test], meta[test], within=False) == \
        pytest.approx(plain.predict(X[test], meta[test]))
    # the stage re-orders but does not move the target's level (centred residuals)
    shift = np.mean(both.predict(X[test], meta[test]) - plain.predict(X[test], meta[test]))
    assert abs(shift) < 0.25 * np.std(y[test])


def test_the_stage_is_limited_to_the_designs_it_is_chosen_for() -> None:
    X, y, meta = _synthetic()
    meta2 = meta.assign(mm=np.where(meta["target"].isin(["t0", "t1", "t2", "t3"]), "a|p", "b|p"))
    m = ZModel("ridge", {"alpha": 1.0}, within=WITHIN_HGB, within_designs=["b|p"]) \
        .fit(X, y, meta2)
    assert set(m.within_regs_) == {"b|p"}


def test_the_stage_round_trips(tmp_path: Path) -> None:
    X, y, meta = _synthetic(n_targets=5, n_configs=30)
    est = ZModel("lasso", {"alpha": 0.01}, within=WITHIN_HGB).fit(X, y, meta)
    persist.save({"model": est.to_state()}, tmp_path / "m", {"selected_model": "x"})
    loaded, _ = persist.load(tmp_path / "m")
    back = ZModel.from_state(loaded["model"])
    assert back.predict(X, meta) == pytest.approx(est.predict(X, meta))
    assert back.predict(X, meta, within=False) == pytest.approx(est.predict(X, meta, within=False))


def test_the_decision_never_reads_the_outer_test_rows(published_dir: Path) -> None:
    d = prepare(load_sumeval(published_dir))[0]
    d = d[d.target_iso3.isin(d.target_iso3.unique()[:8])].reset_index(drop=True)
    train, test = protocol_splits(d, "unseen_target")[0]
    _, X = feature_matrix(d, train)
    chosen = {m: Spec("ridge", {"alpha": 100.0}, base="mm_class", scope="design")
              for m in d["mm"].unique()}
    info_a: dict = {}
    a = choose_within(d, train, "unseen_target", chosen, X, info=info_a)
    garbage = d.copy()
    garbage.loc[test, "score"] = 1e6
    info_b: dict = {}
    b = choose_within(garbage, train, "unseen_target", chosen, X, info=info_b)
    assert {m: s.name for m, s in a.items()} == {m: s.name for m, s in b.items()}
    assert info_a == info_b and set(info_a) == set(chosen)
    for m, s in a.items():   # the decision is the inner comparison it reports
        i = info_a[m]
        assert s.within == (i["inner_mae_with"] < i["inner_mae_without"])
        assert s == replace(chosen[m], within=s.within)


def test_explanations_add_up_with_the_within_stage() -> None:
    """A shipped unseen-target design with a linear first stage (ridge or lasso) and the
    within-target stage: per-feature contributions of the first stage plus the stage's
    points are the whole deviation from the base, so the Recommend page's 'why' table adds up
    to the gap it explains. (A design whose first stage is trees has no contributions.)"""
    from predictor.serving import load_predictor
    p = load_predictor(str(Path(__file__).resolve().parents[1] / "models" / "predictor"))
    fm = p.feature_model()
    linear = [k for k, m in p.unseen.items()
              if m.family in ("ridge", "lasso") and m.within_regs_.get(k) is not None]
    assert linear, "no shipped design with a linear first stage and the within stage"
    key = linear[0]
    model_name, method = key.split("|")
    sizes = 2490 if model_name == "me5-small" else 10000
    rows = pd.DataFrame([{"model": model_name, "method": method, "task": "xnli",
                          "train_config": {"en": sizes * 4, s: sizes}, "target": t}
                         for s in ("de", "hi", "zh") for t in ("yo", "eu")])
    X = p.features.transform(rows)
    within = fm.within_points(X)
    contrib = fm.contributions(X)
    assert within is not None and contrib is not None and np.abs(within).max() > 0
    meta = fm._meta(X)
    model = p.unseen[key]
    base = model.base_.predict(None, meta)
    assert contrib.sum(axis=1) + within + base == pytest.approx(fm.predict(X), abs=1e-6)
    assert model.predict(X, meta, within=False) == pytest.approx(base + contrib.sum(axis=1),
                                                                 abs=1e-6)
