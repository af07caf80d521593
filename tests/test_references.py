"""The reference predictors: each does what its name says, on rows where the answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from measure.knowledge.nli import CHANCE
from predictor.models.references import (ChanceForAbsent, ConfigLookup, EntropyOLS, Relatives,
                                         make_references)
from predictor.selection.ranking import top1_regret


def _meta(rows):
    return pd.DataFrame(rows, columns=["mm", "pclass", "target", "config"])


def test_chance_for_absent_targets_and_class_means_otherwise() -> None:
    meta = _meta([("m|p", "present", "deu", {"eng": 1.0}), ("m|p", "present", "fra", {"eng": 1.0}),
                  ("m|p", "absent", "ayr", {"eng": 1.0})])
    est = ChanceForAbsent().fit(None, np.array([60.0, 70.0, 40.0]), meta)
    q = _meta([("m|p", "absent", "quy", {"eng": 1.0}), ("m|p", "present", "swh", {"eng": 1.0})])
    assert est.predict(None, q).tolist() == pytest.approx([CHANCE, 65.0])


def test_config_lookup_adds_the_configurations_deviation_on_other_targets() -> None:
    a, b = {"eng": 1.0}, {"deu": 1.0}
    meta = _meta([("m|p", "present", t, c) for t in ("fra", "spa") for c in (a, b)])
    y = np.array([60.0, 50.0, 70.0, 60.0])          # a is +5 over each target's mean
    est = ConfigLookup().fit(None, y, meta)
    q = _meta([("m|p", "present", "ita", a), ("m|p", "present", "ita", b)])
    assert est.predict(None, q).tolist() == pytest.approx([65.0, 55.0])


def test_relatives_read_the_same_configuration_on_the_nearest_targets() -> None:
    a = {"eng": 1.0}
    meta = _meta([("m|p", "present", "por", a), ("m|p", "present", "jpn", a)])
    est = Relatives("geographic", k=1).fit(None, np.array([60.0, 40.0]), meta)
    # Spanish is next to Portugal, far from Japan
    assert est.predict(None, _meta([("m|p", "present", "spa", a)]))[0] == pytest.approx(60.0)


def test_entropy_ols_is_fitted_per_class_on_its_three_columns() -> None:
    names = ["log_target_examples", "prof_src_entropy_mean", "prof_src_entropy_max", "k"]
    rng = np.random.default_rng(0)
    n = 40
    X = np.column_stack([np.zeros(n), rng.uniform(0, 1.5, n), rng.uniform(0, 1.5, n),
                         rng.integers(1, 5, n)])
    y = 30 + 10 * X[:, 1] + 5 * X[:, 2]
    targets = [f"t{i % 8}" for i in range(n)]
    meta = _meta([("m|p", "present", t, {"eng": 1.0}) for t in targets])
    est = EntropyOLS(names).fit(X, y, meta)
    np.testing.assert_allclose(est.predict(X, meta), y, atol=1e-8)


def test_every_reference_is_made_from_the_fold_names() -> None:
    refs = make_references(["k", "dist_geographic_wmean"])
    assert {"chance_absent", "class_config", "relatives_geographic", "relatives_model",
            "entropy_ols", "litmus_gbm"} <= set(refs)


def test_top1_regret() -> None:
    y = np.array([50.0, 55.0, 53.0])
    assert top1_regret(y, np.array([0.1, 0.9, 0.5])) == 0.0
    assert top1_regret(y, np.array([0.9, 0.1, 0.5])) == pytest.approx(5.0)
    assert top1_regret(y, np.array([1.0, 1.0, 0.0])) == pytest.approx(2.5)   # ties: their mean
