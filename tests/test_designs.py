"""The measurement designs: generated configs, add-one pairs, Shapley subsets, greedy.

Nothing here runs a model: the greedy tests drive the real round/store/resume logic with a
fake engine that writes deterministic scores into a real results store.
"""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import pytest

from measure import designs
from measure.running.config import build_batch, load_toml, train_config_for
from _cells import spec

from measure.cell import CellRecord, TargetResult
from measure.methods.sampling import sample_training
from measure.store import ResultStore

CONFIGS = Path(designs.__file__).resolve().parent / "configs"


def _sets_by(batch, regime: str) -> Counter:
    """{sorted language tuple: number of seeds} for one regime of a batch."""
    return Counter(tuple(c.sources) for c in batch.cells if c.regime == regime)


def test_committed_configs_are_what_the_generator_writes(tmp_path: Path) -> None:
    assert designs.write_configs(CONFIGS, check=True) == []
    designs.write_configs(tmp_path)
    for name in designs.CONFIGS:
        assert (tmp_path / name).read_text() == (CONFIGS / name).read_text()
    assert designs.main(["write-configs", "--check"]) == 0
    (tmp_path / "design-shapley.toml").write_text("# edited by hand\n")
    assert designs.main(["write-configs", "--check", "--out-dir", str(tmp_path)]) == 1


def test_add_one_design_is_deterministic_and_well_formed() -> None:
    a, b = designs.add_one_design(), designs.add_one_design()
    assert a == b
    assert designs.add_one_design(seed=7) != a
    assert Counter(len(x.base) for x in a) == {k: 5 for k in range(1, 8)}
    for x in a:
        assert len(x.added) == 3 and len(set(x.added)) == 3
        assert not set(x.added) & set(x.base)
        assert x.base == tuple(sorted(x.base))


def test_add_one_pairs_differ_by_one_language_at_the_same_budget(nli_dir: Path) -> None:
    batch = build_batch(load_toml(CONFIGS / "design-add-one.toml"), nli_dir)
    fixed, per_lang = _sets_by(batch, "fixed_total"), _sets_by(batch, "per_language")
    assert all(n == 3 for n in fixed.values())        # seeds 0, 1, 2
    assert all(n == 1 for n in per_lang.values())     # the seed changes nothing there
    assert set(fixed) == set(per_lang)
    assert {(lang,) for lang in designs.XNLI_LANGS} <= set(fixed)
    for x in designs.add_one_design():
        base_tc = train_config_for(x.base, "fixed_total", 2490)
        for ext in x.extended():
            assert ext in fixed and x.base in fixed
            assert len(set(ext) - set(x.base)) == 1 and set(x.base) < set(ext)
            ext_tc = train_config_for(ext, "fixed_total", 2490)
            assert sum(ext_tc.values()) == sum(base_tc.values()) == 2490
    # every cell of the batch trains on 2,490 examples in total (fixed) or per language
    for c in batch.cells:
        tc = c.train_config
        if c.regime == "fixed_total":
            assert sum(tc.values()) == 2490
        else:
            assert set(tc.values()) == {2490}
        assert c.backend == "ort-int8-s8" and c.eval_cap == 2000


def test_per_language_seed_changes_nothing_when_the_budget_is_the_whole_split(nli_dir: Path) -> None:
    """The reason the per-language regime runs one seed (README of the tables)."""
    cell = {"train_dataset": "xnli", "train_split": "validation", "regime": "per_language",
            "train_config": {"de": 2490, "en": 2490}}
    draws = [sample_training(spec(**cell, seed=s), str(nli_dir)) for s in (0, 1, 2)]
    for d in draws[1:]:
        assert [(lang, idx.tolist()) for lang, idx in d] == \
            [(lang, idx.tolist()) for lang, idx in draws[0]]
    fixed = {**cell, "regime": "fixed_total", "train_config": {"de": 1245, "en": 1245}}
    a, b = (sample_training(spec(**fixed, seed=s), str(nli_dir)) for s in (0, 1))
    assert a[0][1].tolist() != b[0][1].tolist()


def test_shapley_config_has_all_31_subsets_of_each_set(nli_dir: Path) -> None:
    sets = designs.shapley_sets()
    assert set(sets) == {"english", "diverse", "random"}
    assert "en" in sets["english"] and "en" not in sets["diverse"]
    assert sets == designs.shapley_sets()
    batch = build_batch(load_toml(CONFIGS / "design-shapley.toml"), nli_dir)
    fixed, per_lang = _sets_by(batch, "fixed_total"), _sets_by(batch, "per_language")
    for langs in sets.values():
        assert len(langs) == 5
        subsets = [s for r in range(1, 6) for s in itertools.combinations(sorted(langs), r)]
        assert len(subsets) == 31
        for s in subsets:
            assert fixed[s] == 3 and per_lang[s] == 1


def test_shapley_values_are_exact() -> None:
    w = {"a": 1.0, "b": 2.0, "c": 4.0}
    additive = designs.shapley_values(lambda s: sum(w[x] for x in s), w)
    assert additive == pytest.approx(w)
    # a pure synergy between a and b is split equally; efficiency: sum = v(N) - v(∅)
    v = lambda s: sum(w[x] for x in s) + (3.0 if {"a", "b"} <= set(s) else 0.0)  # noqa: E731
    phi = designs.shapley_values(v, w, empty=0.0)
    assert phi == pytest.approx({"a": 2.5, "b": 3.5, "c": 4.0})
    assert sum(designs.shapley_values(v, w, empty=1.0).values()) == pytest.approx(v(("a", "b", "c")) - 1.0)


def test_greedy_objectives_average_their_own_target_rows() -> None:
    import pandas as pd
    rows = pd.DataFrame({"target_dataset": ["americas_nli", "americas_nli", "xnli", "xnli"],
                         "zero_shot": [True, True, True, False],
                         "macro_f1": [30.0, 40.0, 50.0, 90.0]})
    assert designs.OBJECTIVES["americas"](rows) == 35.0
    assert designs.OBJECTIVES["xnli-zs"](rows) == 50.0     # a target that was a source is out
    assert designs.OBJECTIVES["xnli-zs"].rows(rows).tolist() == [False, False, True, False]
    assert all(o.description.startswith("mean macro-F1 over the")
               for o in designs.OBJECTIVES.values())


def test_greedy_forward_round_logic() -> None:
    weights = {"a": 3.0, "b": 1.0, "c": 2.0, "d": 2.0, "e": 0.5}
    calls: list[list[tuple[str, ...]]] = []

    def score_round(cands):
        calls.append(cands)
        # diminishing returns, plus a synergy between b and e that only pays when both are in
        return {s: sum(weights[x] for x in s) / len(s) ** 0.5
                + (5.0 if {"b", "e"} <= set(s) else 0.0) for s in cands}

    path = designs.greedy_forward(score_round, weights, k_max=4, objective="toy")
    assert [len(c) for c in calls] == [5, 4, 3, 2]
    assert calls[0] == [("a",), ("b",), ("c",), ("d",), ("e",)]
    chosen = [c.languages for c in path if c.chosen]
    # k=2: a+c and a+d tie exactly; the alphabetically first set wins. Greedy never sees
    # the b+e synergy: it needs two additions at once (why the Shapley design exists).
    assert chosen == [("a",), ("a", "c"), ("a", "c", "d"), ("a", "b", "c", "d")]
    for k, cands in enumerate(calls[1:], start=2):
        assert all(len(s) == k and set(chosen[k - 2]) < set(s) for s in cands)
    assert [c.value for c in path if c.chosen][-1] == pytest.approx(4.0)
    assert path[0].objective == "toy" and sum(c.chosen for c in path) == 4
    assert all(c.added in c.languages for c in path)


def test_run_greedy_resumes_from_the_store(nli_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """Rounds go through the engine and the store; a rerun measures nothing again."""
    import measure.running.engine as engine

    ran: list[int] = []
    quality = {lang: i for i, lang in enumerate(designs.XNLI_LANGS)}  # zh best alone

    def fake_run_local(batch, store, *, workers=None, progress=True, **_):
        todo = engine.pending_cells(batch, store)
        ran.append(len(todo))
        for cell in todo:
            langs = cell.sources
            f1 = 30 + sum(quality[x] for x in langs) / len(langs) + len(langs)
            res = [TargetResult(t.dataset, lang, t.split, f1, f1, 10, [[0] * 3] * 3)
                   for t in cell.targets for lang in t.languages]
            store.put_cell(CellRecord(config=cell, results=res))
        return engine.RunSummary(len(batch.cells), len(batch.cells) - len(todo), len(todo), 0, 0.0)

    monkeypatch.setattr(designs, "run_local", fake_run_local)
    cfg, store = CONFIGS / "design-greedy.toml", tmp_path / "g.sqlite"
    first = designs.run_greedy(cfg, store, ["americas", "xnli-zs"], k_max=3,
                               data_dir=nli_dir, progress=False)
    # americas: 15 + 14 + 13 cells; xnli-zs: the same path here, so no new cells
    assert ran[:3] == [15, 14, 13] and sum(ran) == 42
    chosen = [c.languages for c in first if c.chosen and c.objective == "americas"]
    assert chosen[0] == ("zh",) and all(len(s) == k for k, s in enumerate(chosen, 1))
    ran.clear()
    again = designs.run_greedy(cfg, store, ["americas", "xnli-zs"], k_max=3,
                               data_dir=nli_dir, progress=False)
    assert sum(ran) == 0 and again == first
    with ResultStore(store, readonly=True) as s:
        df = s.results_frame()
    assert df["cell_hash"].nunique() == 42
    assert set(df["regime"]) == {"fixed_total"} and set(df["seed"]) == {0}
    frame = designs.candidates_frame(first)
    assert list(frame.columns) == ["objective", "k", "languages", "added", "value", "chosen"]


# -- the #22 designs: dilution control, few-shot arms, centred re-measure ----------------------
def _batch(name: str, nli_dir: Path):
    return build_batch(load_toml(CONFIGS / name), nli_dir, check_data=False)


def test_dilution_design_measures_every_member_at_its_share_beside_the_sets(nli_dir: Path) -> None:
    batch = _batch("design-dilution.toml", nli_dir)
    singles = Counter((c.sources[0], c.total_examples) for c in batch.cells if len(c.sources) == 1)
    assert set(singles.values()) == {3}                              # seeds 0, 1, 2
    for k in range(2, 16):
        assert {lang for lang, n in singles if n == 2490 // k} == set(designs.XNLI_LANGS)
    sets = _sets_by(batch, "fixed_total")
    multi = {s for s in sets if len(s) > 1}
    assert {len(s) for s in multi} == set(range(2, 16))
    default = build_batch(load_toml(CONFIGS / "default.toml"), nli_dir, check_data=False)
    grid = {tuple(c.sources) for c in default.cells if c.regime == "fixed_total"
            and c.train_dataset == "xnli" and 3 <= len(c.sources)}
    assert {s for s in multi if len(s) >= 3} == grid                 # the shipped grid's sets
    for c in batch.cells:
        assert c.regime == "fixed_total" and c.backend == "ort-int8-s8" and not c.target_shots
        if len(c.sources) > 1:
            assert c.total_examples == 2490
        # every member of a k-set has a single measured at (at most one example under) its share
        for lang, n in c.train_config.items():
            assert len(c.sources) == 1 or (lang, 2490 // len(c.sources)) in singles
            assert len(c.sources) == 1 or n - 2490 // len(c.sources) in (0, 1)
    assert len(batch.cells) == 1023


def test_few_shot_design_adds_target_pairs_within_the_fixed_total(nli_dir: Path) -> None:
    batch = _batch("design-few-shot.toml", nli_dir)
    assert len(batch.cells) == 570
    seen = Counter()
    for c in batch.cells:
        assert c.regime == "fixed_total" and c.seed in (0, 1)
        assert c.total_examples + c.n_shots == 2490
        assert len(c.sources) in (1, 2, 4, 8)
        for key, n in c.target_shots.items():
            ds, split, lang = key.split("/")[0], *key.split("/")[1].split(":")
            assert split == "validation" and n in (25, 100, 400)
            assert lang not in c.sources                              # never its own source
            seen[(ds, lang, n)] += 1
    langs = {(ds, lang) for ds, lang, _ in seen}
    assert langs == {("xnli", t) for t in ("sw", "ur", "hi", "de")} | \
        {("americas_nli", t) for t in ("aym", "bzd", "hch", "tar")}
    assert set(seen.values()) == {20}                                 # 10 sets x 2 seeds


def test_centred_configs_are_the_plain_designs_with_centring(nli_dir: Path) -> None:
    for plain, centred in (("design-dilution.toml", "design-dilution-centred.toml"),
                           ("design-add-one.toml", "design-add-one-centred.toml"),
                           ("design-few-shot.toml", "design-few-shot-centred.toml")):
        a, b = _batch(plain, nli_dir).cells, _batch(centred, nli_dir).cells
        assert all(c.params.get("centre") == "language" for c in b)
        assert all("centre" not in c.params for c in a)
        strip = [{**c.to_dict(), "params": {k: v for k, v in c.params.items() if k != "centre"}}
                 for c in b]
        assert sorted(map(str, strip)) == sorted(str(c.to_dict()) for c in a)
        assert not {c.hash for c in a} & {c.hash for c in b}


def test_americas_parts_config_rescores_the_default_grids_probes(nli_dir: Path) -> None:
    parts = build_batch(load_toml(CONFIGS / "default-americas-parts.toml"), nli_dir,
                        check_data=False).cells
    default = build_batch(load_toml(CONFIGS / "default.toml"), nli_dir, check_data=False).cells
    key = lambda c: (c.regime, tuple(sorted(c.train_config.items())), c.seed, c.backend)  # noqa: E731
    assert sorted(map(key, parts)) == sorted(key(c) for c in default if c.train_dataset == "xnli")
    assert {(t.dataset, t.parts) for c in parts for t in c.targets} == {("americas_nli", 2)}


def test_plan_prints_cells_and_cpu_time(capsys: pytest.CaptureFixture, nli_dir: Path) -> None:
    assert designs.main(["plan", "design-few-shot.toml", "--data-dir", str(nli_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("design-few-shot.toml: 570 cells (480 with target shots), about ")
    assert "CPU-minutes" in out
    assert designs.main(["plan", "nope.toml"]) == 2
    assert "no config file nope.toml" in capsys.readouterr().err
