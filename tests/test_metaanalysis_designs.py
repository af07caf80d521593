"""Meta-analysis v3 (#22): dilution control, the add-one split, the few-shot exchange rate,
the same-label-share null, the saturation rule and the centred probe, on synthetic tables
with known answers; and the report with and without the new design tables."""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from measure.knowledge.coverage import resource_class
from predictor.metaanalysis import dilution as DL
from predictor.metaanalysis import estimates as E
from predictor.metaanalysis import fewshot as F
from predictor.metaanalysis import prepare as P
from predictor.metaanalysis import records as R
from predictor.metaanalysis.designs import add_one_pairs

LANGS = ["ar", "bg", "de", "el", "en", "es"]
TARGETS = ["sw", "ur", "fr", "ru", "aym", "bzd"]
TOTAL = 2490


def split(langs, total: int = TOTAL) -> dict[str, int]:
    """An even split of ``total`` over ``langs``, the first ones one example more."""
    base, extra = divmod(total, len(langs))
    return {x: base + (i < extra) for i, x in enumerate(sorted(langs))}


def rows_of(cells, score, targets=TARGETS, design_seed: int = 0) -> pd.DataFrame:
    """Export rows (``xlt-measure export`` columns) of ``cells``: dicts with train_config,
    seed, regime and optional shots / centre; macro_f1 = score(cell, target)."""
    out = []
    for c in cells:
        tc, shots = c["train_config"], c.get("shots", {})
        params = {"C": 1.0, "classifier": "logreg"}
        if c.get("centre"):
            params["centre"] = "language"
        cfg = {"backend": "ort-int8-s8", "params": params, "train_config": tc,
               "seed": c["seed"], "regime": c.get("regime", "fixed_total")}
        if shots:
            cfg["target_shots"] = shots
        for t in targets:
            f1 = float(score(c, t))
            d = int(round(min(max(f1, 0), 100) * 3))
            conf = [[d, 300 - d, 0], [0, d, 300 - d], [300 - d, 0, d]]
            out.append({"cell_hash": json.dumps(cfg, sort_keys=True), "model": "me5-small",
                        "method": "probe", "train_dataset": "xnli", "train_split": "validation",
                        "regime": cfg["regime"], "train_config": json.dumps(tc),
                        "k": len(tc), "total_examples": sum(tc.values()), "seed": c["seed"],
                        "target_dataset": "americas_nli" if resource_class(t) == "absent"
                        else "xnli", "target_language": t, "target_split": "test",
                        "macro_f1": f1, "accuracy": f1, "n": 900, "confusion": json.dumps(conf),
                        "train_seconds": 1.0, "eval_seconds": 1.0, "code_version": "t",
                        "config_json": json.dumps(cfg), "zero_shot": t not in tc})
    return pd.DataFrame(out)


def quality(seed: int = 0) -> dict[tuple[str, str], float]:
    rng = np.random.default_rng(seed)
    return {(x, t): rng.normal(45, 4) for x in LANGS for t in TARGETS}


def dilution_cells(sets, seeds=(0, 1)):
    cells = [{"train_config": {x: TOTAL // k}, "seed": s}
             for k in range(2, 6) for x in LANGS for s in seeds]
    return cells + [{"train_config": split(st), "seed": s} for st in sets for s in seeds]


def random_sets(rng, ks=(2, 3, 4, 5), per_k=6):
    out = set()
    for k in ks:   # at most every distinct k-set of LANGS (C(6, 5) = 6)
        while len([s for s in out if len(s) == k]) < min(per_k, math.comb(len(LANGS), k)):
            out.add(tuple(sorted(rng.choice(LANGS, k, replace=False))))
    return sorted(out)


# -- prepare -------------------------------------------------------------------------------------
def test_prepare_reads_the_centred_probe_and_target_shots() -> None:
    cells = [{"train_config": {"en": 2465}, "seed": 0, "shots":
              {"americas_nli/validation:aym": 25}},
             {"train_config": {"en": 2465}, "seed": 0, "shots":
              {"americas_nli/validation:bzd": 25}},
             {"train_config": {"en": 2490}, "seed": 0, "centre": True}]
    rows = P.prepare(rows_of(cells, lambda c, t: 40.0), design="few-shot")
    shot = rows[rows["n_shots"] > 0]
    own = shot.groupby("target")["shots"].max()
    assert own["aym"] == own["bzd"] == 25 and (shot["n_shots"] == 25).all()
    assert set(shot[shot["shots"] > 0]["target"]) == {"aym", "bzd"}
    assert (shot.groupby("target")["shots"].sum()[["sw", "fr"]] == 0).all()
    assert set(rows["method"]) == {"probe", "probe-centred"}
    # the same train_config and score with other target shots is another measurement
    assert P.deduplicate(rows)[1] == 0
    assert P.design_of("m/me5-small-probe-few-shot-centred.parquet") == "few-shot"
    assert P.design_of("m/me5-small-probe-dilution.parquet") == "dilution"
    assert "design-dilution-centred.toml" in P.measure_command("dilution", centred=True)


def test_the_same_label_share_null() -> None:
    # a probe that predicts one label for everything: 16.7 macro-F1 for free, nothing above
    assert P.null_f1([[10, 0, 0], [10, 0, 0], [10, 0, 0]]) == pytest.approx(100 / 6)
    # balanced predictions: the null is chance, a perfect probe is 66.7 above it
    assert P.null_f1([[10, 0, 0], [0, 10, 0], [0, 0, 10]]) == pytest.approx(100 / 3)
    rows = P.prepare(rows_of([{"train_config": {"en": 2490}, "seed": 0}], lambda c, t: 60.0))
    assert (rows["f1_above_null"] == rows["macro_f1"] - rows["null_f1"]).all()


# -- dilution ------------------------------------------------------------------------------------
@pytest.mark.parametrize("synergy", [0.0, 1.5])
def test_equal_share_gaps_take_dilution_out(synergy: float) -> None:
    q = quality()
    rng = np.random.default_rng(1)
    sets = random_sets(rng)

    def score(c, t):                 # each member loses 3 points per halving of its data
        tc = c["train_config"]
        return max(q[(x, t)] + 3 * math.log2(n / TOTAL) for x, n in tc.items()) + \
            (synergy if len(tc) > 1 else 0.0) + rng.normal(0, 0.05)

    rows = P.prepare(rows_of(dilution_cells(sets), score), design="dilution")
    gaps = DL.equal_share_gaps(rows, "macro_f1")
    assert len(gaps) == len(sets) * 2 * len(TARGETS) - sum(
        2 * len(set(s) & set(TARGETS)) for s in sets)
    assert gaps["gap_best"].mean() == pytest.approx(synergy, abs=0.05)
    assert (gaps["gap_mean"] >= gaps["gap_best"] - 1e-9).all()
    assert gaps["contains_best"].notna().all()
    recs = R.summarise_dilution(gaps, "macro_f1", reps=100)
    for r in recs:
        lo, hi = r["gap_best_ci"]
        assert lo <= synergy + 0.05 and hi >= synergy - 0.05
        assert r["null_averaging_gap_best"] < 0 < -r["null_averaging_gap_best_ci"][1]
        assert r["null_selection_gap_best"] == 0


def test_null_worlds_and_the_best_source_covariate() -> None:
    q = quality(2)
    rng = np.random.default_rng(2)
    sets = [(x,) for x in LANGS] + random_sets(rng, ks=(2, 3, 4, 5), per_k=8)
    cells = [{"train_config": {x: 2490 for x in s}, "seed": 0, "regime": "per_language"}
             for s in sets]

    def score(c, t):                 # pure selection at full data per member
        return max(q[(x, t)] for x in c["train_config"])

    rows = P.prepare(rows_of(cells, score))
    from predictor.metaanalysis.scaling import scaling_estimates
    est = {e["target_class"]: e for e in scaling_estimates(rows, reps=100, mixed=False)
           if e["metric"] == "macro_f1"}
    for e in est.values():
        assert e["null_worlds"]["selection"]["given_best_member"] == pytest.approx(0, abs=1e-6)
        assert e["null_worlds"]["averaging"]["given_best_member"] < 0
        assert e["slope_given_best_member"]["slope"] == pytest.approx(0, abs=1e-6)
        assert len(e["per_k_mean"]) == 5 and all(p["ci_low"] <= p["mean"] <= p["ci_high"]
                                                 for p in e["per_k_mean"])
    cb = est["high"]["slope_given_contains_best"]
    assert cb["contains_best"] > 0 and set(cb["best_sources"]) == {"fr", "ru"}


def test_add_one_split_by_new_best_source() -> None:
    q = quality(3)
    bases = [("ar",), ("bg",), ("ar", "de"), ("el", "en")]
    sets = sorted({b + (x,) for b in bases for x in LANGS if x not in b} | set(bases)
                  | {(x,) for x in LANGS})
    cells = [{"train_config": {x: 2490 for x in s}, "seed": 0, "regime": "per_language"}
             for s in sets]
    rows = P.prepare(rows_of(cells, lambda c, t: max(q[(x, t)] for x in c["train_config"])),
                     design="add-one")
    pairs = add_one_pairs(rows, "macro_f1")
    assert pairs["new_best"].notna().all()
    assert (pairs[~pairs["new_best"].astype(bool)]["gain"].abs() < 1e-9).all()
    assert (pairs[pairs["new_best"].astype(bool)]["gain"] > 0).all()
    recs = R.summarise_add_one_split(pairs, "macro_f1", reps=60)
    assert {r["new_best"] for r in recs} == {True, False}
    assert all(r["gain"] == pytest.approx(0) for r in recs if not r["new_best"])


# -- few-shot ------------------------------------------------------------------------------------
FS_TARGETS = ["sw", "ur", "aym", "bzd"]
B_K = {"absent": 3.0, "xnli-low": 1.0}     # per doubling of k
G, B_N = 2.0, 1.0                            # the first 25 pairs; per doubling of pairs after


def few_shot_cells():
    rng = np.random.default_rng(4)
    sets = {1: [("ar",), ("bg",), ("de",)], 2: [("ar", "el"), ("bg", "es")],
            4: [("ar", "bg", "de", "el"), ("bg", "de", "en", "es")], 8: []}
    cells = []
    for k, group in sets.items():
        for s in group:
            for seed in (0, 1):
                cells.append({"train_config": split(s), "seed": seed})
                for t, n in itertools.product(FS_TARGETS, (25, 100, 400)):
                    ds = "americas_nli" if resource_class(t) == "absent" else "xnli"
                    cells.append({"train_config": split(s, TOTAL - n), "seed": seed,
                                  "shots": {f"{ds}/validation:{t}": n}})
    return cells, {s: rng.normal(0, 0.3) for g in sets.values() for s in g}


def few_shot_score(noise):
    base = {"sw": 50, "ur": 48, "aym": 33, "bzd": 35}

    def score(c, t):
        tc = c["train_config"]
        own = sum(n for key, n in c.get("shots", {}).items() if key.endswith(":" + t))
        other = sum(c.get("shots", {}).values()) - own
        if other:                    # someone else's shots: belongs to no arm
            return 99.0
        y = base.get(t, 55) + B_K.get(resource_class(t), 0) * math.log2(len(tc))
        y += noise[tuple(sorted(tc))]
        return y + (G + B_N * math.log2(own / 25) if own else 0.0)
    return score


def test_few_shot_exchange_rate_recovers_a_known_curve() -> None:
    cells, noise = few_shot_cells()
    rows = P.prepare(rows_of(cells, few_shot_score(noise)), design="few-shot")
    arm = F.few_shot_rows(rows, "macro_f1")
    assert set(arm["target"]) == set(FS_TARGETS) and (arm["y"] < 90).all()
    assert set(arm["n"]) == {0, 25, 100, 400}
    recs = {r["target_class"]: r for r in R.summarise_few_shot(rows, "macro_f1", reps=100)}
    assert set(recs) == {"absent", "xnli-low"}
    for cls, r in recs.items():
        assert r["gain_per_doubling_k"] == pytest.approx(B_K[cls], abs=0.3)
        assert r["gain_first_shots"] == pytest.approx(G, abs=1e-6)
        assert r["gain_per_doubling_shots"] == pytest.approx(B_N, abs=1e-6)
        lo, hi = r["exchange_pairs_ci"]
        assert lo <= r["exchange_pairs"] <= hi
    # k 1 -> 2 is worth b_k: 1.0 < g -> linear up to 25 pairs; 3.0 -> 25 * 2^((3 - 2) / 1)
    assert recs["xnli-low"]["exchange_pairs"] == pytest.approx(25 * B_K["xnli-low"] / G, rel=0.25)
    assert recs["absent"]["exchange_pairs"] == pytest.approx(50, rel=0.25)
    arms = {(a["k"], a["n"]): a for a in recs["absent"]["arms"]}
    assert arms[(1, 100)]["gain_vs_none"] == pytest.approx(G + 2 * B_N)


def test_pairs_worth_rule() -> None:
    got = F.pairs_worth(np.array([-1.0, 1.0, 3.0, 3.0]), np.array([2.0, 2.0, 2.0, 2.0]),
                        np.array([1.0, 1.0, 1.0, -1.0]), 25.0)
    assert got.tolist() == [0.0, 12.5, 50.0, F.PAIRS_CAP]


# -- saturation ----------------------------------------------------------------------------------
def test_no_saturation_claim_from_wide_late_intervals() -> None:
    """A steady gain with noisy large-k cells: the late segments' CIs include 0, but nothing
    separates them from the early gain, so no saturation is claimed."""
    rng = np.random.default_rng(5)
    rows = []
    for t in ["de", "fr", "ru", "es", "en"]:
        for k in (1, 2, 3, 4, 6, 8, 12):
            for i in range(10 if k < 4 else 3):
                rows.append({"target": t, "set_id": f"{k}-{i}", "k": k, "log2k": math.log2(k),
                             "y": 50 + math.log2(k) + rng.normal(0, 0.3 if k < 4 else 4),
                             "m": 1})
    est = E.slope_estimates(pd.DataFrame(rows), reps=200)
    assert est["saturation_k"] is None
    assert any(s["after_ci"][0] <= 0 for s in est["slowdown"])


# -- the report, with and without the new tables -------------------------------------------------
def _numbers(obj, out: set[str]) -> set[str]:
    """Every number of a summary in the forms the text prints."""
    if isinstance(obj, dict):
        for v in obj.values():
            _numbers(v, out)
    elif isinstance(obj, list):
        for v in obj:
            _numbers(v, out)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out |= {f"{obj:+.2f}", f"{obj:.0f}", f"{obj:.1f}", str(obj)}
    return out


def _grid(rng) -> pd.DataFrame:
    q = quality(6)
    sets = [(x,) for x in LANGS] + random_sets(rng, ks=(2, 3, 4, 5), per_k=5)
    cells = [{"train_config": split(s), "seed": seed} for s in sets for seed in (0, 1)]
    noise = {s: rng.normal(0, 0.5) for s in sets}
    return rows_of(cells, lambda c, t: max(q[(x, t)] for x in c["train_config"])
                   + noise[tuple(sorted(c["train_config"]))])


@pytest.mark.slow
def test_report_with_and_without_the_v3_tables(tmp_path: Path) -> None:
    from predictor.dataset import build_dataset
    from predictor.metaanalysis.answer import answer_text, readme_section
    from predictor.metaanalysis.report import build_report
    rng = np.random.default_rng(7)
    gpath = tmp_path / "me5-small-probe.parquet"
    _grid(rng).to_parquet(gpath)
    frame = build_dataset([gpath], include_published=False)
    s = build_report(frame, tmp_path / "r0", measurements=[gpath], reps=40)
    assert {(m["design"], m["centred"]) for m in s["to_measure"]} == {
        (d, c) for d in P.DESIGN_TABLES for c in (False, True)}
    text = (tmp_path / "r0" / "report.md").read_text()
    assert "Not measured yet" in text and "design-few-shot.toml" in text
    assert "design-dilution.toml" in answer_text(s)[0]
    assert "dilution" not in s and "few_shot" not in s

    q = quality(6)
    dpath = tmp_path / "me5-small-probe-dilution.parquet"
    rows_of(dilution_cells(random_sets(rng)), lambda c, t: max(
        q[(x, t)] + 3 * math.log2(n / TOTAL) for x, n in c["train_config"].items())
            ).to_parquet(dpath)
    cells, noise = few_shot_cells()
    fpath = tmp_path / "me5-small-probe-few-shot.parquet"
    rows_of(cells, few_shot_score(noise), targets=FS_TARGETS).to_parquet(fpath)
    cpath = tmp_path / "me5-small-probe-few-shot-centred.parquet"
    rows_of([dict(c, centre=True) for c in cells], lambda c, t: few_shot_score(noise)(c, t) + 1,
            targets=FS_TARGETS).to_parquet(cpath)
    tables = [gpath, dpath, fpath, cpath]
    frame = build_dataset(tables, include_published=False)
    s = build_report(frame, tmp_path / "r1", measurements=tables, reps=40)
    assert s["designs"] == ["dilution", "few-shot", "grid"]
    assert s["methods"] == ["probe", "probe-centred"]
    assert {(r["method"], r["target_class"]) for r in s["few_shot"]
            if r["metric"] == "macro_f1"} == {(m, c) for m in ("probe", "probe-centred")
                                               for c in ("absent", "xnli-low")}
    head = {r["target_class"]: r for r in s["headline"]["macro_f1"]}
    assert head["absent"]["exchange_pairs"] == pytest.approx(50, rel=0.3)
    assert head["high"]["gap_best_equal"] == pytest.approx(0, abs=0.2)
    # the feature correlations read the plain tables only (no shots, no centred probe)
    assert s["correlations"]["own"]
    text = (tmp_path / "r1" / "report.md").read_text()
    assert "## Dilution control" in text and "## What target data buys" in text
    assert "| probe-centred |" in text
    # every number of the short answer is one of summary.json's
    short = answer_text(s)[0]
    nums = _numbers(s, set())
    printed = re.findall(r"[+-]\d+\.\d\d", short) + re.findall(r"≈? ?(\d+) \[\d+, \d+\]", short)
    assert printed and all(n in nums for n in printed), [n for n in printed if n not in nums]
    assert readme_section({**s, "command": "x"}).count("**Short answer.**") == 1
