"""The pair-conditions study (#21): the shipped spec is recovered from the card, the
served columns follow the serving imputer's rule, and the summary reads each condition
against its reference. The full run needs the condition profiles (docs/results.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from predictor.studies import pair_conditions as pc

REPO = Path(__file__).resolve().parent.parent
CARD = REPO / "models" / "predictor" / "model_card.json"


def test_the_shipped_spec_is_recovered_from_the_card() -> None:
    card = json.loads(CARD.read_text(encoding="utf-8"))
    specs = pc.shipped_specs(card)
    assert {m: s.name for m, s in specs.items()} == card["selected_per_design"]["unseen-target"]
    with pytest.raises(ValueError, match="not in this version's grid"):
        pc.shipped_specs({"selected_per_design": {"unseen-target": {"x|y": "magic(alpha=1)"}}})


def test_served_columns_take_the_class_mean_of_the_same_configuration() -> None:
    names = ["k", "has_label_free", "prof_src_entropy_max"]
    X = np.array([[1, 1, 1.5], [1, 1, 1.3], [2, 1, 1.0], [1, 1, 0.2]])
    meta = pd.DataFrame({"mm": ["m|p"] * 4, "pclass": ["present", "present", "present", "absent"]})
    cfg = np.array(["a", "a", "b", "a"])
    Xt = np.array([[1, 0, 0.0], [2, 0, 0.0], [3, 0, 0.0]])
    mt = pd.DataFrame({"mm": ["m|p"] * 3, "pclass": ["present", "present", "present"]})
    out = pc.served_columns(X, Xt, names, meta, mt, cfg, np.array(["a", "b", "zz"]))
    assert out[:, 0].tolist() == [1, 2, 3]                          # other columns untouched
    assert out[:, 2].tolist() == pytest.approx([1.4, 1.0, (1.5 + 1.3 + 1.0) / 3])
    assert out[:, 1].tolist() == [1, 1, 1]


def test_summary_reads_each_condition_against_its_reference() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for cond, shift in (("as-drawn", 0.0), ("size-control", 0.0), ("skew-entailment", -4.0)):
        for t in ("aaa", "bbb", "ccc", "ddd"):
            y = rng.normal(50, 5, 20)
            for mode in ("read", "served"):
                rows.append(pd.DataFrame({"dataset": "own:xnli", "target": t, "pclass": "present",
                                          "y": y, "condition": cond, "mode": mode,
                                          "prediction": y + 1.0 + shift, "pairs_read": True}))
    s = pc.summarise(pd.concat(rows, ignore_index=True), {"present": 2.0})
    skew = s["own:xnli"]["skew-entailment"]["served"]
    assert skew["reference"] == "size-control" and skew["diff"] == pytest.approx(2.0)
    assert skew["bias"] == pytest.approx(-3.0) and skew["coverage"] == 0.0
    assert s["own:xnli"]["size-control"]["served"]["coverage"] == 1.0
    assert "as-drawn" in pc.format_table(s)


def test_missing_condition_profiles_are_named_with_the_fix(tmp_path: Path, capsys) -> None:
    models = tmp_path / "models"
    (models / "predictor").mkdir(parents=True)
    (models / "predictor" / "model_card.json").write_text(CARD.read_text(encoding="utf-8"))
    rc = pc.main(["--models-dir", str(models), "--conditions", "text-only",
                  "--out", str(tmp_path / "o.json")])
    err = capsys.readouterr().err
    assert rc == 2 and "profiles" in err and "build it first" in err
    with pytest.raises(SystemExit) as e:
        pc.main(["--conditions", "sideways", "--out", str(tmp_path / "o.json")])
    assert e.value.code == 2
