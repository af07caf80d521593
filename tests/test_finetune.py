"""The finetune method (encoder cross-encoder) on CPU: a tiny random BERT that shares
me5-small's tokenizer exercises every path fast (ORT export == PyTorch predictions),
and a few real me5-small steps prove the real checkpoint trains and evaluates."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from measure.running.config import ConfigError, build_batch
from measure.methods.finetune import FinetuneParams


# tiny models: one torch thread (see conftest.one_torch_thread)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _raw(model: str, **over: Any) -> dict[str, Any]:
    raw = {"name": "ft", "model": model, "method": "finetune", "backend": "ort-fp32",
           "eval_cap": 60, "budget": {"per_language": 300},
           "train": {"max_steps": 20, "batch_size": 16, "learning_rate": 1e-3,
                     "eval_every": 10, "val_size": 40},
           "targets": [{"split": "xnli/test", "languages": ["en", "de"]}],
           "sources": [{"pool": "xnli/validation", "sets": [["en"]]}]}
    raw.update(over)
    return raw


def test_finetune_params() -> None:
    p = FinetuneParams.from_dict({})
    assert (p.learning_rate, p.batch_size, p.max_source_length, p.epochs) == (2e-5, 32, 128, 2.0)
    with pytest.raises(ValueError, match="unknown finetune key"):
        FinetuneParams.from_dict({"label_words": ["a", "b", "c"]})   # a seq2seq-only key
    torch = pytest.importorskip("torch")
    from measure.methods.trainloop import resolve_precision
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    with pytest.raises(ValueError, match="needs a GPU"):
        resolve_precision("bf16", torch.device("cpu"))


def test_config_validates_finetune(nli_dir: Path) -> None:
    assert len(build_batch(_raw("me5-small"), nli_dir).cells) == 1
    with pytest.raises(ConfigError, match="warmup_ratio"):
        build_batch(_raw("me5-small", train={"warmup_ratio": 1.5}), nli_dir)
    with pytest.raises(ConfigError, match="not available for finetune"):
        build_batch(_raw("me5-small", backend="onnx"), nli_dir)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random 2-layer BERT (hidden 32) with me5-small's tokenizer (built at first use)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from measure.encoders.encoder import resolve_model
    tok = AutoTokenizer.from_pretrained(resolve_model("me5-small"))
    out = tmp_path_factory.mktemp("bert") / "tiny-bert"
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=514,
                     pad_token_id=tok.pad_token_id)
    BertModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.mark.slow
def test_finetune_cell_tiny(tiny_bert: Path, nli_dir: Path, tmp_path: Path) -> None:
    from measure.methods.base import RunContext
    from measure.methods.registry import run_cell
    from measure.store import ResultStore

    cell = build_batch(_raw(str(tiny_bert)), nli_dir).cells[0]
    rec = run_cell(cell, RunContext(str(nli_dir)))
    assert rec.status == "done", rec.error
    ref = run_cell(dataclasses.replace(cell, backend="torch-fp32"), RunContext(str(nli_dir)))
    assert [r.confusion for r in ref.results] == [r.confusion for r in rec.results]
    with ResultStore(tmp_path / "s.sqlite") as store:
        store.put_cell(rec)
        df = store.results_frame()
    assert df["target_language"].tolist() == ["de", "en"] and set(df["n"]) == {60}
    for conf in df["confusion"].map(json.loads):
        assert np.sum(conf) == 60


@pytest.mark.slow
def test_finetune_me5_small_smoke(nli_dir: Path) -> None:
    """Three real steps of me5-small (word embeddings frozen) on CPU, evaluated with PyTorch."""
    from measure.methods.base import RunContext
    from measure.methods.registry import run_cell
    raw = _raw("me5-small", backend="torch-fp32", eval_cap=30,
               train={"max_steps": 3, "batch_size": 8, "learning_rate": 3e-5, "val_size": 8,
                      "max_source_length": 64, "freeze_embeddings": True},
               targets=[{"split": "xnli/test", "languages": ["en"]}])
    rec = run_cell(build_batch(raw, nli_dir).cells[0], RunContext(str(nli_dir)))
    assert rec.status == "done", rec.error
    (res,) = rec.results
    assert res.n == 30 and np.sum(res.confusion) == 30 and 0 <= res.macro_f1 <= 100
    print(f"me5-small finetune smoke: {rec.train_seconds:.1f} s training, "
          f"{rec.eval_seconds:.1f} s eval, macro-F1 {res.macro_f1:.1f}")
