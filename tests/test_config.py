"""Batch configs: the grid sampler and every bad-input path fail fast with exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from measure.running.config import ConfigError, build_batch, load_batch, train_config_for

BASE = {
    "model": "me5-small", "method": "probe", "budget": {"per_language": 100, "total": 300},
    "targets": [{"split": "xnli/test", "languages": ["en", "sw"]}],
    "sources": [{"pool": "xnli/validation", "singles": True, "languages": ["en", "de"]}],
}


def _with(**changes: object) -> dict:
    raw = {k: (v.copy() if isinstance(v, dict) else list(v) if isinstance(v, list) else v)
           for k, v in BASE.items()}
    raw.update(changes)
    return raw


def test_sampler_is_reproducible_and_complete(nli_dir: Path) -> None:
    group = {"pool": "xnli/validation", "sample": {"k": [3, 15], "sets_per_k": 10, "seed": 7}}
    a = build_batch(_with(sources=[group], budget={"total": 2490}), nli_dir)
    b = build_batch(_with(sources=[group], budget={"total": 2490}), nli_dir)
    sets = [tuple(sorted(c.train_config)) for c in a.cells]
    assert sets == [tuple(sorted(c.train_config)) for c in b.cells]
    by_k: dict[int, set] = {}
    for s in sets:
        by_k.setdefault(len(s), set()).add(s)
    assert sorted(by_k) == list(range(3, 16))
    assert all(len(by_k[k]) == 10 for k in range(3, 15))     # distinct sets
    assert len(by_k[15]) == 1                                 # only one set of all 15 exists
    other = build_batch(_with(sources=[{**group, "sample": {**group["sample"], "seed": 8}}],
                              budget={"total": 2490}), nli_dir)
    assert [c.train_config for c in other.cells] != [c.train_config for c in a.cells]


def test_budgets_and_regimes(nli_dir: Path) -> None:
    assert train_config_for(("de", "en", "sw"), "fixed_total", 2490) == {"de": 830, "en": 830, "sw": 830}
    assert sum(train_config_for(("a", "b", "c", "d"), "fixed_total", 2490).values()) == 2490
    assert train_config_for(("de", "en"), "per_language", 2490) == {"de": 2490, "en": 2490}
    batch = build_batch(_with(sources=[{"pool": "xnli/validation", "pairs_from": ["en", "de", "fr"],
                                        "seeds": [0, 1]}]), nli_dir)
    assert len(batch.cells) == 3 * 2 * 2                      # pairs x regimes x seeds
    assert {c.regime for c in batch.cells} == {"per_language", "fixed_total"}


@pytest.mark.parametrize("change,message", [
    ({"sources": [{"pool": "xnli/validation", "sets": [["en", "xx"]]}]}, "unknown language code 'xx'"),
    ({"sources": [{"pool": "xnli/validation", "sets": [["en", "aym"]]}]}, r"'aym' \(Aymara\) has no data in xnli/validation"),
    ({"sources": [{"pool": "nope/validation", "singles": True}]}, "unknown dataset 'nope'"),
    ({"sources": [{"pool": "xnli/train", "singles": True}]}, "has no 'train' split"),
    ({"sources": [{"pool": "xnli/validation", "sets": [[]]}]}, "empty source set"),
    ({"sources": [{"pool": "xnli/validation", "singles": True}], "budget": {"per_language": 5000}},
     "exceeds the 2490 in xnli/"),
    ({"targets": [{"split": "xnli/test", "languages": ["en", "qqq"]}]}, "unknown language code 'qqq'"),
    ({"method": "magic"}, "method = 'magic'"),
    ({"budget": {"per_language": -1}}, "must be a positive integer"),
    ({"sources": [{"pool": "xnli/validation", "sample": {"k": [3, 20], "sets_per_k": 2}}]},
     "k = 20 exceeds the 15 languages"),
    ({"colour": "blue"}, "unknown top-level key"),
])
def test_bad_inputs(nli_dir: Path, change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_batch(_with(**change), nli_dir)


def test_malformed_toml_names_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('model = "me5-small"\nmethod = "probe"\n[budget\nper_language = 3\n')
    with pytest.raises(ConfigError, match=r"malformed TOML: .*line 3"):
        load_batch(bad)


def test_cli_exits_2_before_any_work(tmp_path: Path, nli_dir: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('model = "me5-small"\nmethod = "probe"\n[budget]\nper_language = 10\n'
                   '[[targets]]\nsplit = "xnli/test"\nlanguages = ["en"]\n'
                   '[[sources]]\npool = "xnli/validation"\nsets = [["en", "klingon"]]\n')
    store = tmp_path / "s.sqlite"
    proc = subprocess.run([sys.executable, "-m", "measure.cli", "run", str(bad), "--store", str(store),
                           "--data-dir", str(nli_dir)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "unknown language code 'klingon'" in proc.stderr and proc.stdout == ""
    assert not store.exists()                                 # nothing was created or run


def test_shipped_configs_validate(nli_dir: Path) -> None:
    repo = Path(__file__).resolve().parent.parent
    default = load_batch(repo / "measure/configs/default.toml", nli_dir)
    assert len(default.cells) == 986
    singles = {tuple(c.train_config) for c in default.cells
               if len(c.train_config) == 1 and c.train_dataset == "xnli"}
    assert len(singles) == 15
    finetune = load_batch(repo / "measure/configs/finetune-singles.toml", nli_dir)
    assert len(finetune.cells) == 15 and {c.method for c in finetune.cells} == {"finetune"}
    # a hub model (GPU-cluster config): resolving it needs the hub, so only the grid is checked here
    mt5 = load_batch(repo / "measure/configs/mt5-pairs.toml", nli_dir, resolve_model=False)
    assert len(mt5.cells) == 15 + 105 and {c.method for c in mt5.cells} == {"seq2seq"}
    smoke = load_batch(repo / "measure/configs/smoke.toml", nli_dir)
    assert smoke.cells
