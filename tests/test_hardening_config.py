"""Issue #13: every bad batch config or data file fails before any work, naming the key/file.

Classes covered: unknown keys in every table, strict types (a bool is not an int), the
[probe] params, [train] under probe, regimes, sample, seeds, the model (resolved offline in
seconds), non-UTF-8 configs, target languages without data, and data files that
``xlt-measure data`` rejects (which ``run`` must reject too, before the store exists).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from measure.running.config import ConfigError, build_batch, check_model

BASE = {
    "model": "me5-small", "method": "probe", "budget": {"per_language": 20},
    "targets": [{"split": "xnli/test", "languages": ["en"]}],
    "sources": [{"pool": "xnli/validation", "singles": True, "languages": ["en", "de"]}],
}


def _cfg(**changes: object) -> dict:
    raw = {k: (dict(v) if isinstance(v, dict) else [dict(x) for x in v] if isinstance(v, list) else v)
           for k, v in BASE.items()}
    raw.update(changes)
    return raw


def _src(**changes: object) -> dict:
    return _cfg(sources=[{**BASE["sources"][0], **changes}])


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory, nli_dir: Path) -> Path:
    """A tiny valid copy of xnli en/de validation + en test (30 rows each)."""
    root = tmp_path_factory.mktemp("nli")
    for lang, split in (("en", "validation"), ("de", "validation"), ("en", "test")):
        (root / "xnli" / lang).mkdir(parents=True, exist_ok=True)
        pd.read_parquet(nli_dir / "xnli" / lang / f"{split}.parquet").head(30).to_parquet(
            root / "xnli" / lang / f"{split}.parquet")
    return root


@pytest.mark.parametrize("change,message", [
    # unknown keys in every table
    (_cfg(targets=[{"split": "xnli/test", "language": ["en"]}]), r"targets\[0\]: unknown key.*'language'"),
    (_cfg(probe={"c": 0.01}), r"\[probe\]: unknown key.*'c' \(did you mean 'C'\?\)"),
    (_cfg(probe={"classifer": "mlp"}), r"\[probe\]: unknown key.*'classifer'"),
    (_src(singles=False, sample={"k": [1, 2], "sets_per_k": 1, "langauges": ["en"]}),
     r"sample: unknown key.*'langauges'"),
    (_cfg(budget={"per_langauge": 10}), r"budget\]: unknown key.*per_langauge"),
    (_src(pool_="x"), r"sources\[0\]: unknown key"),
    (_cfg(train={"epochs": 1}), r"\[train\] applies to method = 'finetune' or 'seq2seq' only"),
    (_cfg(method="finetune", probe={"C": 1.0}), r"\[probe\] applies to method = 'probe' only"),
    # strict types: a bool is not an int, a string is not a number
    (_src(singles="no"), r"singles must be true or false"),
    (_cfg(seeds=[True]), r"seeds must be a non-empty list of integers"),
    (_cfg(seeds=[-1]), r"seed -1 is out of range"),
    (_cfg(seeds=[2**40]), r"out of range"),
    (_src(seeds="0"), r"sources\[0\].seeds must be a non-empty list of integers"),
    (_cfg(eval_cap=True), r"eval_cap must be a non-negative integer"),
    (_cfg(eval_cap=-1), r"eval_cap must be a non-negative integer"),
    (_cfg(eval_cap=1.5), r"eval_cap must be a non-negative integer"),
    (_cfg(eval_cap=1), r"eval_cap = 1 leaves too few test pairs"),
    (_cfg(budget={"per_language": 1}), r"per_language = 1 is too small"),
    (_src(sets=[["en", "de"]], singles=False, regimes=["fixed_total"], budget={"total": 12}),
     r"fixed total 12 gives 'de' only 6"),
    (_cfg(budget={"per_language": True}), r"per_language must be a positive integer"),
    (_cfg(budget={"total": 1.5}), r"total must be a positive integer"),
    (_src(singles=False, sample={"k": [1, 2], "sets_per_k": -1}), r"sets_per_k = -1: expected an integer >= 1"),
    (_src(singles=False, sample={"k": [1, 2], "sets_per_k": 0}), r"sets_per_k = 0"),
    (_src(singles=False, sample={"k": [1, 2], "sets_per_k": True}), r"sets_per_k = True"),
    (_src(singles=False, sample={"k": [1, 2], "sets_per_k": 1, "seed": "abc"}), r"seed = 'abc': expected an integer"),
    (_src(singles=False, sample={"k": [True, 2], "sets_per_k": 1}), r"k = \[True, 2\]"),
    (_src(singles=False, sample=[1, 2]), r"sample must be a table"),
    (_src(sets="en"), r"sets must be a list of language lists"),
    (_src(sets=["en"]), r"sets\[0\] must be a list of language codes"),
    (_cfg(name=5), r"name = 5"),
    (_cfg(backend=3), r"backend = 3"),
    (_cfg(method=["probe"]), r"method = \['probe'\]"),
    (_cfg(targets=["xnli/test"]), r"targets\[0\] must be a table"),
    (_cfg(sources=[5]), r"sources\[0\] must be a table"),
    (_cfg(data_dir=5), r"data_dir = 5"),
    # [probe] params
    (_cfg(probe={"classifier": "svm"}), r"classifier = 'svm': use one of"),
    (_cfg(probe={"C": -1}), r"\[probe\].C = -1: must be a finite number > 0"),
    (_cfg(probe={"C": 0}), r"\[probe\].C = 0"),
    (_cfg(probe={"C": "big"}), r"\[probe\].C = 'big': expected float"),
    (_cfg(probe={"C": float("nan")}), r"\[probe\].C = nan"),
    (_cfg(probe={"C": True}), r"\[probe\].C = True: expected float"),
    (_cfg(probe={"max_iter": 0}), r"max_iter = 0: must be in"),
    (_cfg(probe={"max_iter": 1.5}), r"max_iter = 1.5: expected int"),
    (_cfg(probe={"scale": "yes"}), r"scale = 'yes': expected bool"),
    (_cfg(probe={"hidden": 0}), r"hidden = 0"),
    (_cfg(probe=3), r"\[probe\] must be a table"),
    # regimes
    (_src(regimes="per_language"), r"regimes = 'per_language' must be a list, not a string: "
                                   r"regimes = \['per_language'\]"),
    (_src(regimes=["total"]), r"unknown regime 'total' \(did you mean 'fixed_total'\?\)"),
    (_src(regimes=[]), r"regimes must be a non-empty list"),
    (_src(regimes=["fixed_total"]), r"'fixed_total' needs a budget \(total = n\)"),
    # languages: unknown vs known without data
    (_cfg(targets=[{"split": "xnli/test", "languages": ["aym"]}]),
     r"'aym' \(Aymara\) has no data in xnli/test; languages with data in xnli/test: .*en"),
    (_cfg(targets=[{"split": "xnli/test", "languages": ["eng"]}]), r"spelled 'en' in the data: use 'en'"),
    (_cfg(targets=[{"split": "xnli/test", "languages": ["qqq"]}]), r"unknown language code 'qqq'"),
    (_src(pairs_from=["en"]), r"pairs need at least 2 languages"),
    (_cfg(targets=[{"split": "xnli/test", "languages": ["en"]}, {"split": "xnli/test"}]),
     r"targets\[1\]: split 'xnli/test' is listed twice"),
])
def test_bad_config_classes(nli_dir: Path, change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_batch(change, nli_dir, check_data=False)


def test_probe_params_keep_cell_hashes(nli_dir: Path) -> None:
    """Validation never rewrites the stored params (the cell hash of existing stores holds)."""
    batch = build_batch(_cfg(probe={"C": 1, "classifier": "logreg"}), nli_dir, check_data=False)
    assert batch.cells[0].params == {"C": 1, "classifier": "logreg"}


@pytest.mark.parametrize("model,message", [
    ("", r"model = '': give a model name"),
    (5, r"model = 5"),
    ("me5-smal", r"did you mean 'me5-small'"),
    ("./no/such/dir", r"no such directory"),
    ("a b c", r"not a hub id"),
])
def test_model_resolved_offline_in_seconds(monkeypatch: pytest.MonkeyPatch, model: object,
                                           message: str) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import socket

    def no_network(*a: object, **k: object) -> None:
        raise AssertionError("network attempted while offline")
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(ConfigError, match=message):   # no network attempt: no timeout to wait
        check_model(model, "probe")


def test_model_directory_needs_config_json(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="has no config.json"):
        check_model(str(tmp_path), "probe")
    (tmp_path / "config.json").write_text("{}")
    check_model(str(tmp_path), "probe")                      # a checkpoint directory is fine
    f = tmp_path / "config.json"
    with pytest.raises(ConfigError, match="is a file"):
        check_model(str(f), "probe")


# ------------------------------------------------------------------ data files

def _corrupt(small_data: Path, tmp_path: Path, how: str) -> Path:
    import shutil
    root = tmp_path / "data"
    shutil.copytree(small_data, root)
    f = root / "xnli" / "de" / "validation.parquet"
    df = pd.read_parquet(f)
    if how == "label3":
        df.loc[0, "label"] = 3
    elif how == "missing_column":
        df = df.drop(columns=["hypothesis"])
    elif how == "nan_premise":
        df["premise"] = df["premise"].astype(object)
        df.loc[1, "premise"] = None
    elif how == "not_parquet":
        f.write_text("premise,hypothesis,label\na,b,0\n")
        return root
    elif how == "string_pair_id":
        df["pair_id"] = df["pair_id"].astype(str)
    elif how == "dup_pair_id":
        df.loc[1, "pair_id"] = df.loc[0, "pair_id"]
    elif how == "nan_pair_id":
        df["pair_id"] = df["pair_id"].astype(float)
        df.loc[2, "pair_id"] = float("nan")
    elif how == "bool_label":
        df["label"] = df["label"] > 0
    elif how == "empty":
        df = df.head(0)
    df.to_parquet(f)
    return root


BAD_DATA = {"label3": "outside 0–2", "missing_column": "missing column", "nan_premise": "empty premise",
            "not_parquet": "not a readable parquet file", "string_pair_id": "pair_id",
            "dup_pair_id": "duplicate pair_id", "nan_pair_id": "no pair_id",
            "bool_label": "booleans", "empty": "no rows"}


@pytest.mark.parametrize("how", sorted(BAD_DATA))
def test_run_rejects_bad_data_like_data_command(small_data: Path, tmp_path: Path, how: str) -> None:
    root = _corrupt(small_data, tmp_path, how)
    bad_file = str(root / "xnli" / "de" / "validation.parquet")
    with pytest.raises(ConfigError, match="bad data file") as info:
        build_batch(_cfg(), root)
    assert bad_file in str(info.value) and BAD_DATA[how] in str(info.value)
    # the data command reports the same file, cleanly
    proc = subprocess.run([sys.executable, "-m", "measure.cli", "data", "--data-dir", str(root)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and bad_file in proc.stderr and "Traceback" not in proc.stderr


def _run_cli(args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "measure.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **env}, timeout=120)


CONFIG = ('model = "me5-small"\nmethod = "probe"\n[budget]\nper_language = 10\n'
          '[[targets]]\nsplit = "xnli/test"\nlanguages = ["en"]\n'
          '[[sources]]\npool = "xnli/validation"\nsingles = true\nlanguages = ["en", "de"]\n')


def test_cli_bad_data_exit_2_before_store(small_data: Path, tmp_path: Path) -> None:
    root = _corrupt(small_data, tmp_path, "label3")
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG)
    store = tmp_path / "s.sqlite"
    proc = _run_cli(["run", str(cfg), "--store", str(store), "--data-dir", str(root)])
    assert proc.returncode == 2, proc.stderr
    assert "de/validation.parquet" in proc.stderr and "Traceback" not in proc.stderr
    assert not store.exists()


@pytest.mark.parametrize("text,message", [
    (b'model = "me5-small"\nname = "\xff\xfe"\n', "not UTF-8"),
    (CONFIG.replace('"me5-small"', '"me5-smal"').encode(), "did you mean 'me5-small'"),
    (CONFIG.replace('[budget]', '[probe]\nC = -1\n[budget]').encode(), r"[probe].C = -1"),
    (CONFIG.replace('singles = true', 'singles = "no"').encode(), "singles must be true or false"),
])
def test_cli_bad_config_exit_2_fast(small_data: Path, tmp_path: Path, text: bytes, message: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_bytes(text)
    store = tmp_path / "s.sqlite"
    proc = _run_cli(["run", str(cfg), "--store", str(store), "--data-dir", str(small_data)])
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not store.exists()


def test_bom_config_and_data_dir_file(small_data: Path, tmp_path: Path) -> None:
    from measure.running.config import load_batch
    cfg = tmp_path / "c.toml"
    cfg.write_bytes(b"\xef\xbb\xbf" + CONFIG.encode())          # UTF-8 with a byte-order mark
    assert load_batch(cfg, small_data).cells
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a directory"):
        load_batch(cfg, f)
    with pytest.raises(ConfigError, match="is a directory"):
        load_batch(tmp_path)  # a directory


def test_cli_address_needs_ray_engine(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG)
    proc = _run_cli(["run", str(cfg), "--address", "localhost:6379", "--store", str(tmp_path / "s.sqlite")])
    assert proc.returncode == 2 and "--engine ray" in proc.stderr


@pytest.mark.parametrize("workers", ["0", "-3", "two"])
def test_cli_bad_workers_exit_2(tmp_path: Path, workers: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG)
    proc = _run_cli(["run", str(cfg), "--store", str(tmp_path / "s.sqlite"), f"--workers={workers}"])
    assert proc.returncode == 2 and "--workers" in proc.stderr
    assert not (tmp_path / "s.sqlite").exists()


@pytest.mark.parametrize("args,message", [
    (["bench", "--model", "me5-smal", "--texts", "5"], "did you mean 'me5-small'"),
    (["languages", ""], "empty language code"),
    (["run", "."], "is a directory"),
])
def test_cli_other_bad_inputs_exit_2(args: list[str], message: str) -> None:
    proc = _run_cli(args)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_finetune_val_split_must_cover_the_sources(nli_dir: Path) -> None:
    raw = _cfg(method="finetune", train={"val_split": "xnli_mt9k/train"},
               sources=[{"pool": "xnli/validation", "singles": True, "languages": ["en", "ar"]}])
    with pytest.raises(ConfigError, match=r"val_split = 'xnli_mt9k/train': source language 'ar'"):
        build_batch(raw, nli_dir, check_data=False)
    raw["train"] = {"val_split": "nope/validation"}
    with pytest.raises(ConfigError, match="unknown dataset 'nope'"):
        build_batch(raw, nli_dir, check_data=False)
    raw["train"] = {"val_split": "xnli/validation"}
    assert build_batch(raw, nli_dir, check_data=False).cells
