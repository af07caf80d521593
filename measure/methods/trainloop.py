"""What the fine-tuning methods (``seq2seq``, ``finetune``) share: parameters, the
training loop with source-language checkpoint selection, and the validation rows.

Why one loop: both methods must follow the same protocol — AdamW, linear warm-up then
decay, a fixed budget of steps or epochs, gradient accumulation, bf16/fp16 autocast only
on a GPU, and the checkpoint chosen on source-language validation only — so a
difference between them is the model, never the recipe. torch is imported lazily.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from measure.cell import CellRecord, CellSpec
from measure.encoders.encoder import BACKENDS, DEFAULT_BACKEND, INT8_SCHEMES, load_tokenizer
from measure.methods.base import RunContext, finish
from measure.methods.sampling import eval_indices, load_split, sample_training

P = TypeVar("P", bound="TrainParams")
Example = tuple[str, int]  # (model input text, label 0/1/2)


@dataclass(frozen=True)
class TrainParams:
    """The ``[train]`` table shared by the fine-tuning methods (every key optional)."""

    learning_rate: float = 3e-4
    weight_decay: float = 0.01
    batch_size: int = 16              # examples per micro-batch
    grad_accum: int = 1               # micro-batches per optimiser step
    epochs: float = 3.0               # used when max_steps = 0
    max_steps: int = 0                # optimiser steps; > 0 overrides epochs
    warmup_ratio: float = 0.06        # share of steps with linear warm-up
    max_grad_norm: float = 1.0
    max_source_length: int = 256
    precision: str = "auto"           # auto | fp32 | bf16 | fp16 (bf16/fp16 need a GPU)
    eval_every: int = 0               # steps between checkpoint checks; 0 = each epoch
    val_size: int = 500               # source-language validation rows (0 = no selection)
    val_split: str = ""               # "dataset/split" for validation; "" = unsampled pool rows
    eval_batch_size: int = 32

    @classmethod
    def from_dict(cls: type[P], raw: dict[str, Any] | None) -> P:
        """Validate a config table; ValueError names the key and the fix."""
        raw = dict(raw or {})
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(raw) - set(fields)
        if unknown:
            raise ValueError(f"[train]: unknown {cls.method_name()} key(s) {sorted(unknown)}; "
                             f"allowed: {sorted(fields)}")
        raw = cls._coerce(raw)
        for name, value in raw.items():
            want = type(fields[name].default)
            if want is float and isinstance(value, int) and not isinstance(value, bool):
                raw[name] = float(value)
            elif want is not tuple and (not isinstance(value, want)
                                        or (want is int and isinstance(value, bool))):
                raise ValueError(f"[train].{name} = {value!r}: expected {want.__name__}")
        p = cls(**raw)
        for ok, msg in p._checks():
            if not ok:
                raise ValueError(f"[train]: {msg}")
        return p

    @classmethod
    def method_name(cls) -> str:
        return "training"

    @classmethod
    def _coerce(cls, raw: dict[str, Any]) -> dict[str, Any]:
        return raw

    def _checks(self) -> list[tuple[bool, str]]:
        return [
            (self.learning_rate > 0, "learning_rate must be > 0"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.batch_size >= 1 and self.grad_accum >= 1 and self.eval_batch_size >= 1,
             "batch_size, grad_accum and eval_batch_size must be >= 1"),
            (self.max_steps > 0 or self.epochs > 0, "set max_steps > 0 or epochs > 0"),
            (self.max_steps >= 0 and self.eval_every >= 0 and self.val_size >= 0,
             "max_steps, eval_every and val_size must be >= 0"),
            (0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)"),
            (self.max_source_length >= 8, "max_source_length must be >= 8"),
            (self.precision in ("auto", "fp32", "bf16", "fp16"),
             "precision must be auto, fp32, bf16 or fp16"),
            (self.val_split == "" or self.val_split.count("/") == 1,
             "val_split must be 'dataset/split', e.g. 'xnli/validation', or ''"),
        ]


@dataclass
class TrainReport:
    steps: int
    best_step: int                   # the step whose weights were kept
    val_f1: list[tuple[int, float]]  # (step, source-validation macro-F1) at each check
    seconds: float
    precision: str


def resolve_precision(requested: str, device: Any) -> str:
    import torch
    if device.type != "cuda":
        if requested in ("bf16", "fp16"):
            raise ValueError(f"precision = {requested!r} needs a GPU; use 'auto' or 'fp32' on CPU")
        return "fp32"
    if requested == "auto":  # mT5 overflows in fp16: prefer bf16 wherever the GPU has it
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return requested


def fit(model: Any, train: Sequence[Any], params: TrainParams, seed: int,
        collate: Callable[[list[Any]], dict[str, Any]],
        validate: Callable[[], float] | None = None) -> TrainReport:
    """Fine-tune ``model`` in place (its forward returns ``.loss`` for ``collate``'s batch).

    With ``validate`` (source-validation macro-F1), the weights of the best check are
    restored at the end; checks run every ``eval_every`` steps (default: each epoch) and
    after the last step.
    """
    import torch
    from transformers import get_linear_schedule_with_warmup

    if not train:
        raise ValueError("the cell has no training examples")
    t0 = time.time()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    device = next(model.parameters()).device
    precision = resolve_precision(params.precision, device)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None

    steps_per_epoch = max(1, math.ceil(len(train) / (params.batch_size * params.grad_accum)))
    total = params.max_steps or max(1, math.ceil(params.epochs * steps_per_epoch))
    eval_every = params.eval_every or steps_per_epoch
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        [{"params": [p for _, p in named if p.ndim >= 2], "weight_decay": params.weight_decay},
         {"params": [p for _, p in named if p.ndim < 2], "weight_decay": 0.0}],
        lr=params.learning_rate)
    sched = get_linear_schedule_with_warmup(opt, int(params.warmup_ratio * total), total)

    def micro_batches() -> Iterator[list[Any]]:
        while True:  # reshuffled every epoch, reproducibly
            order = rng.permutation(len(train))
            for s in range(0, len(order), params.batch_size):
                yield [train[i] for i in order[s:s + params.batch_size]]

    history: list[tuple[int, float]] = []
    best_f1, best_step, best_state = -1.0, total, None
    batches = micro_batches()
    model.train()
    for step in range(1, total + 1):
        for _ in range(params.grad_accum):
            batch = collate(next(batches))
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                loss = model(**batch).loss / params.grad_accum
            (scaler.scale(loss) if scaler else loss).backward()
        if scaler:
            scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), params.max_grad_norm)
        if scaler:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if validate is not None and (step % eval_every == 0 or step == total):
            model.eval()
            f1 = float(validate())
            model.train()
            history.append((step, f1))
            if f1 > best_f1:  # ties keep the earlier (less trained) checkpoint
                best_f1, best_step = f1, step
                best_state = {k: v.detach().to("cpu", copy=True)
                              for k, v in model.state_dict().items()}
    model.eval()
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_step = total
    return TrainReport(total, best_step, history, time.time() - t0, precision)


def source_rows(cell: CellSpec, data_dir: str, params: TrainParams,
                drawn: list[tuple[str, np.ndarray]]) -> list[tuple[str, pd.DataFrame]]:
    """[(language, frame rows)] for checkpoint selection, from the *source* languages only.

    Default: rows of the training pool that no source language sampled (row index =
    pair_id in parallel pools, so a validation row is never a translation of a training
    row); with ``val_split``, a label-stratified subset of that split per source language.
    Empty when ``val_size`` is 0 or the budget used the whole pool.
    """
    if params.val_size == 0:
        return []
    langs = [lang for lang, _ in drawn]
    per_lang = max(1, params.val_size // len(langs))
    out = []
    if params.val_split:
        ds, split = params.val_split.split("/")
        for lang in langs:
            frame = load_split(data_dir, ds, lang, split)
            out.append((lang, frame.iloc[eval_indices(frame, per_lang)]))
        return out
    rng = np.random.default_rng([int(cell.seed), 7])
    used = np.unique(np.concatenate([idx for _, idx in drawn]))
    for lang in langs:
        frame = load_split(data_dir, cell.train_dataset, lang, cell.train_split)
        free = np.setdiff1d(np.arange(len(frame)), used)
        if len(free):
            out.append((lang, frame.iloc[np.sort(rng.choice(free, min(per_lang, len(free)),
                                                           replace=False))]))
    return out


@dataclass
class CellStart:
    """What a fine-tuning cell has once its inputs are checked (see ``start_cell``)."""

    params: Any                          # the method's TrainParams subclass, validated
    backend: str
    device: Any                          # torch.device
    tokenizer: Any
    drawn: list[tuple[str, np.ndarray]]  # (source language, sampled row indices)
    started: float


def start_cell(cell: CellSpec, data_dir: str, params_cls: type[TrainParams],
               model_dir: str, device: str | None = None) -> CellStart:
    """The prologue both methods share, in one place so they cannot drift apart: validate
    ``[train]`` and ``backend``, pick the GPU when there is one, load the tokenizer, seed
    torch with the cell's seed (right before the caller builds its model, so a fresh head
    is part of the cell's randomness) and draw the cell's training rows."""
    import torch

    params = params_cls.from_dict(dict(cell.params))
    backend = cell.backend or DEFAULT_BACKEND
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r} is not available for {params_cls.method_name()}: "
                         f"use one of {BACKENDS}")
    started = time.time()
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tokenizer = load_tokenizer(model_dir)
    drawn = sample_training(cell, data_dir)
    torch.manual_seed(int(cell.seed))
    return CellStart(params, backend, dev, tokenizer, drawn, started)


Predict = Callable[[pd.DataFrame], np.ndarray]


def evaluate_trained(cell: CellSpec, ctx: RunContext, start: CellStart, train_seconds: float,
                     model: Any, *, torch_predictor: Callable[[Any], Predict],
                     onnx_predictor: Callable[[Path], Predict],
                     export: Callable[[Path, Path, str | None], Path],
                     workdir: str | Path | None = None) -> CellRecord:
    """The epilogue both methods share: score every target with the trained model.

    ``backend = "torch-fp32"`` scores with the PyTorch model (``torch_predictor``);
    otherwise the model is saved, exported to ONNX by ``export(model_dir, onnx_dir,
    int8_scheme)`` in a temporary directory and scored by ``onnx_predictor`` of what
    ``export`` returned.
    The export counts as evaluation time.
    """
    t_eval = time.time()
    tmp = Path(tempfile.mkdtemp(prefix=f"xlt-{cell.method}-", dir=workdir))
    try:
        if start.backend == "torch-fp32":
            predict = torch_predictor(model.float())
        else:
            model.float().to("cpu").save_pretrained(tmp / "model")
            start.tokenizer.save_pretrained(tmp / "model")
            predict = onnx_predictor(export(tmp / "model", tmp / "onnx",
                                            INT8_SCHEMES.get(start.backend)))
        return finish(cell, ctx, start.started, train_seconds, predict, eval_started=t_eval)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
