"""``xlt-measure bench`` (encoder) on a small real subset: every row timed, JSON consistent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


def _ratio_consistent(ratio: float, num: float, den: float, rate_step: float = 0.1,
                      ratio_step: float = 0.01) -> bool:
    """Could ``ratio`` (rounded to ``ratio_step``) be num/den before both were rounded to
    ``rate_step``?"""
    h = rate_step / 2
    lo = (num - h) / (den + h) - ratio_step / 2
    hi = (num + h) / max(den - h, 1e-9) + ratio_step / 2
    return lo - 1e-9 <= ratio <= hi + 1e-9


def test_ratio_consistent_matches_rounding() -> None:
    # the CI failure of issue #13: 10.95 from unrounded rates vs 10.918 from rounded ones
    assert round(87.24 / 7.966, 2) == 10.95 and round(87.2 / 8.0, 3) == 10.9
    assert _ratio_consistent(10.95, round(87.24, 1), round(7.966, 1))
    assert not _ratio_consistent(12.0, 87.2, 7.97)


@pytest.mark.slow
def test_bench_cli_small(nli_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                         monkeypatch: pytest.MonkeyPatch) -> None:
    from measure import cli
    from measure.encoders.encoder import usable_cpus
    monkeypatch.setattr("measure.benchmarks.encoder_bench.default_cache_path", lambda: tmp_path / "emb.sqlite")
    assert cli.main(["bench", "--texts", "96", "--rounds", "1", "--eval-cap", "45",
                     "--train-cap", "150", "--data-dir", str(nli_dir)]) == 0
    out = capsys.readouterr().out
    cpus = usable_cpus()
    for row in ("torch-fp32", f"torch-fp32 x{cpus}", "ort-fp32", "ort-int8-s8",
                "ort-int8-s8 x1", "ort-int8"):
        assert f"\n{row} " in out
    r = json.loads(out.strip().splitlines()[-1])
    assert r["n_texts"] == 96 and r["rounds"] == 1 and r["parallel_batches"] == cpus
    rates = ("torch_texts_per_s", "torch_parallel_texts_per_s", "ort_fp32_texts_per_s",
             "ort_int8_texts_per_s", "ort_int8_serial_texts_per_s", "ort_int8_u8_texts_per_s")
    assert all(r[k] > 0 for k in rates)
    # the JSON rounds rates to 0.1 and ratios to 0.01, but computes each ratio from the
    # unrounded rates: the ratio of the rounded rates agrees only within that rounding
    assert _ratio_consistent(r["speedup"], r["ort_int8_texts_per_s"], r["torch_texts_per_s"])
    assert _ratio_consistent(r["speedup_vs_torch_parallel"], r["ort_int8_texts_per_s"],
                             r["torch_parallel_texts_per_s"])
    for key in ("f1_fp32", "f1_int8", "f1_int8_u8"):
        assert set(r[key]) == {"en", "de", "sw"}
        assert all(0 < v <= 100 for v in r[key].values())
    drift = np.mean(list(r["f1_int8"].values())) - np.mean(list(r["f1_fp32"].values()))
    assert r["f1_drift"] == pytest.approx(drift, abs=0.02)
    assert r["f1_fp32"]["en"] > 40      # 150 English pairs already beat chance (33.3)
