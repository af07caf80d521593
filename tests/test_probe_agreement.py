"""The probe-agreement study (#21): agreement, kappa and entropy of per-source probe labels,
and the leave-one-target-out comparison of feature sets. No model is loaded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from predictor.studies.probe_agreement import agreement_stats, loto_mae, summarise, table


def test_agreement_kappa_and_entropy_of_known_labels() -> None:
    same = np.array([[0, 1, 2, 0, 1, 2]] * 3)
    s = agreement_stats(same)
    assert s["agreement"] == 1.0 and s["kappa"] == pytest.approx(1.0)
    assert s["entropy_mean"] == pytest.approx(np.log2(3)) == s["entropy_max"]
    # two probes that always say entailment agree fully, but kappa gives no credit for it
    collapsed = agreement_stats(np.zeros((2, 6), int))
    assert collapsed["agreement"] == 1.0 and collapsed["kappa"] == 0.0
    assert collapsed["entropy_max"] == 0.0
    # independent probes: agreement near chance, kappa near 0
    rng = np.random.default_rng(0)
    noise = agreement_stats(rng.integers(0, 3, (4, 20000)))
    assert noise["agreement"] == pytest.approx(1 / 3, abs=0.01)
    assert abs(noise["kappa"]) < 0.02


def test_loto_mae_is_zero_for_an_exact_line_and_leaves_each_target_out() -> None:
    f = pd.DataFrame({"x": np.arange(6.0), "level": 2 * np.arange(6.0) + 1})
    assert loto_mae(f, ["x"]) == pytest.approx(0.0, abs=1e-9)
    f.loc[5, "level"] += 6.0        # an outlier: its own prediction never saw it
    assert loto_mae(f, ["x"]) > 1.0


def test_summary_reports_feature_sets_and_condition_shifts_in_sds() -> None:
    rng = np.random.default_rng(1)
    langs = [f"l{i}" for i in range(8)]
    level = pd.Series(np.linspace(50, 60, 8), index=langs)
    feats = pd.DataFrame({"dataset": "xnli", "language": langs,
                          "entropy_mean": np.linspace(1.3, 1.55, 8) + rng.normal(0, 0.01, 8),
                          "entropy_max": 1.58, "agreement": rng.uniform(0.7, 0.8, 8),
                          "kappa": np.linspace(0.6, 0.7, 8)})
    skewed = feats.assign(entropy_mean=feats["entropy_mean"] - 0.2)
    s = summarise(feats, level, {"skew-entailment": skewed})
    x = s["datasets"]["xnli"]
    assert x["targets"] == 8 and x["correlation"]["kappa"] > 0.99
    assert x["loto_mae"]["kappa"] < x["loto_mae"]["agreement"]
    shift = s["conditions"]["skew-entailment"]
    assert shift["kappa"] == 0.0 and shift["entropy_mean"] < -2.0
    assert "| skew-entailment |" in table(s)
