"""Locally scaled intervals (#21 study): a scale that marks a hard target widens it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from predictor.studies.interval_scales import main, scale_of, scaled_coverage, study


def _oof(rng: np.random.Generator) -> pd.DataFrame:
    """12 targets of one group; target t11 is off by 8 and a comparator disagrees there."""
    rows = []
    for i in range(12):
        off = 8.0 if i == 11 else 0.0
        for _ in range(20):
            y = 60 + rng.normal(0, 1)
            pred = y + off + rng.normal(0, 1)
            rows.append({"dataset": "d", "target": f"t{i:02d}", "mm": "m|probe",
                         "pclass": "present", "y": y, "min+within": pred,
                         "entropy_ols": pred - (7.0 if i == 11 else rng.normal(0, 1))})
    return pd.DataFrame(rows)


def test_a_scale_that_knows_the_hard_target_covers_it() -> None:
    oof = _oof(np.random.default_rng(0))
    res = study(oof)
    assert set(res) == {"constant", "vs entropy OLS"}         # only scales it has columns for
    const, scaled = res["constant"]["m · present"], res["vs entropy OLS"]["m · present"]
    assert const["worst_target"] == "t11" and const["worst_coverage"] < 0.1
    assert scaled["per_target"]["t11"] > 0.9
    assert scaled["coverage"] > const["coverage"]


def test_constant_scale_is_the_shipped_interval() -> None:
    rng = np.random.default_rng(1)
    y, pred = rng.normal(0, 1, 60), rng.normal(0, 1, 60)
    t = np.repeat(np.arange(6), 10).astype(str)
    out = scaled_coverage(y, pred, np.ones(60), t)
    from predictor.intervals import target_weighted_quantile
    keep = t != "0"
    q = target_weighted_quantile(np.abs(y - pred)[keep], t[keep], 0.1)
    assert out["per_target"]["0"] == pytest.approx((np.abs(y - pred)[~keep] <= q).mean())
    assert np.array_equal(scale_of(pd.DataFrame({"a": [1.0]}), ()), [1.0])


def test_cli_refuses_a_table_that_is_not_one(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path / "missing.parquet")])
    assert e.value.code == 2 and "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"x": [1]}).to_parquet(bad)
    with pytest.raises(SystemExit) as e:
        main([str(bad)])
    assert e.value.code == 2 and "lacks columns" in capsys.readouterr().err
    good = tmp_path / "good.parquet"
    _oof(np.random.default_rng(2)).to_parquet(good)
    assert main([str(good), "--out", str(tmp_path / "r.json")]) == 0
    assert "| vs entropy OLS |" in capsys.readouterr().out and (tmp_path / "r.json").is_file()
