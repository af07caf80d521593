"""The meta-analysis: resource groups, grouped effect estimates, and the report files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from predictor.analysis import (LOW_RESOURCE_XNLI, correlation_table, diminishing_point,
                                resource_group, scaling_effects, zero_shot_rows)
from predictor.dataset import build_dataset


def test_resource_groups_are_explicit() -> None:
    assert LOW_RESOURCE_XNLI == ("ar", "hi", "sw", "tr", "ur")     # bottom third by CC-100 size
    assert {resource_group(c) for c in ["aym", "bzd", "nah", "sw", "ur"]} == {"low"}
    assert {resource_group(c) for c in ["en", "de", "zh", "th"]} == {"high"}
    assert resource_group("hrv") == "unknown"                        # size unknown: in neither


def _synthetic(slope_low: float, slope_high: float, seed: int = 0) -> pd.DataFrame:
    """Zero-shot rows with a known effect of log2(k) and target-specific intercepts."""
    rng = np.random.default_rng(seed)
    rows = []
    for target, slope in [("sw", slope_low), ("ur", slope_low), ("aym", slope_low),
                          ("nah", slope_low), ("en", slope_high), ("de", slope_high),
                          ("fr", slope_high), ("ru", slope_high)]:
        base = rng.normal(60, 5)
        for k in (1, 2, 4, 8):
            for rep in range(6):
                rows.append({"model": "m", "regime": "fixed_total", "target": target, "k": k,
                             "total_examples": 2490, "zero_shot": True,
                             "config_id": f"{k}-{rep}",
                             "score": base + slope * np.log2(k) + rng.normal(0, 0.5)})
    return pd.DataFrame(rows)


def test_scaling_effect_recovers_known_slopes() -> None:
    effects = {e.group: e for e in scaling_effects(_synthetic(2.0, -1.0, seed=1))}
    low, high = effects["low"], effects["high"]
    assert low.ci_low < 2.0 < low.ci_high and abs(low.slope_per_doubling - 2.0) < 0.2
    assert high.ci_low < -1.0 < high.ci_high
    assert low.boot_ci_low < 2.0 < low.boot_ci_high
    assert low.n_targets == 4 and low.p_value < 1e-6


def test_diminishing_returns_point() -> None:
    df = _synthetic(2.0, 2.0)
    df["log2k"] = np.log2(df["k"])
    assert diminishing_point(df) is None                 # linear in log2 k: never diminishes
    df["score"] = df["score"] - 0.8 * df["log2k"] ** 2   # gain per doubling 2 - 1.6*log2k
    point = diminishing_point(df)
    assert point is not None and 1.5 < point < 2.5       # 2 - 1.6 l < 0.5  <=>  k > 2^0.94


def test_correlation_table_has_cis() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=200)
    tab = correlation_table(pd.DataFrame({"x": x, "noise": rng.normal(size=200)}),
                            pd.Series(2 * x + rng.normal(size=200)))
    top = tab.iloc[0]
    assert top["feature"] == "x" and top["n"] == 200 and top["pearson"] > 0.8
    assert top["pearson_ci"][0] < top["pearson"] < top["pearson_ci"][1]


def test_report_on_published_data(tmp_path: Path, published_dir: Path) -> None:
    from predictor.report import build_report
    frame = build_dataset([], include_published=True, published_dir=published_dir)
    assert zero_shot_rows(frame)["zero_shot"].all()
    summary = build_report(frame, tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "per doubling" in text and "Pearson" in text
    assert {(e["model"], e["group"]) for e in summary["effects"]} == {
        ("xlmr", "low"), ("xlmr", "high"), ("tulrv6", "low"), ("tulrv6", "high")}
    for e in summary["effects"]:
        assert e["ci_low"] <= e["slope_per_doubling"] <= e["ci_high"]
    for fig in summary["figures"]:
        assert (tmp_path / fig).stat().st_size > 10_000
    assert json.loads((tmp_path / "summary.json").read_text())["low_resource_xnli"] == list(LOW_RESOURCE_XNLI)
