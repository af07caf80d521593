"""predictor.studies.noise_floor: configuration features explain what they should, no more."""

import numpy as np
import pandas as pd
import pytest

from predictor.dataset import config_id
from predictor.studies.noise_floor import design_floor, noise_floor

LANGS = ["en", "de", "fr", "es", "ru", "zh"]


def _frame(signal: float, run_sd: float, seed: int = 0) -> pd.DataFrame:
    """40 configurations x 6 targets: score = target mean + signal * log size of 'de'
    + a run effect shared by all targets of a configuration + small noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(40):
        tc = {lang: int(rng.choice([1000, 10000, 100000])) for lang in
              rng.choice(LANGS, size=rng.integers(1, 5), replace=False)}
        run = rng.normal(0, run_sd)
        for i, t in enumerate(LANGS):
            score = 70 + i + signal * np.log1p(tc.get("de", 0)) + run + rng.normal(0, 0.05)
            rows.append({"origin": "own", "model": "m", "method": "probe",
                         "target_dataset": "xnli", "train_config": tc, "target": t,
                         "score": score, "config_id": config_id("m", "probe", tc)})
    return pd.DataFrame(rows)


def test_explainable_variation_is_explained():
    r = design_floor(_frame(signal=0.5, run_sd=0.0))
    assert r["explained"] > 0.5
    assert r["mae_config_ridge"] < r["mae_target_mean"]


def test_shared_run_noise_is_not_explained():
    r = design_floor(_frame(signal=0.0, run_sd=1.0))
    # the run effect is most of the within-target spread and no feature predicts it
    assert r["run_effect_sd"] > 0.8 * r["within_target_sd"]
    assert r["explained"] < 0.1
    # ... but the in-sample oracle, which knows each run's measured shift, removes it
    assert r["oracle_explained"] > 0.5
    assert r["mae_oracle_run"] < r["mae_config_ridge"]


def test_oracle_cannot_remove_target_by_configuration_noise():
    # no run effect, no signal: what is left is cell noise that no configuration model,
    # not even one told each run's shift, can predict
    r = design_floor(_frame(signal=0.0, run_sd=0.0))
    assert r["oracle_explained"] < 0.2


def test_designs_are_never_pooled():
    a = _frame(0.5, 0.0).assign(pool="xnli/validation")
    b = _frame(0.0, 1.0, seed=1).assign(pool="xnli_mt9k/train")
    t = noise_floor(pd.concat([a, b], ignore_index=True))
    assert sorted(t["design"]) == ["own:m:probe:xnli:xnli/validation",
                                   "own:m:probe:xnli:xnli_mt9k/train"]


def test_within_set_spread_per_k_band():
    from predictor.studies.noise_floor import within_set_spread
    rows = []
    for t in ("de", "fr"):
        for j, score in enumerate([40.0, 50.0, 60.0]):           # k = 1: spread 10
            rows.append({"k": 1, "score": score, "config_id": f"a{j}", "target": t})
        for j, score in enumerate([55.0, 55.5, 56.0]):           # k = 5: spread 0.5
            rows.append({"k": 5, "score": score, "config_id": f"b{j}", "target": t})
    f = pd.DataFrame(rows).assign(origin="own", model="m", method="probe",
                                  target_dataset="xnli", regime="per_language", zero_shot=True)
    t = within_set_spread(f).set_index("k")
    assert t.loc["1", "sd_within_set"] == 10.0 and t.loc["5-8", "sd_within_set"] == 0.5
    assert t.loc["1", "sets"] == 2 and t.loc["1", "members_per_set"] == 3


def test_unseen_target_scatter_reports_every_target_and_the_needed_gain(published_dir):
    from predictor.dataset import load_sumeval
    from predictor.studies.noise_floor import unseen_target_scatter
    s = load_sumeval(published_dir)
    keep = ["en", "de", "fr", "sw", "ur", "zh"]
    frame = s[(s["model"] == "xlmr") & s["target"].isin(keep)].reset_index(drop=True)
    per_target, summary = unseen_target_scatter(frame)
    assert len(per_target) == len(keep) and len(summary) == 1
    r = summary.iloc[0]
    assert r["targets"] == len(keep)
    assert r["mae"] == pytest.approx(per_target["mae"].mean())
    assert r["diff"] == pytest.approx(per_target["diff"].mean())
    assert r["ci"][0] <= r["diff"] <= r["ci"][1]
    # the half-width of a normal CI over targets, relative to the baseline's MAE
    half = 1.96 * per_target["diff"].std(ddof=1) / np.sqrt(len(keep))
    assert r["needed"] == pytest.approx(half / r["baseline_mae"])


def test_seed_reliability_is_one_for_repeatable_and_near_zero_for_noise():
    from predictor.studies.noise_floor import seed_reliability
    rng = np.random.default_rng(0)
    rows = []
    for t in ("de", "fr", "ru"):
        for j in range(8):
            true = float(j)
            for seed in range(3):
                rows.append({"k": 3, "target": t, "config_id": f"a{j}", "seed": seed,
                             "score": true})                          # seeds agree
                rows.append({"k": 9, "target": t, "config_id": f"b{j}", "seed": seed,
                             "score": rng.normal()})                  # pure noise
    f = pd.DataFrame(rows).assign(origin="own", model="m", method="probe",
                                  target_dataset="xnli", regime="fixed_total", zero_shot=True)
    t = seed_reliability(f).set_index("k")
    assert t.loc["3-4", "seed_rho"] == pytest.approx(1.0)
    assert t.loc["3-4", "mean_of_seeds_rho"] == pytest.approx(1.0)
    assert abs(t.loc["9+", "seed_rho"]) < 0.4 and t.loc["9+", "sets"] == 3
    assert t.loc["9+", "seeds"] == 3 and t.loc["9+", "members_per_set"] == 8
