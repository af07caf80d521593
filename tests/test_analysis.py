"""predictor.metaanalysis: target classes, scores from the confusion matrix, the estimators
and the designs, on synthetic tables with known answers (plus a small real-table smoke test)."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from measure.designs import OBJECTIVES, shapley_values
from measure.knowledge.coverage import resource_class
from predictor.metaanalysis import designs as D
from predictor.metaanalysis import estimates as E
from predictor.metaanalysis import prepare as P
from predictor.metaanalysis import summary as S

REPO = Path(__file__).resolve().parent.parent
LANGS = ["ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "th", "tr", "vi", "zh"]


def test_target_classes_are_defined_from_outside() -> None:
    from measure.knowledge.coverage import pretraining_class
    assert {resource_class(c) for c in ["aym", "bzd", "cni", "hch", "nah", "oto", "tar"]} == {"absent"}
    assert P.LOW_RESOURCE_XNLI == ("sw", "ur")            # CC-100 < 10 GiB
    assert {resource_class(c) for c in ["hi", "tr", "ar", "en", "zh"]} == {"high"}
    # one rule with the predictor's pretraining class: absent for both, or present for both
    for code in ("quy", "gn", "shp", "zu", "yo"):
        assert resource_class(code) == pretraining_class(code, "me5-small") == "absent"
    assert pretraining_class("hrv", "me5-small") == "present"
    assert resource_class("hrv") == "present-unlisted"      # in CC-100, size unlisted
    assert "10 GiB" in P.CLASS_RULE and "Swahili" in P.CLASS_RULE


def test_kappa_and_label_shares_from_the_confusion() -> None:
    k, e, n, c = P.kappa_and_shares([[10, 0, 0], [0, 10, 0], [0, 0, 10]])
    assert k == pytest.approx(100) and (e, n, c) == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    # everything predicted 'entailment': accuracy 1/3, kappa 0, entailment share 1
    k, e, n, c = P.kappa_and_shares(json.dumps([[10, 0, 0], [10, 0, 0], [10, 0, 0]]))
    assert k == pytest.approx(0) and e == 1 and n == c == 0


def _raw(score, sets, targets, seeds=(0, 1, 2), regime="fixed_total", pool="xnli") -> pd.DataFrame:
    """Raw measurement rows (export columns) with macro_f1 = score(set, target, seed)."""
    rows = []
    for s in sets:
        for seed in seeds:
            for t in targets:
                f1 = score(s, t, seed)
                d = int(round(f1 * 3))        # a confusion whose diagonal tracks the score
                conf = [[d, 300 - d, 0], [0, d, 300 - d], [300 - d, 0, d]]
                rows.append({"cell_hash": f"{'+'.join(s)}-{seed}-{regime}", "model": "m",
                             "method": "probe", "train_dataset": pool, "train_split": "validation",
                             "regime": regime, "train_config": json.dumps({x: 100 for x in s}),
                             "k": len(s), "total_examples": 100 * len(s), "seed": seed,
                             "target_dataset": "americas_nli" if resource_class(t) == "absent"
                             else "xnli", "target_language": t, "target_split": "test",
                             "macro_f1": f1, "accuracy": f1, "n": 900,
                             "confusion": json.dumps(conf), "zero_shot": t not in s})
    return pd.DataFrame(rows)


def _random_sets(rng, ks=(1, 2, 3, 4, 6, 8, 12), per_k=12):
    sets = [(lang,) for lang in LANGS]
    for k in ks[1:]:
        seen = set()
        while len(seen) < per_k:
            seen.add(tuple(sorted(rng.choice(LANGS, k, replace=False))))
        sets += sorted(seen)
    return sets


def test_slope_ci_and_mixed_model_recover_a_known_slope() -> None:
    rng = np.random.default_rng(0)
    sets = _random_sets(rng)
    targets = ["aym", "bzd", "cni", "hch", "nah", "oto"]
    t_base = {t: rng.normal(40, 4) for t in targets}
    t_slope = {t: 1.5 + rng.normal(0, 0.2) for t in targets}
    s_eff = {s: rng.normal(0, 1.0) for s in sets}
    noise = {(s, t, seed): rng.normal(0, 0.5) for s in sets for t in targets for seed in range(3)}

    def score(s, t, seed):
        return t_base[t] + t_slope[t] * math.log2(len(s)) + s_eff[s] + noise[(s, t, seed)]

    rows = P.prepare(_raw(score, sets, targets))
    cells = P.cell_means(rows[rows["zero_shot"]], "macro_f1")
    est = E.slope_estimates(cells, reps=200)
    assert est["boot_ci_low"] < 1.5 < est["boot_ci_high"]
    assert abs(est["slope_within"] - 1.5) < 0.3
    mixed = E.mixed_slope(cells)
    assert mixed["ci_low"] < 1.5 < mixed["ci_high"] and mixed["mixed_terms"] == "target+target_slope+set"
    assert mixed["var_set"] > 0.3                                  # the set effect is found
    assert est["saturation_k"] is None                             # linear in log2 k: still gaining
    per_t = {r["target"]: r for r in E.per_target_slopes(cells, reps=100)}
    assert per_t["aym"]["ci_low"] < t_slope["aym"] < per_t["aym"]["ci_high"]


def test_pure_selection_leaves_no_slope_given_the_best_member() -> None:
    rng = np.random.default_rng(2)
    sets = _random_sets(rng)
    quality = {x: rng.normal(50, 3) for x in LANGS}
    targets = ["en", "de", "fr", "es", "ru", "zh", "sw", "ur"]

    def score(s, t, seed):   # a set is as good as its best member: k helps only by selection
        return max(quality[x] for x in s) + rng.normal(0, 0.2)

    rows = P.prepare(_raw(score, sets, targets))
    rows = rows[rows["target_class"] == "high"]
    est = S.scaling_estimates(rows, reps=200, mixed=False)
    e = [x for x in est if x["metric"] == "macro_f1"][0]
    assert e["boot_ci_low"] > 0.5                               # random k-sets: a clear "gain"
    b = e["slope_given_best_member"]
    assert b["ci_low"] < 0 < b["ci_high"] and abs(b["slope"]) < 0.2


def test_saturation_k_from_the_piecewise_fit() -> None:
    rng = np.random.default_rng(1)
    sets = _random_sets(rng)
    targets = ["en", "de", "fr", "es", "ru", "zh"]

    def score(s, t, seed):  # +2 per doubling up to k = 4, flat after
        return 50 + 2 * min(math.log2(len(s)), 2.0) + rng.normal(0, 0.3)

    rows = P.prepare(_raw(score, sets, targets))
    cells = P.cell_means(rows[rows["zero_shot"]], "macro_f1")
    est = E.slope_estimates(cells, reps=200)
    seg = {(g["k_from"], g["k_to"]): g for g in est["segments"]}
    assert seg[(1, 2)]["gain_per_doubling"] == pytest.approx(2, abs=0.3)
    assert seg[(4, 8)]["ci_low"] < 0 < seg[(4, 8)]["ci_high"]
    assert est["saturation_k"] == 4


def test_duplicates_within_a_stratum_count_once() -> None:
    raw = _raw(lambda s, t, seed: 50.0 + len(s), [("en",), ("de",), ("de", "en")], ["sw", "ur"],
               seeds=(0, 1, 2), regime="per_language")
    rows, n = P.deduplicate(P.prepare(raw))
    assert n == 2 * len(raw) // 3 and len(rows) == len(raw) // 3
    # another regime is another stratum: its identical rows are not duplicates of these
    both = pd.concat([P.prepare(raw), P.prepare(raw.assign(regime="fixed_total"))])
    assert len(P.deduplicate(both)[0]) == 2 * len(raw) // 3
    # measure.store.repeated_scores: equal to 6 decimals is the same measurement
    near = _raw(lambda s, t, seed: 50.0 + seed * 1e-9, [("en",)], ["sw"], seeds=(0, 1))
    assert P.deduplicate(P.prepare(near))[1] == 1


def test_member_gaps_add_one_and_shapley_on_an_additive_game() -> None:
    quality = {"en": 50.0, "de": 48.0, "fr": 46.0, "es": 45.0, "ru": 44.0}

    def best(s, t, seed):          # a set scores exactly its best member: pure selection
        return max(quality[x] for x in s)

    sets = [c for r in range(1, 6) for c in itertools.combinations(sorted(quality), r)]
    rows = P.prepare(_raw(best, sets, ["sw", "aym"], seeds=(0,)), design="shapley")
    gaps = D.member_gaps(rows, "macro_f1")
    assert (gaps["gap_best"].abs() < 1e-9).all() and (gaps["gap_mean"] >= 0).all()
    pairs = D.add_one_pairs(rows, "macro_f1")
    assert (pairs["gain"] >= 0).all() and set(pairs["base_size"]) == {1, 2, 3, 4}
    shap = D.shapley_table(rows, "macro_f1")
    one = shap[shap["target"] == "sw"].set_index("language")
    # efficiency: Shapley values add up to v(N) − v(∅)
    assert one["phi"].sum() == pytest.approx(50.0 - 100 / 3)
    assert one["phi"].idxmax() == "en"
    # additive game: every value equals the single's own gain, interaction 0
    game = {frozenset(c): sum(quality[x] - 30 for x in c) + 30 for c in map(set, sets)}
    phi = shapley_values(lambda s: game[frozenset(s)], sorted(quality), 30.0)
    assert phi == pytest.approx({x: quality[x] - 30 for x in quality})


def test_headline_is_one_table_built_from_the_summary() -> None:
    summary = {"scaling": [
        {"model": "m", "method": "probe", "pool": "xnli/validation", "regime": "fixed_total",
         "design": "grid", "metric": "macro_f1", "target_class": c, "slope": s, "ci_low": s - 1,
         "ci_high": s + 1, "boot_ci_low": s - 2, "boot_ci_high": s + 2, "saturation_k": 4,
         "n_targets": 3, "n_rows": 10} for c, s in [("high", 0.25), ("absent", 1.5)]]}
    rows = S.headline(summary)
    assert [r["target_class"] for r in rows] == ["absent", "high"]
    table = S.headline_markdown(summary)
    assert "**+1.50** [+0.50, +2.50]" in table and "[-1.75, +2.25]" in table


@pytest.mark.skipif(not (REPO / "models/measurements/me5-small-probe.parquet").is_file(),
                    reason="shipped table missing")
def test_real_table_smoke() -> None:
    raw = pd.read_parquet(REPO / "models/measurements/me5-small-probe.parquet")
    raw = raw[(raw["train_dataset"] == "xnli") & (raw["regime"] == "fixed_total")
              & raw["target_language"].isin(["sw", "ur", "aym", "de"])]
    rows = P.prepare(raw)
    assert rows["kappa"].between(-100, 100).all()
    res = S.analyse(rows, reps=100, mixed=False)
    assert res["duplicates_dropped"] >= 0
    got = {(e["metric"], e["target_class"]) for e in res["scaling"]}
    assert ("macro_f1", "absent") in got and ("kappa", "xnli-low") in got
    assert res["member_gaps"] and all(g["gap_best"] < g["gap_mean"] for g in res["member_gaps"])


def test_best_vs_random_against_the_grid() -> None:
    rng = np.random.default_rng(3)
    sets = _random_sets(rng, ks=(1, 2, 3), per_k=8)
    targets = ["aym", "bzd", "en", "fr"]
    grid = P.prepare(_raw(lambda s, t, seed: 40 + rng.normal(0, 1), sets, targets, seeds=(0,)))
    chosen = [("ar",), ("ar", "bg"), ("ar", "bg", "de")]
    greedy = P.prepare(_raw(lambda s, t, seed: 60.0 if s in chosen else 45.0,
                            [(x,) for x in LANGS] + chosen[1:] + [("ar", "el")], targets,
                            seeds=(0,)), design="greedy")
    path = pd.DataFrame({"objective": "americas", "k": [1, 2, 3],
                         "languages": ["+".join(c) for c in chosen], "chosen": True})
    out = {(r["objective"], r["k"]): r for r in D.best_vs_random(greedy, grid, path)}
    assert {obj for obj, _ in out} == set(OBJECTIVES)          # measure.designs' objectives
    r = out[("americas", 2)]
    assert r["best_set"] == "ar+bg" and r["best"] == 60 and r["share_random_beaten"] == 1.0
    assert r["random_median"] == pytest.approx(40, abs=1.5) and r["from_path"]
    # the same singles in both tables give the offset between them
    assert r["singles_offset_vs_grid"] == pytest.approx(45 + 15 / 13 - 40, abs=1.5)
