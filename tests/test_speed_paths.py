"""The predictor's batched fast paths give what a straightforward per-row computation gives.

``recommend`` and ``predict`` featurise and score thousands of rows in one call: each
distinct configuration is keyed, converted and matrix-encoded once (shared between the rows
of a source set's targets), the measured-target pair memory is summed in array ops, and
each row goes through one point model. These tests check the results against rows predicted
one at a time (no sharing, no batching), on the shipped predictor. No timings here: speed is
measured by ``python -m app.bench_browser`` and written up in docs/benchmarks.md.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from predictor.serving import load_predictor

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "predictor"
COLUMNS = ["prediction", "lower", "upper", "basis", "out_of_support", "reason",
           "interval_group", "pretraining", "profile"]


@pytest.fixture(scope="module")
def shipped():
    if not (SHIPPED / "model_card.json").is_file():
        pytest.skip("no shipped predictor in models/predictor")
    return load_predictor(SHIPPED)


def _one_by_one(p, rows: list[dict]) -> pd.DataFrame:
    """Each row predicted alone, with its own copy of the configuration."""
    return pd.concat([p.predict([{**r, "train_config": dict(r["train_config"])}])
                      for r in rows], ignore_index=True)


def _assert_same(batch: pd.DataFrame, ref: pd.DataFrame) -> None:
    assert len(batch) == len(ref)
    for c in COLUMNS:
        a, b = batch[c].to_numpy(), ref[c].to_numpy()
        if c in ("prediction", "lower", "upper"):
            np.testing.assert_allclose(a.astype(float), b.astype(float), rtol=0, atol=1e-9,
                                       err_msg=c)
        else:
            assert [str(x) for x in a] == [str(x) for x in b], c


def test_recommend_equals_each_source_set_predicted_alone(shipped) -> None:
    # a measured target, an unmeasured one without a profile (imputed, out of support) and
    # a measured high-resource one; k = 1 and k = 3 over a small pool
    targets = ["sw", "quy", "de"]
    pool = ["en", "fr", "hi", "zh", "ar", "ru"]
    for k in (1, 3):
        rec = shipped.recommend("me5-small", targets, pool, k, top=1000)
        assert len(rec) == rec.attrs["n_combinations"]
        rows = [{"model": "me5-small", "method": "probe",
                 "train_config": {c: rec.attrs["n_per_language"] for c in s}, "target": t}
                for s in rec["sources"] for t in targets]
        ref = _one_by_one(shipped, rows)
        P = ref["prediction"].to_numpy().reshape(len(rec), len(targets))
        for j, t in enumerate(targets):
            np.testing.assert_allclose(rec[t].to_numpy(), P[:, j], rtol=0, atol=1e-9)
            for side in ("lower", "upper"):
                np.testing.assert_allclose(
                    rec[f"{t}_{side}"].to_numpy(),
                    ref[side].to_numpy().reshape(len(rec), len(targets))[:, j],
                    rtol=0, atol=1e-9)
        np.testing.assert_allclose(rec["mean"].to_numpy(), P.mean(axis=1), rtol=0, atol=1e-9)
        O = ref["out_of_support"].to_numpy().reshape(len(rec), len(targets))
        assert rec["out_of_support"].tolist() == O.any(axis=1).tolist()
        B = ref["basis"].to_numpy().reshape(len(rec), len(targets))
        assert rec["basis"].tolist() == [",".join(sorted(set(b))) for b in B]


def test_batch_equals_rows_predicted_one_at_a_time(shipped) -> None:
    rng = random.Random(7)
    langs = ["en", "de", "fr", "sw", "hi", "zh", "ar", "quy", "yo", "eu", "aym", "nah"]
    targets = ["sw", "aym", "quy", "eu", "de", "gn", "nah", "yo"]
    shared = {"en": 2490, "hi": 500}
    rows = []
    for i in range(80):
        model = rng.choice(["me5-small", "xlmr", "tulrv6"])
        if i % 5 == 0:
            cfg = shared          # one object in several rows, as recommend shares it
        else:
            cfg = {c: rng.choice([0, 50, 2490, 100_000]) for c in
                   rng.sample(langs, rng.randint(1, 6))}
            if not any(cfg.values()):
                cfg["en"] = 1000
        rows.append({"model": model, "train_config": cfg, "target": rng.choice(targets)})
    rows.append({"model": "me5-small", "train_config": {"swh": 1000}, "target": "sw"})
    _assert_same(shipped.predict(rows), _one_by_one(shipped, rows))
    # two codes of one language in a configuration: refused, not counted twice
    with pytest.raises(ValueError, match="same language"):
        shipped.predict([{"model": "me5-small", "train_config": {"sw": 1000, "swh": 500},
                          "target": "sw"}])


def test_features_of_a_batch_equal_each_row_alone(shipped) -> None:
    rng = random.Random(3)
    langs = ["en", "de", "fr", "sw", "tr", "hi", "zh", "ar", "ru", "es", "quy", "yo"]
    rows = []
    for _ in range(60):
        cfg = {c: rng.choice([50, 2490, 100_000]) for c in rng.sample(langs, rng.randint(1, 9))}
        rows.append(shipped.validate({"model": rng.choice(["me5-small", "xlmr"]),
                                      "train_config": cfg,
                                      "target": rng.choice(["sw", "aym", "quy", "de"])}))
    batch = shipped.features.transform(pd.DataFrame(rows))
    alone = np.vstack([shipped.features.transform(pd.DataFrame([r])) for r in rows])
    np.testing.assert_allclose(batch, alone, rtol=0, atol=1e-9)


def test_pair_memory_equals_the_per_pair_sum(shipped) -> None:
    """``SeenTargetModel.memory`` (array ops over distinct configurations) against the
    per-(row, source) listing it replaced, summed with ``np.bincount``."""
    from predictor.models import row_meta
    rng = random.Random(11)
    langs = ["en", "de", "fr", "sw", "swh", "hi", "zh", "ar", "quy", "es"]
    shared = {"en": 2490, "de": 2490}
    rows = pd.DataFrame([{"model": "me5-small", "method": "probe",
                          "train_config": shared if i % 4 == 0 else
                          {c: rng.choice([0, 166, 2490]) or 7
                           for c in rng.sample(langs, rng.randint(1, 5))},
                          "target": rng.choice(["sw", "aym", "nah", "de", "quy"])}
                         for i in range(300)])
    meta = row_meta(rows)
    model = shipped.seen["me5-small|probe"]
    rid, keys, w = [], [], []
    for i, (mm, t, tc) in enumerate(zip(meta["mm"], meta["target"], meta["config"])):
        for lang, n in tc.items():
            if n > 0:
                rid.append(i)
                keys.append(f"{mm}|{t}|{lang}")
                w.append(float(n))
    rid_a, w_a = np.array(rid), np.array(w)
    e = np.array([model.pairs_.get(k, 0.0) for k in keys])
    known = np.array([k in model.pairs_ for k in keys], float)
    n = len(meta)
    wsum = np.bincount(rid_a, weights=w_a, minlength=n)
    mem = np.bincount(rid_a, weights=w_a * e, minlength=n) / np.maximum(wsum, 1e-12)
    share = np.bincount(rid_a, weights=known, minlength=n) / np.maximum(
        np.bincount(rid_a, minlength=n), 1)
    assert (share > 0).any()
    expected = np.column_stack([mem, share])
    np.testing.assert_array_equal(model.memory(meta), expected)
    # without the configuration ids (a frame made elsewhere): keyed by object
    np.testing.assert_array_equal(model.memory(meta.drop(columns="cfg_id")), expected)


def test_transform_columns_equals_those_columns_of_transform(shipped) -> None:
    """Profile imputation featurises only the profile columns (no URIEL distances)."""
    from predictor.features import GROUPS
    rows = pd.DataFrame([{"model": m, "method": meth, "train_config": tc, "target": t}
                         for m, meth in (("me5-small", "probe"), ("xlmr", "finetune"))
                         for tc in ({"en": 2490}, {"de": 500, "fr": 500, "hi": 100})
                         for t in ("sw", "aym", "quy", "de")])
    names = [str(c) for c in shipped.features.get_feature_names_out()]
    full = shipped.features.transform(rows)
    for cols in ([c for c in GROUPS["profile"] if c in names],
                 ["k", "dist_genetic_min", "has_profile"]):
        sub = shipped.features.transform_columns(rows, cols)
        assert np.array_equal(sub, full[:, [names.index(c) for c in cols]], equal_nan=True)
    with pytest.raises(ValueError, match="not output columns"):
        shipped.features.transform_columns(rows, ["nope"])


def test_unprofiled_targets_in_recommend_equal_each_row_alone(shipped) -> None:
    """Profile imputation is shared per (configuration, design, class) in a batch."""
    from measure.knowledge.nli import XNLI_15
    rec = shipped.recommend("me5-small", ["quy", "eu"], list(XNLI_15)[:8], 2, top=28)
    n = rec.attrs["n_per_language"]
    rows = [{"model": "me5-small", "train_config": {s: n for s in srcs}, "target": t}
            for srcs in rec["sources"] for t in ("quy", "eu")]
    alone = _one_by_one(shipped, rows)
    assert np.allclose(rec[["quy", "eu"]].to_numpy().ravel(), alone["prediction"], atol=1e-9)
